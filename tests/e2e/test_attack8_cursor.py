"""Attacks on mlxd/didMoveCursor (issue #16 item 4), real daemon over stdio, tiny model: a
settings reload between the cursor's notification and its rest, or after its suggestion was
made, must not leave work running or a suggestion shown that the new settings would not make."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from lsprotocol import types as T

from tests.conftest import Session, daemon, write_config
from tests.e2e.test_cursor_warm import LONG, MIDDLE, idle, moved
from tests.e2e.test_inline_e2e import inline, open_doc
from tests.e2e.test_work_ahead import config, local_total, stats, until

pytestmark = pytest.mark.timeout(120)


def reload(s: Session, settings: dict[str, Any]) -> None:
    s.client.workspace_did_change_configuration(T.DidChangeConfigurationParams(settings=settings))


async def test_background_off_between_the_move_and_the_rest_warms_nothing(
    tmp_path, tiny_model
) -> None:
    # The notification was taken while background work was on; the user turned it off before
    # the cursor had rested CURSOR_SETTLE_S: nothing may run after that.
    async with daemon(config(tmp_path, tiny_model)) as s:
        await s.wait_status("ready")
        open_doc(s, LONG)
        moved(s, MIDDLE)
        reload(s, {"inline": {"background": False}})
        await stats(s)  # both handled
        await asyncio.sleep(1.5)  # well past the rest
        st = await until(s, idle)
        assert (st["inline"]["warmups"], st["inline"]["cursorItems"]) == (0, 0)
        assert local_total(st, "generations") == 0


async def test_inline_off_between_the_move_and_the_rest_warms_nothing(tmp_path, tiny_model) -> None:
    async with daemon(config(tmp_path, tiny_model)) as s:
        await s.wait_status("ready")
        open_doc(s, LONG)
        moved(s, MIDDLE)
        reload(s, {"inline": {"languages": {"python": {"enabled": False}}}})
        await stats(s)
        await asyncio.sleep(1.5)
        st = await until(s, idle)
        assert (st["inline"]["warmups"], st["inline"]["cursorItems"]) == (0, 0)
        assert local_total(st, "generations") == 0


@pytest.mark.parametrize(
    "settings",
    [
        {"inline": {"multi_line": "never"}},
        {"inline": {"max_tokens": 2}},
        {"inline": {"background": False}},
    ],
    ids=["multi_line", "max_tokens", "background"],
)
async def test_a_suggestion_made_at_rest_is_not_shown_after_the_settings_changed(
    tmp_path, tiny_model, settings
) -> None:
    # Made under the old settings (its length, its lines), it is not what the new ones make.
    async with daemon(config(tmp_path, tiny_model)) as s:
        await s.wait_status("ready")
        open_doc(s, LONG)
        moved(s, MIDDLE)
        await until(s, lambda st: st["inline"]["cursorItems"] == 1 and idle(st))
        reload(s, settings)
        await inline(s, MIDDLE, 0, kind=2)
        st = await stats(s)
    assert (st["inline"]["cacheHits"], st["inline"]["aheadHits"]) == (0, 0)
    assert st["inline"]["generations"] == 1  # asked the model under the new settings


async def test_a_model_switch_mid_job_leaves_no_item_of_the_old_model(
    tmp_path, tiny_model, one_line_model
) -> None:
    # The old model never ends a line and the cap is long: its item takes seconds to make, so
    # the switch lands mid-job, with room on a fast machine (an 8-token item took ~0.1 s);
    # the test checks that it did.
    cfg = config(tmp_path, one_line_model).read_text().replace("max_tokens = 8", "max_tokens = 200")
    async with daemon(write_config(tmp_path / "long-item.toml", cfg)) as s:
        await s.wait_status("ready")
        open_doc(s, LONG)
        moved(s, MIDDLE)
        st = await until(s, lambda st: st["inline"]["warmups"] == 1)  # the window; the item next
        reload(s, {"local": {"model": str(tiny_model)}})
        await stats(s)
        await asyncio.sleep(0.5)
        await until(s, idle)
        await inline(s, MIDDLE, 0, kind=2)
        after = await stats(s)
    assert st["inline"]["aheadActive"] == 1, st["inline"]  # the job was running at the switch
    assert (after["inline"]["cacheHits"], after["inline"]["aheadHits"]) == (0, 0)


# --- privacy: nothing a cursor notification starts reaches a cloud backend ---------------------

SECRET = "file:///work/project/secret/keys.py"
PLAIN = "file:///work/project/app.py"


@pytest.mark.parametrize("chain", ["cloud-first", "local-first-broken"])
async def test_no_cursor_notification_reaches_a_cloud_backend(tmp_path, tiny_model, chain) -> None:
    from tests.conftest import cloud_first_config
    from tests.fakes.providers import FakeProvider, Reply

    async with FakeProvider(require_key="sk-cursor-0123456789") as fake:
        fake.default = Reply.text(["x + 1"])
        model = tiny_model if chain == "cloud-first" else tmp_path / "no-such-model"
        cfg = cloud_first_config(
            tmp_path / "c.toml",
            model,
            fake.openai_url,
            "CURSOR_KEY",
            (),
            (
                'inline = ["cloud", "local"]\n'
                if chain == "cloud-first"
                else 'inline = ["local", "cloud"]\n'
            )
            + 'exclude = ["**/secret/**"]\n'
            "[inline]\nmax_tokens = 8\nmax_ms = 20000\nwhole_lines = false\n",
        )
        async with daemon(cfg, env={"CURSOR_KEY": "sk-cursor-0123456789"}) as s:
            open_doc(s, LONG, uri=PLAIN)
            # A document quoting the excluded one (its lines pasted in), and the excluded one.
            open_doc(s, "API_KEY = 'sk-live-abcdef'\n" * 40, uri=SECRET)
            open_doc(s, "# copied\nAPI_KEY = 'sk-live-abcdef'\n" * 20, uri=PLAIN + ".q.py")
            for uri, line in ((PLAIN, MIDDLE), (SECRET, 20), (PLAIN + ".q.py", 10)):
                for i in range(5):  # a burst, then a rest
                    moved(s, line + i, uri=uri)
                if uri == SECRET and chain == "cloud-first":
                    # Its warm-up (the model loading first) ends before the next document's
                    # moves replace it: a fixed 1.2 s rest was too short on a loaded machine.
                    await until(s, lambda st: st["inline"]["warmups"] > 0, timeout=60)
                else:
                    await asyncio.sleep(1.2)
            st = await until(s, idle)
        assert fake.request_count == 0, [r.path for r in fake.requests]
        assert st["inline"]["cursorMoves"] == 15
        # Cloud-first: the excluded document's next request goes to the local model: warmed.
        assert (st["inline"]["warmups"] > 0) == (chain == "cloud-first")


# --- exactly once, and liveness, under odd and many notifications ------------------------------


async def test_odd_and_many_cursor_notifications_leave_every_request_answered_once(
    tmp_path, tiny_model
) -> None:
    import json

    from tests.e2e.test_protocol_errors import Raw

    d = await Raw.start(config(tmp_path, tiny_model))
    try:
        where = {"textDocument": {"uri": PLAIN}, "position": {"line": 3, "character": 0}}
        # Before initialize: a notification is dropped, a request with an id answered once.
        d.send({"jsonrpc": "2.0", "method": "mlxd/didMoveCursor", "params": where})
        d.send({"jsonrpc": "2.0", "id": "pre", "method": "mlxd/didMoveCursor", "params": where})
        pre = await d.response("pre")
        assert pre["error"]["code"] in (-32002, -32601), pre
        await d.initialize()
        d.send(
            {
                "jsonrpc": "2.0",
                "method": "textDocument/didOpen",
                "params": {
                    "textDocument": {
                        "uri": PLAIN,
                        "languageId": "python",
                        "version": 1,
                        "text": LONG,
                    }
                },
            }
        )
        odd: list[Any] = [
            None,
            [],
            "x",
            {"textDocument": None, "position": {"line": 1, "character": 0}},
            {"textDocument": {"uri": 5}, "position": {"line": 1, "character": 0}},
            {
                "textDocument": {"uri": "file:///" + "a" * 2_000_000},
                "position": {"line": 0, "character": 0},
            },
            {"textDocument": {"uri": PLAIN}, "position": {"line": 1.5, "character": 0}},
            {"textDocument": {"uri": PLAIN}, "position": {"line": "3", "character": 0}},
            {"textDocument": {"uri": PLAIN}, "position": {"line": 2**70, "character": 0}},
            {"textDocument": {"uri": PLAIN}, "position": {"line": 3, "character": 2**63}},
            {"textDocument": {"uri": PLAIN}, "position": {"line": 3, "character": -(2**70)}},
            {"textDocument": {"uri": PLAIN}, "position": {"line": True, "character": 0}},
            {"textDocument": {"uri": PLAIN}, "position": [3, 0]},
        ]
        for i, params in enumerate(odd):
            d.send({"jsonrpc": "2.0", "method": "mlxd/didMoveCursor", "params": params})
            d.send(
                {
                    "jsonrpc": "2.0",
                    "id": f"odd{i}",
                    "method": "mlxd/didMoveCursor",
                    "params": params,
                }
            )
        # A flood, no pauses, with a request every 250 notifications.
        ids = []
        for i in range(2000):
            pos = {"line": i % 1200, "character": i % 7}
            d.send(
                {
                    "jsonrpc": "2.0",
                    "method": "mlxd/didMoveCursor",
                    "params": {"textDocument": {"uri": PLAIN}, "position": pos},
                }
            )
            if i % 250 == 0:
                ids.append(f"s{i}")
                d.send({"jsonrpc": "2.0", "id": ids[-1], "method": "mlxd/stats", "params": {}})
        for msg_id in ids:
            assert "result" in await d.response(msg_id, timeout=60)
        for i in range(len(odd)):
            assert (await d.response(f"odd{i}"))["error"]["code"] == -32601
        got = await d.request(
            "textDocument/inlineCompletion",
            {
                "textDocument": {"uri": PLAIN},
                "position": {"line": MIDDLE, "character": 0},
                "context": {"triggerKind": 2},
            },
        )
        assert "result" in got, got
        st = (await d.request("mlxd/stats", {}))["result"]
        assert st["inline"]["cursorMoves"] == 2000 + 2  # the flood, 2**70 and 2**63: clamped
        assert st["server"]["tasks"] < 30, st["server"]
        # Exactly once: each id answered once, nothing but frames on stdout.
        answered = [f.get("id") for f in d.frames if "method" not in f]
        assert len(answered) == len(set(answered)), answered
        assert d.stray == []
        assert all(isinstance(f, dict) for f in d.frames)
        json.dumps(d.frames)
    finally:
        await d.kill()
