# ruff: noqa: F811 (the rt fixture is imported from test_shared_daemon)
"""A shared daemon's Hub download after its window closed (issue #19, attack5 finding 4): it
goes on for shared.download_grace_s, so that a Reload Window finds it where it was; a window of
another environment never takes over a closed window's download (its token, proxy, cache): it
is stopped for that window, which downloads with its own. Real forwarders over real stdio, a
real daemon, a slow loopback Hub (tests/fakes/hf_hub.py); the download children are found in
/proc and their environment read there."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.e2e.test_download import REPO_ID, _download_children, hf_env, wait_for
from tests.e2e.test_shared_daemon import rt, start_raw  # noqa: F401
from tests.fakes.hf_hub import FakeHub

pytestmark = pytest.mark.slow

WEIGHTS = "model.safetensors"


def config(tmp_path: Path, grace_s: float) -> Path:
    cfg = tmp_path / f"grace-{grace_s}.toml"
    cfg.write_text(
        f'[local]\nmodel = "{REPO_ID}"\npreload = true\n[shared]\ndownload_grace_s = {grace_s}\n'
    )
    return cfg


def token_of(pid: int) -> str | None:
    """The HF_TOKEN in a download child's environment."""
    env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    found = [e.split(b"=", 1)[1].decode() for e in env if e.startswith(b"HF_TOKEN=")]
    return found[0] if found else None


async def close(d) -> None:
    """The editor closes the window: shutdown, exit, EOF."""
    assert "result" in await d.request("shutdown")
    d.send({"jsonrpc": "2.0", "method": "exit"})
    assert d.proc.stdin is not None
    d.proc.stdin.close()
    assert await d.wait(10) == 0


async def child_after(before: set[int], hub: FakeHub, done: int = 50_000) -> int:
    """The one new download child, once `done` bytes more than now have been sent."""
    start = hub.bytes_sent
    await wait_for(lambda: hub.bytes_sent > start + done, timeout=60)
    children = [p for p in _download_children(hub.url) if p not in before]
    assert len(children) == 1, children
    return children[0]


def weight_gets(hub: FakeHub) -> int:
    return sum(1 for m, path in hub.requests if m == "GET" and path.endswith(WEIGHTS))


CHAT = {"messages": [{"role": "user", "content": "hi"}], "maxTokens": 2}


async def test_a_reload_within_the_grace_goes_on_with_the_same_download(rt, tmp_path, tiny_model):
    """Steps: window A downloads; it closes; the same window (same environment, same config)
    opens again, as a Reload Window does. The download child must be the same one, still
    running when the new window is up, the weights fetched once, and the chat answered
    locally."""
    env = hf_env(tmp_path, "")
    async with FakeHub(REPO_ID, tiny_model, delay_s=0.15) as hub:
        env["HF_ENDPOINT"] = hub.url
        before = set(_download_children(hub.url))
        a = await start_raw(rt, config(tmp_path, 60), env=env)
        b = None
        try:
            await a.initialize()
            child = await child_after(before, hub)
            await close(a)
            b = await start_raw(rt, config(tmp_path, 60), env=env)
            await b.initialize()
            assert child in _download_children(hub.url), "the download ended before the reload"
            assert hub.bytes_sent < hub.total_bytes
            b.send({"jsonrpc": "2.0", "id": "chat", "method": "mlxd/chat", "params": CHAT})
            r = await b.response("chat", timeout=120)
            assert r["result"]["backend"] == "local", r
            assert [p for p in _download_children(hub.url) if p not in before] == []
            assert weight_gets(hub) == 1 and hub.ranges == [], hub.requests
        finally:
            for d in (a, b):
                if d is not None:
                    await d.kill()


async def test_a_window_of_another_token_never_takes_over_a_closed_windows_download(
    rt, tmp_path, tiny_model
):
    """Steps: window A (HF_TOKEN hf_a) downloads; it closes (grace 60 s); window B (HF_TOKEN
    hf_b) opens with the same model. A's child must stop at once (not after the grace), and
    B's model must come from a child of B's own environment."""
    async with FakeHub(REPO_ID, tiny_model, delay_s=0.15) as hub:
        env = {**hf_env(tmp_path, hub.url), "HF_TOKEN": "hf_a"}
        before = set(_download_children(hub.url))
        a = await start_raw(rt, config(tmp_path, 60), env=env)
        b = None
        try:
            await a.initialize()
            first = await child_after(before, hub)
            assert token_of(first) == "hf_a"
            await close(a)
            await asyncio.sleep(0.5)
            assert first in _download_children(hub.url)  # within the grace
            b = await start_raw(rt, config(tmp_path, 60), env={**env, "HF_TOKEN": "hf_b"})
            await b.initialize()
            await wait_for(lambda: first not in _download_children(hub.url), timeout=10)
            second = await child_after(before | {first}, hub, done=16_000)
            assert token_of(second) == "hf_b"
            b.send({"jsonrpc": "2.0", "id": "chat", "method": "mlxd/chat", "params": CHAT})
            r = await b.response("chat", timeout=120)
            assert r["result"]["backend"] == "local", r
        finally:
            for d in (a, b):
                if d is not None:
                    await d.kill()


async def test_a_download_another_token_waits_for_is_redone_as_its_own_when_its_window_closes(
    rt, tmp_path, tiny_model
):
    """Steps: windows A (hf_a) and B (hf_b) are open, and both wait for the model A's child
    downloads (B joined it: A's download, for A). A closes (grace 1 s): after the grace A's
    child must stop, and B's model must come from a child of B's environment."""
    async with FakeHub(REPO_ID, tiny_model, delay_s=0.3) as hub:
        env = {**hf_env(tmp_path, hub.url), "HF_TOKEN": "hf_a"}
        before = set(_download_children(hub.url))
        a = await start_raw(rt, config(tmp_path, 1), env=env)
        b = None
        try:
            await a.initialize()
            first = await child_after(before, hub)
            b = await start_raw(rt, config(tmp_path, 1), env={**env, "HF_TOKEN": "hf_b"})
            await b.initialize()
            b.send({"jsonrpc": "2.0", "id": "chat", "method": "mlxd/chat", "params": CHAT})
            await asyncio.sleep(1.0)  # B waits for A's download
            assert [p for p in _download_children(hub.url) if p not in before] == [first]
            await close(a)
            await wait_for(lambda: first not in _download_children(hub.url), timeout=7)
            second = await child_after(before | {first}, hub, done=16_000)
            assert token_of(second) == "hf_b"
            r = await b.response("chat", timeout=120)
            assert r["result"]["backend"] == "local", r
        finally:
            for d in (a, b):
                if d is not None:
                    await d.kill()
