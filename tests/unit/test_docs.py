"""What users copy must stay true: every TOML example in the docs is a valid config, and the VS
Code extension's settings schema for `mlxd.config` names exactly the daemon's config keys (its
`additionalProperties: false` would otherwise flag a valid key, or let a dead one through)."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path
from typing import Any

import msgspec
import pytest

from mlxd.config import BackendConfig, Config, InlineConfig, LanguageConfig, decode

ROOT = Path(__file__).resolve().parents[2]
DOCS = [
    ROOT / "README.md",
    *sorted((ROOT / "docs").glob("*.md")),
    ROOT / "editors/neovim/README.md",
]
# Keys the editor schema leaves out on purpose: an API key never belongs in settings.json (the
# extension strips it and points to "Set API Key"); the settings' backends are providers only
# (openai, anthropic), and draft_model is for an "mlx" one.
NOT_IN_SETTINGS = {("backends", "api_key"), ("backends", "draft_model")}
# Sections only the config file sets: [shared] is read by the forwarder before any setting.
FILE_ONLY_SECTIONS = {"shared"}


def toml_blocks() -> list[tuple[str, str]]:
    found = []
    for doc in DOCS:
        for i, block in enumerate(re.findall(r"```toml\n(.*?)```", doc.read_text(), re.S)):
            found.append((f"{doc.relative_to(ROOT)}#{i + 1}", block))
    return found


@pytest.mark.parametrize(("where", "block"), toml_blocks(), ids=lambda v: v if "#" in v else "")
def test_every_toml_example_in_the_docs_is_a_valid_config(where: str, block: str) -> None:
    decode(tomllib.loads(block))  # raises ConfigError naming the key


def test_the_docs_have_toml_examples() -> None:
    assert len(toml_blocks()) >= 3  # the test above is not vacuous


def _fields(struct: type[msgspec.Struct]) -> set[str]:
    return {f.name for f in msgspec.structs.fields(struct)}


def test_vscode_settings_schema_names_exactly_the_config_keys() -> None:
    pkg = json.loads((ROOT / "editors/vscode/package.json").read_text())
    contributed = pkg["contributes"]["configuration"]
    sections: list[dict[str, Any]] = contributed if isinstance(contributed, list) else [contributed]
    schema = next(
        s["properties"]["mlxd.config"] for s in sections if "mlxd.config" in s["properties"]
    )
    props = schema["properties"]
    assert set(props) | FILE_ONLY_SECTIONS == _fields(Config)

    def keys(section: str, node: dict[str, Any]) -> set[str]:
        return set(node["properties"]) | {k for s, k in NOT_IN_SETTINGS if s == section}

    types = {f.name: f.type for f in msgspec.structs.fields(Config)}
    for section in ("local", "routing", "timeouts", "inline"):
        assert keys(section, props[section]) == _fields(types[section]), section
    assert keys("backends", props["backends"]["additionalProperties"]) == _fields(BackendConfig)
    languages = props["inline"]["properties"]["languages"]["additionalProperties"]
    assert set(languages["properties"]) == _fields(LanguageConfig)
    assert "languages" in _fields(InlineConfig)
