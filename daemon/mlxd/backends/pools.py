"""The process's HTTP connection pools: one aiohttp session per timeout settings (and event loop),
shared by every cloud backend with those settings, of every session of a shared daemon (issue
#19 item 2: the HTTP pools are per process). Keyed by their settings, so one window's timeouts
never become another's. A pool closes when the last backend using it closes.

A pooled connection carries no window's state: no cookie jar (a provider's cookie set for one
window is never sent for another), each request brings its own headers and key. The CA bundle
is the window's: OpenSSL reads SSL_CERT_FILE / SSL_CERT_DIR from the process environment, which
in a shared daemon is the first window's, so each window's pools are keyed by its own and
verify with a context made from them (WindowPools).
"""

from __future__ import annotations

import asyncio
import os
import ssl
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from mlxd.config import TimeoutsConfig

if TYPE_CHECKING:
    import aiohttp

# No cap on connections: a pool serves every window of the shared daemon, and aiohttp's caps
# (100, or 16 a host as here before) let one window's hung streams make another's requests
# wait for a free connection until their first-token timeout, tripping that window's breaker.
# A hung stream ends at its own timeouts (sock_read = idle_s).
PER_HOST = 0
IN_ALL = 0


class HTTPPools:
    def __init__(self) -> None:
        # (connect_s, idle_s, loop) -> (session, the backends using it)
        self._pools: dict[tuple[Any, ...], tuple[aiohttp.ClientSession, set[object]]] = {}

    def for_window(
        self, env: Mapping[str, str] | None, cwd: str | None = None
    ) -> WindowPools | HTTPPools:
        """These pools as a window of environment `env` and working directory `cwd` uses them
        (None: this process's)."""
        return self if env is None else WindowPools(self, ca_settings(env, cwd))

    def session(
        self, user: object, timeouts: TimeoutsConfig, ca: tuple[str, str] | None = None
    ) -> aiohttp.ClientSession:
        """The pool for `timeouts` (and `ca`: the CA file and directory to verify with; None:
        this process's) on the running loop; `user` holds it until release()."""
        import aiohttp  # here: a daemon without HTTP backends never needs it (factory.py)

        key = (timeouts.connect_s, timeouts.idle_s, asyncio.get_running_loop(), ca)
        entry = self._pools.get(key)
        if entry is None or entry[0].closed:
            session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(
                    total=None, sock_connect=timeouts.connect_s, sock_read=timeouts.idle_s
                ),
                connector=aiohttp.TCPConnector(
                    limit=IN_ALL,
                    limit_per_host=PER_HOST,
                    ttl_dns_cache=300,
                    ssl=True if ca is None else _verify_with(ca),
                ),
                cookie_jar=aiohttp.DummyCookieJar(),
                raise_for_status=False,
            )
            entry = self._pools[key] = (session, set())
        entry[1].add(user)
        return entry[0]

    async def release(self, user: object) -> None:
        """`user` is done (its backend closed): a pool nobody else uses is closed."""
        for key, (session, users) in list(self._pools.items()):
            users.discard(user)
            if not users:
                del self._pools[key]
                if not session.closed:
                    await session.close()

    def __len__(self) -> int:
        return len(self._pools)


class WindowPools:
    """The process's pools with one window's CA settings: what its backends are given."""

    def __init__(self, pools: HTTPPools, ca: tuple[str, str]) -> None:
        self.pools, self.ca = pools, ca

    def session(self, user: object, timeouts: TimeoutsConfig) -> aiohttp.ClientSession:
        return self.pools.session(user, timeouts, self.ca)

    async def release(self, user: object) -> None:
        await self.pools.release(user)


def ca_settings(env: Mapping[str, str], cwd: str | None = None) -> tuple[str, str]:
    """(CA file, CA directories) as OpenSSL would take them from `env` in a process of working
    directory `cwd` (the window's): SSL_CERT_FILE and SSL_CERT_DIR (a list, os.pathsep
    between), else its built-in defaults (never this process's variables); a relative path is
    the window's, made absolute against `cwd`."""
    defaults = ssl.get_default_verify_paths()
    cafile = env.get(defaults.openssl_cafile_env) or defaults.openssl_cafile or ""
    capath = env.get(defaults.openssl_capath_env) or defaults.openssl_capath or ""

    def own(path: str) -> str:
        return os.path.join(cwd, path) if cwd and path else path

    dirs = [own(d) for d in capath.split(os.pathsep) if d]
    return own(cafile), os.pathsep.join(dirs)


def _verify_with(ca: tuple[str, str]) -> ssl.SSLContext:
    """A client context that trusts what `ca` names (what exists of it), as
    ssl.create_default_context() does with the process's own settings."""
    cafile = ca[0] if ca[0] and os.path.exists(ca[0]) else None
    # OpenSSL reads each directory of the list (os.pathsep between) that exists.
    capath = os.pathsep.join(d for d in ca[1].split(os.pathsep) if d and os.path.isdir(d))
    capath = capath or None
    if cafile is None and capath is None:
        return ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # trusts nothing, as OpenSSL would
    return ssl.create_default_context(cafile=cafile, capath=capath)
