"""The process's HTTP connection pools (issue #19 item 2): shared by the backends with the same
timeout settings, one per settings (never last-writer-wins), closed with their last user, and
no cookie jar (a cookie set for one window is never sent for another)."""

from __future__ import annotations

import aiohttp

from mlxd.backends import HTTPPools
from mlxd.config import TimeoutsConfig


async def test_pools_are_shared_by_settings_and_closed_with_their_last_user() -> None:
    pools = HTTPPools()
    a, b, c = object(), object(), object()
    first = pools.session(a, TimeoutsConfig())
    assert pools.session(b, TimeoutsConfig(first_token_s=99)) is first  # not a pool setting
    other = pools.session(c, TimeoutsConfig(idle_s=29))
    assert other is not first and len(pools) == 2
    assert other.timeout.sock_read == 29 and first.timeout.sock_read == 30
    assert isinstance(first.cookie_jar, aiohttp.DummyCookieJar)
    await pools.release(a)
    assert not first.closed  # b still uses it
    await pools.release(b)
    await pools.release(c)
    assert first.closed and other.closed and len(pools) == 0


async def test_each_windows_ca_bundle_gets_its_own_pool(monkeypatch) -> None:
    # Attack #19 finding H's sibling: OpenSSL reads SSL_CERT_FILE from the process
    # environment, the first window's in a shared daemon; a window's pools verify with its own.
    import ssl

    from mlxd.backends.pools import ca_settings

    monkeypatch.setenv("SSL_CERT_FILE", "/the/daemons/ca.pem")
    defaults = ssl.get_default_verify_paths()
    assert ca_settings({}) == (defaults.openssl_cafile, defaults.openssl_capath)
    assert ca_settings({"SSL_CERT_FILE": "/w/ca.pem"})[0] == "/w/ca.pem"
    assert ca_settings({"SSL_CERT_DIR": "/w/certs"})[1] == "/w/certs"
    pools, a, b, c = HTTPPools(), object(), object(), object()
    one = pools.for_window({"SSL_CERT_FILE": "/w/ca.pem"}).session(a, TimeoutsConfig())
    other = pools.for_window({}).session(b, TimeoutsConfig())
    own = pools.for_window(None).session(c, TimeoutsConfig())  # in-process: the process's
    assert len({id(one), id(other), id(own)}) == 3
    for user in (a, b, c):
        await pools.release(user)
    assert len(pools) == 0


def test_a_windows_relative_ca_paths_are_its_own_and_a_directory_list_is_kept() -> None:
    # Attack 5 finding 6: a relative SSL_CERT_FILE / SSL_CERT_DIR is the editor's, relative to
    # the editor's working directory, not the daemon's (/); SSL_CERT_DIR may list directories.
    import os

    from mlxd.backends.pools import ca_settings

    env = {"SSL_CERT_FILE": "certs/ca.pem", "SSL_CERT_DIR": f"d1{os.pathsep}/abs/d2"}
    assert ca_settings(env, "/w") == ("/w/certs/ca.pem", f"/w/d1{os.pathsep}/abs/d2")
    assert ca_settings({"SSL_CERT_FILE": "/abs/ca.pem"}, "/w")[0] == "/abs/ca.pem"
    assert ca_settings(env)[0] == "certs/ca.pem"  # no window directory known: as given
