"""Prompt-lookup speculation through the real daemon (stdio, tiny model): on by default, the same
greedy text as with `local.speculative = "off"`, and counted in `mlxd/stats`."""

from __future__ import annotations

from pathlib import Path

from ..conftest import _plain, daemon, write_config

CODE = "def add(a, b):\n    return a + b\n\n" * 6 + "def add(a, b):\n"


async def _complete_and_stats(config: Path) -> tuple[str, dict]:
    async with daemon(config) as s:
        r = _plain(
            await s.request("mlxd/complete", {"prefix": CODE, "maxTokens": 120, "temperature": 0.0})
        )
        stats = _plain(await s.request("mlxd/stats", {}))
    (local,) = stats["local"].values()
    return r["text"], local


async def test_speculation_keeps_the_text_and_shows_in_stats(
    tmp_path: Path, tiny_model: Path
) -> None:
    base = f'[local]\nmodel = "{tiny_model}"\n'
    on = write_config(tmp_path / "on.toml", base)  # the default: "auto"
    off = write_config(tmp_path / "off.toml", base + 'speculative = "off"\n')
    text_on, stats_on = await _complete_and_stats(on)
    text_off, stats_off = await _complete_and_stats(off)
    assert text_on == text_off and text_on
    assert stats_on["acceptedDraftTokens"] > 0
    assert stats_on["draftTokens"] >= stats_on["acceptedDraftTokens"]
    assert stats_off["draftTokens"] == 0


async def test_a_draft_model_keeps_the_text_and_shows_in_stats(
    tmp_path: Path, tiny_model: Path
) -> None:
    """`local.draft_model` through the real daemon: the model drafting for itself (every draft
    kept); both show in `mlxd/stats` and `mlxd/models` lists the model once."""
    base = f'[local]\nmodel = "{tiny_model}"\n'
    drafted = write_config(tmp_path / "draft.toml", base + f'draft_model = "{tiny_model}"\n')
    off = write_config(tmp_path / "off.toml", base + 'speculative = "off"\n')
    text, stats = await _complete_and_stats(drafted)
    assert text == (await _complete_and_stats(off))[0] and text
    assert stats["draftTokens"] > 0
    assert stats["acceptedDraftTokens"] >= 0.9 * stats["draftTokens"]
