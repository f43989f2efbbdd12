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


def test_tightening_and_going_local_is_applied():
    layer = {
        "routing": {"cloud": False, "inline": ["local"], "models": {"fast": ["local"]}},
        "inline": {"max_tokens": 16, "enabled": False, "languages": {"md": {"enabled": False}}},
    }
    cfg, notes = run(layer)
    assert notes == []
    assert cfg.routing.cloud is False and cfg.routing.inline == ["local"]
    assert cfg.routing.models == {"fast": ["local"]}
    assert cfg.inline.max_tokens == 16 and cfg.inline.enabled is False
    assert cfg.inline.languages["md"].enabled is False


def test_an_invalid_layer_is_dropped_whole_and_the_user_config_stays():
    cfg, notes = run({"inline": {"max_tokens": -3}})
    assert cfg == decode(USER) and notes[-1].startswith("workspace settings ignored")


def test_split_takes_the_workspace_key_apart():
    assert split({"routing": {}, "workspace": {"a": 1}}) == ({"routing": {}}, {"a": 1})


CHAINS = {
    "backends": {
        "a": {"base_url": "https://a.example/v1", "model": "g"},
        "b": {"protocol": "anthropic", "base_url": "https://b.example", "model": "c"},
        "mine": {"protocol": "mlx", "model": "/models/mine"},
    },
    "routing": {
        "cloud": True,
        "chat": ["a", "local", "b"],
        "complete": ["local", "a"],
        "inline": ["local"],
        "models": {"deep": ["a", "b"], "private": ["mine", "local"]},
    },
}


@pytest.mark.parametrize(
    "key, chain",
    [
        ("chat", ["local"]),  # local backends only
        ("chat", ["mine", "local"]),
        ("chat", []),
        ("chat", ["a", "local"]),  # the user's chain with cloud backends removed
        ("chat", ["local", "b"]),
        ("chat", ["a", "local", "b"]),
        ("complete", ["local"]),
        ("models.deep", ["b"]),
        ("models.deep", ["local"]),
        ("models.new", ["mine"]),
    ],
)
def test_a_chain_that_moves_data_nowhere_new_is_applied(key, chain):
    section, _, alias = key.partition(".")
    layer = {"routing": {section: {alias: chain} if alias else chain}}
    cfg, notes = run(layer, CHAINS)
    got = cfg.routing.models[alias] if alias else getattr(cfg.routing, section)
    assert notes == [] and got == chain


@pytest.mark.parametrize(
    "key, chain",
    [
        ("inline", ["a"]),  # a local chain moved to the cloud
        ("inline", ["local", "a"]),  # a cloud fallback added
        ("chat", ["b", "local", "a"]),  # the user's order changed
        ("chat", ["a", "b"]),  # a local backend dropped: what it served goes to the cloud
        ("chat", ["a", "local", "b", "a"]),
        ("complete", ["a"]),
        ("complete", ["a", "local"]),
        ("models.private", ["a"]),
        ("models.deep", ["b", "a"]),
        ("models.new", ["a"]),  # a new alias naming a cloud backend
        ("models.new", ["local", "a"]),
    ],
)
def test_a_chain_that_moves_data_somewhere_new_is_dropped_naming_the_key(key, chain):
    section, _, alias = key.partition(".")
    layer = {"routing": {section: {alias: chain} if alias else chain}}
    cfg, notes = run(layer, CHAINS)
    assert cfg == decode(CHAINS)
    assert len(notes) == 1 and notes[0].startswith(f"workspace setting routing.{key} ignored")
    assert "cloud backends removed" in notes[0], notes
