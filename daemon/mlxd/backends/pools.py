"""The process's HTTP connection pools: one aiohttp session per timeout settings (and event loop),
shared by every cloud backend with those settings, of every session of a shared daemon (issue
#19 item 2: the HTTP pools are per process). Keyed by their settings, so one window's timeouts
never become another's. A pool closes when the last backend using it closes.

A pooled connection carries no window's state: no cookie jar (a provider's cookie set for one
window is never sent for another), each request brings its own headers and key.
"""

from __future__ import annotations

import asyncio
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

    def session(self, user: object, timeouts: TimeoutsConfig) -> aiohttp.ClientSession:
        """The pool for `timeouts` on the running loop; `user` holds it until release()."""
        import aiohttp  # here: a daemon without HTTP backends never needs it (factory.py)

        key = (timeouts.connect_s, timeouts.idle_s, asyncio.get_running_loop())
        entry = self._pools.get(key)
        if entry is None or entry[0].closed:
            session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(
                    total=None, sock_connect=timeouts.connect_s, sock_read=timeouts.idle_s
                ),
                connector=aiohttp.TCPConnector(
                    limit=IN_ALL, limit_per_host=PER_HOST, ttl_dns_cache=300
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
