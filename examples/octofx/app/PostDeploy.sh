#!/usr/bin/env bash
# Run after `current` points at this release (FERRY_APP_STATE/current): say what is live now.
set -euo pipefail
live="$(readlink -f "${FERRY_CURRENT:-$FERRY_APP_STATE/current}")"
echo "current -> $live ($(cat "$live/VERSION")); previous: ${FERRY_PREVIOUS_RELEASE_DIR:-none}"
