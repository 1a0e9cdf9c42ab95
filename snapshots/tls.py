"""One TLS context per trust setting, made once per process and shared by every HTTP client ferry opens.

httpx builds a new ``ssl.SSLContext`` (loading certifi's ~150 CA certificates) for each ``Client``: 45-110 ms
of CPU, measured here. ferry opens a client per smoke test (one per target), per Prefect API helper and per
ferry server API call, so that cost landed on every target's critical path. A context is safe to share
between connections and threads; the trust it encodes is the same as a fresh one's.
"""

from __future__ import annotations

import os
import ssl
from functools import lru_cache


def tls_context(verify: bool | str = True, *, trust_env: bool = True) -> ssl.SSLContext:
    """The context httpx would build for ``verify`` (True: certifi's bundle, or ``SSL_CERT_FILE`` /
    ``SSL_CERT_DIR`` when ``trust_env``; a path: that CA file or folder; False: no verification), cached."""
    env = (os.environ.get("SSL_CERT_FILE"), os.environ.get("SSL_CERT_DIR")) if trust_env else (None, None)
    return _context(verify, trust_env, env)


@lru_cache(maxsize=16)
def _context(verify: bool | str, trust_env: bool, env: tuple[str | None, str | None]) -> ssl.SSLContext:
    import httpx

    if isinstance(verify, str):  # httpx deprecates verify=<path>: the context it would have made
        if os.path.isdir(verify):
            return ssl.create_default_context(capath=verify)
        return ssl.create_default_context(cafile=verify)
    return httpx.create_ssl_context(verify=verify, trust_env=trust_env)
