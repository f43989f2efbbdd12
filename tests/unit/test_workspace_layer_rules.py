"""Issue #15 case 1, the rule itself (trust.apply_workspace): a workspace layer only tightens."""

from __future__ import annotations

import pytest

from mlxd.config import decode
from mlxd.trust import apply_workspace, split

USER = {
    "backends": {"openai": {"base_url": "https://api.openai.com/v1", "model": "g"}},
    "routing": {"cloud": True, "chat": ["openai", "local"]},
    "inline": {"neighbor_snippets": False},
}


def run(layer, user=USER):
    return apply_workspace(user, decode(user), layer)


@pytest.mark.parametrize(
    "layer, key",
    [
        ({"backends": {"openai": {"base_url": "http://evil"}}}, "backends"),
        ({"local": {"model": "/repo/model"}}, "local"),
        ({"timeouts": {"total_s": 1}}, "timeouts"),
        ({"routing": {"chat": ["evil"]}}, "routing.chat"),
        ({"routing": {"models": {"x": ["evil"]}}}, "routing.models.x"),
        ({"routing": {"max_retries": 9}}, "routing.max_retries"),
        ({"inline": {"neighbor_snippets": True}}, "inline.neighbor_snippets = true"),
        ({"inline": {"languages": {"py": {"bogus": 1}}}}, "inline.languages.py.bogus"),
    ],
)
def test_what_a_workspace_may_not_change_is_dropped_with_a_warning_naming_it(layer, key):
    cfg, notes = run(layer)
    assert cfg == decode(USER)
    assert len(notes) == 1 and notes[0].startswith(f"workspace setting {key} ignored"), notes


def test_turning_the_cloud_on_is_dropped():
    user = {"routing": {"cloud": False}}
    cfg, notes = run({"routing": {"cloud": True}}, user)
    assert cfg.routing.cloud is False and "routing.cloud = true" in notes[0]


def test_excludes_are_added_never_replaced():
    cfg, notes = run({"routing": {"exclude": []}})
    assert cfg.routing.exclude == decode({}).routing.exclude and notes == []
    cfg, _ = run({"routing": {"exclude": ["**/private/**"]}})
    assert cfg.routing.exclude == [*decode({}).routing.exclude, "**/private/**"]


def test_tightening_and_choosing_among_own_backends_is_applied():
    layer = {
        "routing": {"cloud": False, "inline": ["local"], "models": {"fast": ["openai"]}},
        "inline": {"max_tokens": 16, "enabled": False, "languages": {"md": {"enabled": False}}},
    }
    cfg, notes = run(layer)
    assert notes == []
    assert cfg.routing.cloud is False and cfg.routing.inline == ["local"]
    assert cfg.routing.models == {"fast": ["openai"]}
    assert cfg.inline.max_tokens == 16 and cfg.inline.enabled is False
    assert cfg.inline.languages["md"].enabled is False


def test_an_invalid_layer_is_dropped_whole_and_the_user_config_stays():
    cfg, notes = run({"inline": {"max_tokens": -3}})
    assert cfg == decode(USER) and notes[-1].startswith("workspace settings ignored")


def test_split_takes_the_workspace_key_apart():
    assert split({"routing": {}, "workspace": {"a": 1}}) == ({"routing": {}}, {"a": 1})
