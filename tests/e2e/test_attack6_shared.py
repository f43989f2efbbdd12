# ruff: noqa: F811 (the rt fixture is imported from test_shared_daemon)
"""Attack round 6 on the shared daemon (issue #19): new inputs against the download grace, the
taint file and the per-window environment. Real forwarders over real stdio, a real daemon of
this test's own runtime directory, a slow loopback Hub (tests/fakes/hf_hub.py)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.e2e.test_download import REPO_ID, _download_children, hf_env, wait_for
from tests.e2e.test_shared_daemon import rt, start_raw  # noqa: F401
from tests.e2e.test_shared_download_grace import child_after, close, config, token_of
from tests.fakes.hf_hub import FakeHub

pytestmark = pytest.mark.slow


def other_config(tmp_path: Path, tiny_model: Path, grace_s: float) -> Path:
    """A window that names another (local, loaded-from-disk) model and never loads it."""
    cfg = tmp_path / f"other-{grace_s}.toml"
    cfg.write_text(
        f'[local]\nmodel = "{tiny_model}"\npreload = false\n'
        f"[shared]\ndownload_grace_s = {grace_s}\n"
    )
    return cfg


async def test_another_windows_close_does_not_extend_a_closed_windows_download(
    rt, tmp_path, tiny_model
):
    """Steps: window A (HF_TOKEN hf_a, grace 2 s) downloads; A closes. Within A's grace an
    unrelated window C (another model, grace 600 s) opens and closes. A's download child, with
    A's token, must still end about 2 s after A closed: C's close must neither restart A's
    grace nor lend it C's length (else any window closing every < 30 s keeps a closed
    window's credentials downloading for ever)."""
    async with FakeHub(REPO_ID, tiny_model, delay_s=0.3) as hub:
        env = {**hf_env(tmp_path, hub.url), "HF_TOKEN": "hf_a"}
        before = set(_download_children())
        a = await start_raw(rt, config(tmp_path, 2), env=env)
        c = None
        try:
            await a.initialize()
            first = await child_after(before, hub)
            assert token_of(first) == "hf_a"
            await close(a)
            closed = time.monotonic()
            c = await start_raw(
                rt, other_config(tmp_path, tiny_model, 600), env=hf_env(tmp_path, "")
            )
            await c.initialize()
            await close(c)
            assert time.monotonic() - closed < 2, "too slow to test within A's grace"
            await wait_for(lambda: first not in _download_children(), timeout=8)
            assert hub.bytes_sent < hub.total_bytes
        finally:
            for d in (a, c):
                if d is not None:
                    await d.kill()


def gone_cwd(tmp_path: Path) -> list[str]:
    """A prefix that starts the command in a working directory deleted before it runs (an
    editor opened in a folder since removed: a deleted git worktree, a cleaned temp dir)."""
    where = tmp_path / "gone"
    where.mkdir()
    return ["sh", "-c", 'cd "$0" && rmdir "$0" && exec "$@"', str(where)]


@pytest.mark.parametrize("how", ["no config", "absolute config", "relative config"])
async def test_a_window_whose_working_directory_was_deleted_is_served(
    rt, tmp_path, tiny_config, how
):
    """Steps: `mlxd serve` (shared, the default) starts in a deleted working directory, with
    no --config, an absolute one, or a relative one (which cannot be read: a config problem,
    not a crash). The editor must get its `initialize` answered and `mlxd/stats` served by a
    shared daemon, as in-process serving does (before: a FileNotFoundError traceback from
    os.getcwd(), or os.path.abspath() of the relative config, and exit 1 before any answer)."""
    config = {"no config": None, "absolute config": tiny_config}.get(how, Path("mlxd.toml"))
    s = await start_raw(rt, config, parent=gone_cwd(tmp_path))
    try:
        await s.initialize()
        r = await s.request("mlxd/stats", {})
        assert r["result"]["server"]["sessions"] == 1, r
    finally:
        await s.kill()
