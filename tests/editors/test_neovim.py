"""The Neovim plugin end to end: a real headless Neovim, the real daemon, the tiny random model.

Each test runs one Lua scenario from editors/neovim/tests/ (keys are typed through nvim_input, so
insert mode, mappings and autocommands are the real ones) and checks the JSON it writes. The tiny
model's words are random, so the checks compare with what the daemon itself returned.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from ..kit import daemon_pids, served_sessions
from .conftest import NVIM_PLUGIN, Nvim, NvimRunner, daemon_cmd, in_thread

pytestmark = [pytest.mark.slow, pytest.mark.editor, pytest.mark.timeout(90)]


def scenario_env(config: Path, tmp_path: Path, **extra: str) -> dict[str, str]:
    return {
        "MLXD_TEST_CMD": json.dumps(daemon_cmd(config)),
        "MLXD_TEST_FILE": str(tmp_path / "work" / "fib.py"),
        **extra,
    }


def sample_file(tmp_path: Path, text: str = "") -> Path:
    path = tmp_path / "work" / "fib.py"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def shown_part(line: str, cursor_col: int, item: dict[str, Any]) -> tuple[str, int, int]:
    """What a client shows for `item` at the cursor: insertText minus what is typed in its range.

    Returns (rest, start_col, end_col); the test text is ASCII, so LSP columns are byte columns.
    """
    text = item["insertText"]
    rng = item.get("range")
    if not rng:
        return text, cursor_col, cursor_col
    start, end = rng["start"]["character"], rng["end"]["character"]
    typed = line[start:cursor_col]
    assert text.startswith(typed), (text, typed)
    return text[len(typed) :], start, max(end, cursor_col)


def as_displayed(text: str) -> str:
    """Neovim stores virtual text with control characters as ^X (the random model emits some)."""
    return re.sub(r"[\x00-\x08\x0b-\x1f\x7f]", lambda m: "^" + chr((ord(m[0]) + 64) % 128), text)


def ghost_impls(nvim: Nvim) -> list[str]:
    return ["native", "fallback"] if nvim.has_native_inline else ["fallback"]


def ghost_cases(*, fallback_on_012: bool = False) -> pytest.MarkDecorator:
    """The (Neovim, ghost-text implementation) pairs a test runs: native on 0.12, the plugin's
    own (fallback) on 0.11, and with `fallback_on_012` the fallback on 0.12 too; with $MLXD_NVIM
    both implementations on that one Neovim (native skipped before 0.12).

    Fallback on 0.12 runs the same plugin Lua as on 0.11: the plugin's only version checks
    (init.lua's and restart.lua's has('nvim-0.11'), health.lua's) hold on both, and ghost.lua,
    inline.lua, keys.lua and toggle.lua test none, so that case only adds 0.12's core under the
    same code. It is kept where that core matters most, showing and accepting (ghost) and typing
    through an item (typing: extmarks, joins, typeahead)."""
    if os.environ.get("MLXD_NVIM"):
        pairs = [("MLXD_NVIM", "native"), ("MLXD_NVIM", "fallback")]
    else:
        pairs = [("0.12", "native"), ("0.11", "fallback")]
        pairs += [("0.12", "fallback")] if fallback_on_012 else []
    return pytest.mark.parametrize(("nvim", "impl"), pairs, indirect=["nvim"])


@ghost_cases(fallback_on_012=True)
def test_ghost_text_appears_while_typing_and_accept_inserts_it(
    impl: str, nvim: Nvim, neovim: NvimRunner, tiny_config: Path, tmp_path: Path
) -> None:
    if impl == "native" and not nvim.has_native_inline:
        pytest.skip(f"native inline completion needs Neovim 0.12; this is {nvim.version}")
    sample_file(tmp_path)
    run = neovim.run("ghost", scenario_env(tiny_config, tmp_path, MLXD_TEST_GHOST=impl))
    r, ctx = run.result, run.context()

    # The plugin started the daemon and picked the asked-for implementation.
    assert r["server_info"]["name"] == "mlxd", ctx
    assert r["impl"] == impl, ctx
    assert r["mode_when_shown"] == "i", ctx

    # The ghost text is the daemon's first item, minus what is already typed.
    items = r["response"]["result"]["items"]
    assert items, ctx
    row, col = r["cursor_before"][0] - 1, r["cursor_before"][1]
    line = r["before"][row]
    rest, start, end = shown_part(line, col, items[0])
    assert rest, ctx
    assert r["ghost"] == as_displayed(rest), ctx
    assert (r["mark"]["row"], r["mark"]["col"]) == (row, col), ctx

    # Accepting replaces the item's range with its text and leaves the cursor after it.
    text = items[0]["insertText"]
    new_line = line[:start] + text + line[end:]
    expected = r["before"][:row] + new_line.split("\n") + r["before"][row + 1 :]
    assert r["after"] == expected, ctx
    inserted = (line[:start] + text).split("\n")
    assert r["cursor_after"] == [row + len(inserted), len(inserted[-1].encode())], ctx
    assert r["mode_after"] == "i", ctx
    assert r["marks_after_accept"] == 0, ctx

    # The next suggestion shows up after another keystroke; dismiss hides it, the text stays.
    assert r["second_shown"], ctx
    assert r["dismissed"], ctx
    assert r["marks_after_esc"] == 0, ctx
    assert r["status"].startswith("mlxd: ready"), ctx

    # While the model loaded, the statusline and vim.lsp.status() showed the progress.
    lines = r["statuslines"]
    assert lines[0] == "mlxd: starting", ctx
    loading = [i for i, s in enumerate(lines) if re.fullmatch(r"mlxd: .+ \d+%", s)]
    assert loading, ctx
    assert "mlxd: ready" in lines[loading[-1] + 1 :], ctx
    assert any(re.match(r" *\d+%: mlxd", s) for s in r["lsp_status"]), ctx


def test_chat_streams_the_selection_answer_into_the_chat_buffer(
    neovim: NvimRunner, tiny_config: Path, tmp_path: Path
) -> None:
    sample_file(tmp_path, "def fib(n):\n    return n\nprint(fib(3))\n")
    run = neovim.run("chat", scenario_env(tiny_config, tmp_path))
    r, ctx = run.result, run.context()
    assert r.get("err") is None, ctx
    result = r["result"]
    assert result["backend"] == "local", ctx
    assert result["text"], ctx

    # Streamed in several steps, each one appending to the buffer.
    snaps = r["snapshots"]
    assert len(snaps) == len(r["deltas"]) >= 3, ctx
    assert len(set(snaps)) >= 3, ctx
    for before, after in zip(snaps, snaps[1:], strict=False):
        assert after.startswith(before), ctx
    assert "".join(r["deltas"]) == result["text"], ctx

    # The buffer holds the question with the selection and exactly the daemon's answer.
    final = r["final"]
    assert not r["resynced"], ctx
    assert final == snaps[-1], ctx
    assert final.startswith("## You\nexplain\n\nFrom `"), ctx
    assert "```python\ndef fib(n):\n    return n\n```" in final, ctx
    assert final.endswith("\n\n## mlxd\n" + result["text"]), ctx
    assert r["chat_buf_name"].endswith("mlxd://chat"), ctx
    assert r["chat_win_is_current"], ctx
    assert [m["role"] for m in r["history"]] == ["user", "assistant"], ctx
    assert r["history"][1]["content"] == result["text"], ctx

    # Statusline and :MlxdModels.
    assert r["status"] == "mlxd: ready | local", ctx
    models = r["models"]
    assert any(m["backend"] == "local" and m["loaded"] for m in models["models"]), ctx
    assert models["defaults"]["chat"], ctx
    assert "mlxd models" in r["messages"], ctx
    assert "loaded" in r["messages"], ctx
    # Served through the shared daemon (issue #19, the default): one daemon, one session.
    rt = neovim.runtime_dir
    assert served_sessions(rt) == 1 and len(daemon_pids(rt)) == 1, ctx


@pytest.mark.serial  # the cancel's answer within 2 s
def test_ctrl_c_in_the_chat_buffer_cancels_the_stream(
    neovim: NvimRunner, tiny_config: Path, tmp_path: Path
) -> None:
    run = neovim.run("cancel", scenario_env(tiny_config, tmp_path))
    r, ctx = run.result, run.context()
    assert r["focused_chat"], ctx
    assert r["cancelled"], ctx
    assert r.get("result") is None, ctx

    # The daemon answered the cancelled request with -32800, promptly.
    assert r["ack"] and "code = -32800" in r["ack"], ctx
    assert f"id = {r['req_id']}," in r["ack"], ctx
    assert r["reply_ms"] < 2000, ctx

    # Nothing was written after the cancel.
    assert r["text_later"] == r["text_at_cancel"], ctx
    assert r["updates_later"] == r["updates_at_cancel"], ctx
    assert r["cancel_again"] is False, ctx

    # The daemon keeps serving; the partial answer stays in the conversation.
    assert r.get("second_err") is None, ctx
    assert r["second"]["text"], ctx
    assert r["history_roles"] == ["user", "assistant", "user", "assistant"], ctx


def test_checkhealth_reports_ok_with_and_without_a_running_daemon(
    neovim: NvimRunner, tiny_config: Path, tmp_path: Path
) -> None:
    sample_file(tmp_path, "x = 1\n")
    run = neovim.run("health", scenario_env(tiny_config, tmp_path))
    r, ctx = run.result, run.context()
    assert not r["client_after_probe"], ctx
    for key, marker in (("probe", "OK starts: mlxd"), ("running", "OK running: mlxd")):
        text = "\n".join(r[key])
        assert marker in text, ctx
        assert "OK daemon:" in text, ctx
        assert "ERROR" not in text and "WARNING" not in text, ctx
    running = "\n".join(r["running"])
    assert "OK state: ready" in running, ctx
    assert "OK backend local: ok" in running, ctx
    assert "loaded" in running, ctx


def test_set_key_prompts_without_echo_and_keeps_the_key_out_of_logs(
    neovim: NvimRunner, tiny_model: Path, tmp_path: Path
) -> None:
    config = tmp_path / "mlxd.toml"
    config.write_text(
        f'[local]\nmodel = "{tiny_model}"\npreload = false\n\n'
        '[backends.cloudy]\nbase_url = "http://127.0.0.1:9/v1"\nmodel = "m"\n'
    )
    key = "sk-test-7f3a9c1e5b"
    run = neovim.run(
        "setkey",
        scenario_env(config, tmp_path, MLXD_TEST_BACKEND="cloudy", MLXD_TEST_KEY=key),
    )
    r, ctx = run.result, run.context()
    # Issue #18 new-user finding 12: an unknown name is refused before the key is asked for,
    # the error lists the configured backends, and <Tab> completes them.
    assert r["unknown_prompted"] is False, ctx
    refusal = [n["msg"] for n in r["unknown_notes"]]
    assert len(refusal) == 1 and '"openai"' in refusal[0], ctx
    assert "configured: local, cloudy" in refusal[0], ctx
    assert r["completion"] == ["cloudy", "local"], ctx
    assert r["completion_c"] == ["cloudy"], ctx
    assert [n["msg"] for n in r["notes"]] == ["mlxd: key for cloudy set"], ctx
    assert key not in r["messages"], ctx
    assert "rpc.send" in run.lsp_log, ctx  # the log was at debug level...
    assert not r["log_has_key"] and key not in run.lsp_log, ctx  # ...and still has no key
    assert key not in run.stderr, ctx
    assert r["log_level_restored"], ctx
    assert r["unknown"]["ok"] is False, ctx
    assert "no-such-backend" in r["unknown"]["err"], ctx
    assert key not in r["unknown"]["err"], ctx


@ghost_cases(fallback_on_012=True)
def test_typing_through_ghost_text_never_corrupts_the_buffer(
    impl: str, nvim: Nvim, neovim: NvimRunner, tiny_config: Path, tmp_path: Path
) -> None:
    """Items 1, 2, 5 of issue #18: a stale item disappears on the next key, accept never inserts
    it at its old range, joining its line raises no Lua error, and it is grey/italic in cterm."""
    if impl not in ghost_impls(nvim):
        pytest.skip(f"native inline completion needs Neovim 0.12; this is {nvim.version}")
    sample_file(tmp_path)
    run = neovim.run("typing", scenario_env(tiny_config, tmp_path, MLXD_TEST_GHOST=impl), 60)
    r, ctx = run.result, run.context()
    assert r["impl"] == impl, ctx
    # A. The key that does not match: no stale item on screen, accept inserts nothing.
    assert r["line_typed"] == r["expected_line"], ctx
    assert r["marks_after_key"] == 0 and r["ghost_after_key"] == "", ctx
    assert r["accepted"] is False, ctx
    assert r["line_after_accept"] == r["expected_line"], ctx
    if r["again_shown"]:
        assert r["typeahead_accepted"] is False, ctx
        assert r["typeahead_line"] == r["typeahead_expected"], ctx
    # D. Typing the item's next character keeps the rest on screen at once (trimmed), and accept
    # right away (also in the same typeahead) inserts the whole item where it belongs.
    for case in ("through_typed", "through_typeahead"):
        d = r[case]
        assert "skipped" not in d, ctx  # the tiny model always offered a typeable item so far
        if case == "through_typed":
            assert d["ghost_after"] == d["ghost"][1:], ctx
        assert d["accepted"] is True, ctx
        if "^" not in d["ghost"]:  # a control character shows as ^X: its raw text is unknown
            assert d["lines"] == d["expected"], ctx
    # B. Joining the item's last line: no error, nothing left on screen.
    assert r["last_row"] == 2, ctx
    assert r["lines_after_join"] == 2, ctx
    assert r["errmsg_after_join"] == "", ctx
    assert "Index out of bounds" not in run.stderr, ctx
    assert r["marks_after_join"] == 0, ctx
    # C. Grey and italic without truecolor too.
    assert r["ghost_hl"] == "MlxdGhost", ctx
    attrs = r["ghost_hl_attrs"]
    assert attrs.get("ctermfg") is not None and attrs.get("italic"), ctx
    assert attrs.get("cterm", {}).get("italic"), ctx


@ghost_cases()
def test_ghost_text_shows_before_the_first_edit_and_only_the_current_buffer_asks(
    impl: str, nvim: Nvim, neovim: NvimRunner, tiny_config: Path, tmp_path: Path
) -> None:
    """New-user pass of issue #18 on 0.12: `A` in a file just opened showed no ghost text (the
    answer was dropped as stale: the built-in's request carries the LSP version, 0 before the
    first edit, and the guard compared it with b:changedtick); and each key typed in one buffer
    sent an inline request for every other attached buffer too (the built-in's autocommands are
    not buffer-local), which queued on the one model."""
    if impl not in ghost_impls(nvim):
        pytest.skip(f"native inline completion needs Neovim 0.12; this is {nvim.version}")
    sample_file(tmp_path)
    run = neovim.run("fresh", scenario_env(tiny_config, tmp_path, MLXD_TEST_GHOST=impl), 75)
    r, ctx = run.result, run.context()
    assert r["impl"] == impl and r["other_listed"], ctx
    # A. The daemon answered with an item for the unedited buffer: it is on screen.
    assert r["answered"], ctx  # the tiny model always answered with text so far
    assert r["unedited"], ctx
    assert r["shown"] and r["ghost"], ctx
    # B. Every inline request was for the buffer typed in.
    assert r["sent"], ctx
    assert set(r["sent"]) == {r["this_uri"]}, ctx
    assert r["errmsg"] == "", ctx


@pytest.mark.parametrize("case", ["not_on_path", "bad_path", "readme_path", "exits", "tilde"])
def test_a_daemon_that_cannot_start_is_reported_once_with_the_fix(
    case: str, neovim: NvimRunner, tiny_config: Path, tmp_path: Path
) -> None:
    """Item 3 of issue #18: a missing executable or a wrong `cmd` is said once, with the fix;
    the statusline is not empty. A `~` path (as the README shows) starts the daemon."""
    sample_file(tmp_path, "x = 1\n")
    (tmp_path / "work" / "other.py").write_text("y = 2\n")
    home = tmp_path / "home"
    (home / "bin").mkdir(parents=True)
    (home / "bin" / "mlxd").symlink_to(daemon_cmd(tiny_config)[0])
    env = scenario_env(tiny_config, tmp_path, MLXD_TEST_CASE=case, HOME=str(home))
    run = neovim.run("missing", env)
    r, ctx = run.result, run.context()
    if case == "tilde":
        assert r["started"], ctx
        assert r["notes"] == [], ctx
        assert r["status"].startswith("mlxd: ready"), ctx
        return
    ours = [n for n in r["notes"] if n["msg"].startswith("mlxd")]
    assert len(ours) == 1, ctx
    # Neovim itself may warn once that the client quit; never once per buffer.
    assert len(r["notes"]) <= 2, ctx
    note = ours[0]
    assert note["level"] == 4, ctx  # vim.log.levels.ERROR
    assert "cmd" in note["msg"] and ":checkhealth mlxd" in note["msg"], ctx
    expected = {
        "not_on_path": "`mlxd-not-installed` is not on $PATH",
        "bad_path": "/nonexistent/venv/bin/mlxd does not exist",
        "readme_path": f"{home}/.venvs/mlxd/bin/mlxd does not exist",
        "exits": "exited with code 2 before it started",
    }[case]
    assert expected in note["msg"], ctx
    if case == "exits":  # the daemon's own error, not only "see :LspLog"
        assert "invalid choice: 'srve'" in note["msg"], ctx
    # The advice never suggests the path that just failed (new-user finding 18); it says how to
    # find the real one.
    if case == "readme_path":
        assert "~/.venvs/mlxd/bin/mlxd" not in note["msg"], ctx
    if case in ("bad_path", "readme_path"):
        assert "command -v mlxd" in note["msg"], ctx
    assert r["status"] == "mlxd: cannot start (:checkhealth mlxd)", ctx


@ghost_cases()
def test_keys_do_their_usual_thing_without_a_suggestion_and_suggest_asks_now(
    impl: str, nvim: Nvim, neovim: NvimRunner, tiny_config: Path, tmp_path: Path
) -> None:
    """Items 4 and 10 of issue #18: <M-l>, <M-L>, <M-]>... never type letters when nothing is
    shown (they act as without the plugin); the suggest key asks at once; accept-word."""
    if impl not in ghost_impls(nvim):
        pytest.skip(f"native inline completion needs Neovim 0.12; this is {nvim.version}")
    sample_file(tmp_path)
    run = neovim.run("keys", scenario_env(tiny_config, tmp_path, MLXD_TEST_GHOST=impl), 60)
    r, ctx = run.result, run.context()
    assert r["impl"] == impl, ctx
    for key, want in r["without"].items():
        got = r["with_plugin"][key]
        assert got == want, (key, ctx)
        assert got["lines"] == ["abc def", "ghi", "jkl"], (key, ctx)  # no letter typed
    assert r["with_plugin"]["<M-l>"]["mode"] == "n", ctx
    # Suggest now: one request, Invoked (1), and a suggestion; accept-word inserts one word.
    assert r["suggest_kinds"] and r["suggest_kinds"][0] == 1, ctx
    assert r["suggest_shown"], ctx
    assert r["word"], ctx
    assert r["after_word"] == r["expected"], ctx


def test_the_statusline_component_keeps_neovims_own_statusline(
    nvim: Nvim, neovim: NvimRunner, tiny_config: Path, tmp_path: Path
) -> None:
    """Item 7 of issue #18: the documented statusline shows the state beside Neovim's own
    (file name, ruler), on 0.11 (empty default option) and 0.12 (a default value)."""
    sample_file(tmp_path, "x = 1\n")
    run = neovim.run("statusline", scenario_env(tiny_config, tmp_path))
    r, ctx = run.result, run.context()
    assert (r["default_option"] == "") == (nvim.version < (0, 12, 0)), ctx
    assert r["twice"], ctx
    # Before the daemon starts: exactly Neovim's own statusline.
    assert "mlxd" not in r["before_start"], ctx
    ready = r["ready"]
    assert r["text"].startswith("mlxd: ready"), ctx
    assert "fib.py" in ready, ctx
    # The state, then a space, then the ruler (line,col); never glued to "Top"/"All".
    assert re.search(r"mlxd: ready\S* +.*\d+,\d+ .*(All|Top|Bot)", ready), ctx
    assert not re.search(r"(All|Top|Bot)mlxd", ready), ctx


@pytest.mark.parametrize("how", ["lazy", "packadd"])
def test_install_from_the_repository_subdirectory_and_help_works(
    how: str, neovim: NvimRunner, tiny_config: Path, tmp_path: Path
) -> None:
    """Items 6 and 22 of issue #18: a lazy.nvim `dir=` spec (loaded as lazy.nvim loads a local
    plugin; lazy.nvim itself is not downloadable here) and `packadd` from a pack/*/opt symlink
    both work although the plugin lives in editors/neovim, and `:help mlxd` works (tags shipped)."""
    sample_file(tmp_path, "x = 1\n")
    site = tmp_path / "site"
    (site / "pack" / "mlxd" / "opt").mkdir(parents=True)
    (site / "pack" / "mlxd" / "opt" / "mlxd").symlink_to(NVIM_PLUGIN)
    env = scenario_env(tiny_config, tmp_path, MLXD_TEST_INSTALL=how, MLXD_TEST_SITE=str(site))
    run = neovim.run("install", env, rtp=False)
    r, ctx = run.result, run.context()
    assert r["before"] == 0 and r["after"] == 2, ctx
    assert r["help_ok"], ctx
    assert r["help_file"] == "mlxd.txt", ctx
    assert r["help_setup"], ctx
    assert r["status"].startswith("mlxd: ready"), ctx


def test_shipped_help_tags_are_up_to_date(nvim: Nvim, tmp_path: Path) -> None:
    """Item 6 of issue #18: doc/tags is committed (no :helptags step needed) and matches doc/."""
    shipped = NVIM_PLUGIN / "doc" / "tags"
    assert shipped.exists(), "editors/neovim/doc/tags is missing: run :helptags editors/neovim/doc"
    doc = tmp_path / "doc"
    shutil.copytree(NVIM_PLUGIN / "doc", doc)
    (doc / "tags").unlink()
    subprocess.run(
        [nvim.path, "--headless", "--clean", "-u", "NONE", "-c", f"helptags {doc}", "-c", "qa!"],
        check=True,
        timeout=30,
        capture_output=True,
    )
    assert (doc / "tags").read_text() == shipped.read_text(), "regenerate with :helptags"


def test_chat_says_why_it_fell_back_shows_life_and_tags_defaults(
    neovim: NvimRunner, tiny_model: Path, tmp_path: Path
) -> None:
    """Items 8 and 9 of issue #18: the cloud backend has no API key, local answers. The chat shows
    a line before the first token, the footer in seconds, and 'no API key' with :MlxdSetKey;
    :MlxdModels tags the model of each default backend."""
    config = tmp_path / "mlxd.toml"
    config.write_text(
        f'[local]\nmodel = "{tiny_model}"\npreload = true\n\n'
        '[routing]\ncloud = true\nchat = ["cloudy", "local"]\n\n'
        '[backends.cloudy]\nbase_url = "http://127.0.0.1:9/v1"\nmodel = "m"\n'
        'api_key_env = "MLXD_TEST_UNSET_KEY"\n'
    )
    run = neovim.run("fallback", scenario_env(config, tmp_path))
    r, ctx = run.result, run.context()
    res = r["result"]
    assert res["backend"] == "local", ctx
    assert [a["backend"] for a in res["attempts"]] == ["cloudy"], ctx
    assert "no API key" in res["attempts"][0]["error"], ctx
    # A sign of life before the first token, gone once the answer is there.
    assert not r["updated_before"], ctx
    assert any("waiting for the answer" in v for v in r["virt_before"]), ctx
    assert not any("waiting" in v for v in r["virt_after"]), ctx
    footer = [v for v in r["virt_after"] if v.startswith("-- ")]
    assert re.fullmatch(r"-- local \S+ \| \d+ tokens \| \d+\.\d s", footer[0]), ctx
    assert footer[1] == "-- fallback: cloudy has no API key; set one with :MlxdSetKey cloudy", ctx
    warned = [n for n in r["notes"] if "no API key" in n["msg"]]
    assert len(warned) == 1 and ":MlxdSetKey cloudy" in warned[0]["msg"], ctx
    # :MlxdModels: each default kind tags the model of its backend.
    defaults = r["models"]["defaults"]
    for m in r["models"]["models"]:
        kinds = sorted(k for k, b in defaults.items() if b == m["backend"])
        if kinds:
            assert f"default: {', '.join(kinds)}" in r["models_text"], ctx
    assert "default:" in r["models_text"], ctx


@ghost_cases()
def test_toggle_insert_code_block_and_pick_a_model(
    impl: str, nvim: Nvim, neovim: NvimRunner, tiny_config: Path, tmp_path: Path
) -> None:
    """Item 10 of issue #18: :MlxdToggle (buffer) and :MlxdToggle! (everywhere) stop asking and
    showing; markdown has none by default (ghost.filetypes) until toggled on; :MlxdInsert puts an answer's code block at the cursor; :MlxdPick pins a backend."""
    if impl not in ghost_impls(nvim):
        pytest.skip(f"native inline completion needs Neovim 0.12; this is {nvim.version}")
    sample_file(tmp_path)
    (tmp_path / "work" / "other.py").write_text("")
    (tmp_path / "work" / "notes.md").write_text("")
    run = neovim.run("controls", scenario_env(tiny_config, tmp_path, MLXD_TEST_GHOST=impl), 70)
    r, ctx = run.result, run.context()
    off = {"asked": 0, "shown": False}
    assert r["off"] == off, ctx
    assert "ghost off" in r["status_off"], ctx
    assert r["on"]["asked"] >= 1 and r["on"]["shown"], ctx
    assert r["global_off_other"] == off and r["global_off_first"] == off, ctx
    assert r["global_on"]["asked"] >= 1 and r["global_on"]["shown"], ctx
    assert r["markdown_default"] == off, ctx  # prose: off by default, as in VS Code
    assert r["markdown_toggled"]["asked"] >= 1 and r["markdown_toggled"]["shown"], ctx
    assert [b["lines"] for b in r["blocks"]] == [["x = 1"], ["def f():", "    return 2"]], ctx
    assert r["inserted"], ctx
    assert r["after_insert"] == ["a = 1", "def f():", "    return 2", "b = 2"], ctx
    # The cursor was left after the block; its line is not blank, so block 1 goes below it.
    assert r["inserted_first"], ctx
    assert r["after_first"] == ["a = 1", "def f():", "    return 2", "x = 1", "b = 2"], ctx
    assert r["pick_labels"][0].startswith("routing"), ctx
    assert any("[local]" in label for label in r["pick_labels"]), ctx
    assert r["chat_backend_param"] == "local" and r["chat_result_backend"] == "local", ctx


@ghost_cases()
def test_several_items_show_their_count_and_cycle(
    impl: str, nvim: Nvim, neovim: NvimRunner, tmp_path: Path
) -> None:
    """Item 19 (Neovim half) of issue #18. The daemon returns one item today, so a small real
    pygls server that returns three stands in for it (tests/editors/servers/several_items.py)."""
    if impl not in ghost_impls(nvim):
        pytest.skip(f"native inline completion needs Neovim 0.12; this is {nvim.version}")
    sample_file(tmp_path)
    server = Path(__file__).parent / "servers" / "several_items.py"
    env = {
        "MLXD_TEST_CMD": json.dumps([sys.executable, str(server)]),
        "MLXD_TEST_FILE": str(tmp_path / "work" / "fib.py"),
        "MLXD_TEST_GHOST": impl,
    }
    r, ctx = (run := neovim.run("cycle", env)).result, run.context()
    seen = [re.sub(r"_\d+", "", s) for s in r["seen"]]
    assert seen == [
        "alpha (1/3)",
        "beta (2/3)",
        "gamma (3/3)",
        "alpha (1/3)",
        "gamma (3/3)",
    ], ctx
    assert re.fullmatch(r"x = gamma_\d+", r["line"]), ctx
    assert r["rest_gone"], ctx


def test_cancel_stops_a_model_download(
    neovim: NvimRunner, tiny_model: Path, tmp_path: Path
) -> None:
    """Item 20 of issue #18 (Neovim): a Hugging Face download shows its bytes in the statusline
    and :MlxdCancel, with no answer streaming, stops it (window/workDoneProgress/cancel): the
    daemon hangs up mid-file and says the load was cancelled."""
    from tests.fakes.hf_hub import FakeHub

    repo = "mlx-community/tiny-mlxd-test-4bit"
    sample_file(tmp_path, "x = 1\n")
    config = tmp_path / "mlxd.toml"
    config.write_text(f'[local]\nmodel = "{repo}"\npreload = true\n')
    # ~944 kB at 16 kB per 0.2 s: about 12 s, far longer than the scenario needs.
    with in_thread(FakeHub(repo, tiny_model, delay_s=0.2)) as hub:
        env = scenario_env(
            config,
            tmp_path,
            HF_ENDPOINT=hub.url,
            HF_HOME=str(tmp_path / "hf"),
            HF_HUB_CACHE=str(tmp_path / "hf" / "hub"),
            HF_HUB_OFFLINE="0",
            HF_HUB_DISABLE_TELEMETRY="1",
        )
        run = neovim.run("download", env)
        deadline = time.monotonic() + 10  # the hub sees the hang-up on its own loop
        while not hub.aborted_files and time.monotonic() < deadline:
            time.sleep(0.05)
        sent, total, aborted = hub.bytes_sent, hub.total_bytes, list(hub.aborted_files)
    r, ctx = run.result, run.context()
    shown = r["downloading"]
    assert re.fullmatch(rf"mlxd: downloading {repo}: \d+ / 1 MB \(\d+%\)", shown), ctx
    assert r["cancellable"] == 1, ctx
    assert r["notes"][0]["msg"].startswith(f"mlxd: cancelling downloading {repo}: "), ctx
    assert "cancelled" in r["status_message"] and repo in r["status_message"], ctx
    assert r["statusline"].startswith("mlxd: error") and "cancelled" in r["statusline"], ctx
    assert r["again"] == [] and r["notes"][-1]["msg"] == "mlxd: nothing to cancel", ctx
    assert "model.safetensors" in aborted and sent < total, ctx
    # The user's own cancel is an info record, not an error: below lsp.log's default level
    # (WARN), and never a stderr line (item 17: one way only, window/logMessage).
    assert "was cancelled" not in run.lsp_log, ctx
    assert "was cancelled" not in run.daemon_stderr, ctx


def test_chat_shows_reasoning_apart_from_the_answer(
    neovim: NvimRunner, tiny_model: Path, tmp_path: Path
) -> None:
    """A provider that streams `reasoning_content` before its answer (the daemon's reasoning
    deltas): the chat buffer shows it in a quoted block, folded once the answer starts, and the
    answer text, the history and the code blocks hold the answer alone."""
    from tests.fakes.providers import FakeProvider, Reply

    config = tmp_path / "mlxd.toml"
    with in_thread(FakeProvider(require_key="sk-reason-1")) as fake:
        config.write_text(
            f'[local]\nmodel = "{tiny_model}"\npreload = false\n\n'
            '[routing]\ncloud = true\nchat = ["cloudy"]\n\n'
            f'[backends.cloudy]\nbase_url = "{fake.openai_url}"\nmodel = "m"\n'
            'api_key_env = "MLXD_REASONING_KEY"\n'
        )
        thoughts = ["The user asks why.\n", "Step one", ", step two."]
        answer = ["Because:\n\n", "```python\nx = 1\n```\n"]
        fake.default = Reply.text(answer, reasoning=thoughts)
        env = scenario_env(config, tmp_path, MLXD_REASONING_KEY="sk-reason-1")
        run = neovim.run("reasoning", env)
    r, ctx = run.result, run.context()
    assert r.get("err") is None, ctx
    res = r["result"]
    assert res["backend"] == "cloudy" and res["text"] == "".join(answer), ctx
    assert res["reasoning"] == "".join(thoughts), ctx
    assert "".join(r["reasoning_events"]) == res["reasoning"], ctx
    block = [
        "> *reasoning*",
        "> The user asks why.",
        "> Step one, step two.",
    ]
    # The reasoning was on screen before the first answer token, under the header.
    assert r["reasoning_snapshot"].endswith("## mlxd\n" + "\n".join(block)), ctx
    # Then the answer's first delta after it (one value may hold several of the provider's).
    _, under, shown = r["first_text_snapshot"].partition("\n".join(block) + "\n\n")
    assert under and shown.startswith(answer[0]) and res["text"].startswith(shown), ctx
    assert r["final"].endswith("## mlxd\n" + "\n".join(block) + "\n\n" + res["text"]), ctx
    # Folded (closed) in the chat window; the answer is not.
    closed = [f["line"] for f in r["folded"] if f["closed"]]
    assert r["fold_win_is_chat"] and closed == block, ctx
    assert r["history"][-1] == {"role": "assistant", "content": res["text"]}, ctx
    assert r["blocks"] == [{"lang": "python", "lines": ["x = 1"]}], ctx


def _alive(pid: int) -> bool:
    """The process runs (a zombie waiting for its parent to reap it has exited)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


@pytest.mark.timeout(150)
def test_a_daemon_that_stops_unexpectedly_is_started_again(
    neovim: NvimRunner, tiny_config: Path, tmp_path: Path
) -> None:
    """New-user pass of issue #18: a SIGKILLed daemon left `mlxd: stopped (0)`, no message, no
    ghost text until Neovim was restarted, and a chat answer in flight "streaming" for ever.
    Now: the answer ends with an error, a warning says why, a new daemon serves the buffers;
    after too many exits it stays stopped and says so; :MlxdRestart starts or replaces it."""
    sample_file(tmp_path, "def fib(n):\n    return n\n")
    run = neovim.run("crash", scenario_env(tiny_config, tmp_path), 130)
    r, ctx = run.result, run.context()
    try:
        # A. The answer in flight ended with the reason; what streamed stayed.
        assert len(r["pids_before"]) == 1, ctx
        assert "signal 9" in (r["chat_err"] or ""), ctx
        assert r["chat_text_kept"], ctx
        assert any(
            "stopped unexpectedly (signal 9); starting it again" in m for m in r["warned"]
        ), ctx
        assert len(r["pids_after"]) == 1 and r["pids_after"] != r["pids_before"], ctx
        # B. Past the limit: stopped, said once as an error, the statusline names the command.
        assert not r["client_after_limit"] and r["daemons_after_limit"] == 0, ctx
        assert r["daemons_after_edit"] == 0, ctx
        assert r["status_after_limit"] == "mlxd: stopped (:MlxdRestart)", ctx
        gave_up = [n for n in r["notes_after_limit"] if "not starting it again" in n["msg"]]
        assert len(gave_up) == 1 and gave_up[0]["level"] == 4, ctx  # vim.log.levels.ERROR
        assert ":MlxdRestart" in gave_up[0]["msg"], ctx
        # C. :MlxdRestart brought it back, and replaced a working one.
        assert r["status_after_restart"].startswith("mlxd: ready"), ctx
        assert r["replaced"], ctx
        assert r["errmsg"] in ("", gave_up[0]["msg"]), ctx  # no Lua error on the way
    finally:
        _kill_daemons_left(r)


def _kill_daemons_left(r: dict[str, Any]) -> None:
    """Never leave a daemon behind when a check failed mid-way."""
    for pid in {*r.get("pids_before", []), *r.get("pids_after", [])}:
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)


@pytest.mark.serial  # the daemon gone within 1 s
@pytest.mark.parametrize("case", ["streaming", "prefill"])
def test_quit_while_a_chat_runs_leaves_no_daemon(
    case: str, neovim: NvimRunner, tiny_model: Path, slow_tiny_model: Path, tmp_path: Path
) -> None:
    """Item 16 of issue #18 (Neovim): `:qa!` while an answer streams, or while the model
    prefills a long question, leaves no mlxd process: the daemon is gone within 1 s of Neovim's
    exit (it used to finish the MLX thread's work first: seconds of orphan)."""
    model = tiny_model if case == "streaming" else slow_tiny_model
    config = tmp_path / "mlxd.toml"
    config.write_text(f'[local]\nmodel = "{model}"\npreload = true\nmax_tokens = 4000\n')
    run = neovim.run("quit", scenario_env(config, tmp_path, MLXD_TEST_CASE=case))
    exited = time.monotonic()
    r, ctx = run.result, run.context()
    pids = r["daemon_pids"]
    assert len(pids) == 1 and r["busy"], ctx
    assert (r["deltas"] >= 3) if case == "streaming" else (r["deltas"] == 0), ctx
    while _alive(pids[0]) and time.monotonic() - exited < 10:
        time.sleep(0.02)
    gone_after = time.monotonic() - exited
    if _alive(pids[0]):
        os.kill(pids[0], signal.SIGKILL)  # never leave it behind
    print(f"{case}: the daemon was gone {gone_after:.2f} s after Neovim exited")
    assert gone_after < 1.0, f"the daemon ran {gone_after:.2f} s after Neovim quit\n{ctx}"


def test_messages_name_neovims_setting_and_command(
    neovim: NvimRunner, tiny_model: Path, tmp_path: Path
) -> None:
    """Item 18 of issue #18 in the real editor: Neovim's clientInfo makes the daemon name
    init_options for a settings typo and :MlxdSetKey for a missing key (the daemon's own
    wording tests only imitate the client)."""
    sample_file(tmp_path, "x = 1\n")
    config = tmp_path / "mlxd.toml"
    config.write_text(
        f'[local]\nmodel = "{tiny_model}"\npreload = true\n\n'
        "[routing]\ncloud = true\n\n"
        '[backends.cloud]\nbase_url = "http://127.0.0.1:9/v1"\nmodel = "m"\n'
        'api_key_env = "MLXD_TEST_UNSET_KEY"\n'
    )
    run = neovim.run("wording", scenario_env(config, tmp_path))
    r, ctx = run.result, run.context()
    typo = [n["msg"] for n in r["notes"] if "multi_line" in n["msg"]]
    assert len(typo) == 1, ctx
    assert "invalid init_options (require('mlxd').setup)" in typo[0], ctx
    assert "initializationOptions" not in typo[0], ctx
    assert "has no API key" in r["chat_error"], ctx
    assert ":MlxdSetKey" in r["chat_error"] and "mlxd/setApiKey" not in r["chat_error"], ctx


def test_a_cancelled_chat_prompt_does_nothing_and_the_chat_window_follows_to_the_footer(
    neovim: NvimRunner, tiny_config: Path, tmp_path: Path
) -> None:
    """Issue #18 new-user findings 2 and 10 in the real editor: <Esc> or an empty <CR> at the
    `mlxd> ` prompt opens no window and keeps the source window current (the next
    :'<,'>MlxdChat sends the source lines); a horizontal chat window follows a long answer to
    its true end, the footer's virtual lines included."""
    sample_file(tmp_path, "".join(f"line_{i} = {i}\n" for i in range(1, 41)))
    run = neovim.run("chatview", scenario_env(tiny_config, tmp_path))
    r, ctx = run.result, run.context()
    for c in r["cancelled"]:
        assert c == {"how": c["how"], "windows": 1, "source_current": True, "chats": 0}, ctx
    assert r.get("err") is None, ctx
    assert r["context_from_source"] and not r["context_from_chat"], ctx
    view = r["view"]
    assert view["cursor_row"] == view["last"], ctx
    assert view["rows_to_end"] <= view["height"], ctx
