#!/usr/bin/env bash
# Run by ferry's package step inside the new release folder, before the `current` symlink switches.
# Nothing to build for OctoFX: the app is plain Python.
set -euo pipefail
test -f octofx.py
