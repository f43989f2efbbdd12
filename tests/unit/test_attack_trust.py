"""Attack round (issue #15 follow-up), pure functions: exclude matching of hostile addresses and
what a repository's workspace layer may change. Findings are strict xfails ("attack: ...");
the rest guard against regressions."""

from __future__ import annotations

import unicodedata
from pathlib import Path

import pytest

from mlxd.config import decode
from mlxd.router import Router
from mlxd.trust import apply_workspace

DEFAULT = Router(decode({}), {})

EXCLUDED = [
    "file:///p/.env",
    "file:///p/.ENV",
    "file:///p/%2Eenv",
    "file:///p/.en%76",
    "FILE:///p/.env",
    "file:/p/.env",
    "file:///p/x/../.env",
    "file:///p//.env",
    "file:///p%2F.env",
    "file://host/p/.env",
    "file:///p/.env#frag",
    "file:///p/.env?x=1",
    "file:///p/.env/",
    "file:~/.env",
    "untitled:/p/.env",
    "git:/p/.env?%7B%7D",
    "vscode-remote://ssh-remote%2Bh/p/.env",
    "vscode-notebook-cell:/p/secrets/nb.ipynb#W0",
    "vscode-notebook:/p/secrets/nb.ipynb",
    "file:///C:/p/.env",
    "file:///c%3A/p/secrets/a",
    "file:///p\\secrets\\a.txt",
    "file:///p/%5Csecrets%5Ca.txt",
    "file:///p/secrets%2Fa",
    "file:///p/Secrets/A",
    "file:///p/se%63rets/a",
    "file:///p/key.PEM",
    "file:///p/key.pem/.",
    "c:\\p\\.env",
    "/p/.env",
]

# Different files, not spellings of an excluded one (a look-alike letter, a literal "%2F" in a
# name, a file *named* "secrets"): matching them would be a false positive, not a fix.
NOT_EXCLUDED = [
    "file:///p/.\u0435nv",
    "file:///p%252F.env",
    "file:///p/secrets",
    "file:///p/app.py",
]


@pytest.mark.parametrize("uri", EXCLUDED)
def test_spellings_of_excluded_files_match(uri):
    assert DEFAULT.excluded(uri)


@pytest.mark.parametrize("uri", NOT_EXCLUDED)
def test_other_files_do_not_match(uri):
    assert not DEFAULT.excluded(uri)


def test_symlinked_dir_and_file_match_by_real_path(tmp_path: Path):
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "k.txt").write_text("x")
    (tmp_path / "docs").symlink_to(tmp_path / "secrets")
    (tmp_path / "readme.md").symlink_to(tmp_path / "secrets" / "k.txt")
    assert DEFAULT.excluded(f"file://{tmp_path}/docs/k.txt")
    assert DEFAULT.excluded(f"file://{tmp_path}/docs/new-file.txt")  # not yet on disk
    assert DEFAULT.excluded(f"file://{tmp_path}/readme.md")
    assert DEFAULT.excluded(f"vscode-notebook-cell:{tmp_path}/docs/nb.ipynb#W0")


@pytest.mark.parametrize("scheme", ["git", "vscode-notebook"])
def test_symlinked_dir_matches_under_other_local_schemes(tmp_path: Path, scheme):
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "nb.ipynb").write_text("{}")
    (tmp_path / "docs").symlink_to(tmp_path / "secrets")
    assert DEFAULT.excluded(f"{scheme}:{tmp_path}/docs/nb.ipynb?%7B%7D")


def test_exclude_matches_across_unicode_normalisation():
    nfc = unicodedata.normalize("NFC", "**/café/**")
    router = Router(decode({"routing": {"exclude": [nfc]}}), {})
    nfd = unicodedata.normalize("NFD", "file:///Users/ana/café/notes.md")
    assert router.excluded(nfd)


# --- the workspace layer ---------------------------------------------------------------------

USER = {
    "backends": {
        "cloud": {"protocol": "openai", "base_url": "http://x/v1", "model": "m", "api_key_env": "K"}
    },
    "routing": {"cloud": True, "chat": ["local"], "complete": ["cloud"], "inline": ["local"]},
}


def ws(layer):
    return apply_workspace(USER, decode(USER), layer)


@pytest.mark.parametrize(
    "layer",
    [
        {"routing": {"cloud": None}},
        {"routing": {"cloud": 1}},
        {"routing": {"cloud": "true"}},
        {"routing": {"Cloud": True}},
        {"r\u043euting": {"cloud": True}},  # Cyrillic o
        {"routing": {"exclude": None}},
        {"routing": {"exclude": "**"}},
        {"routing": {"max_retries": 100}},
        {"routing": {"chat": ["evil"]}},
        {"routing": {"models": {"x": ["evil"]}}},
        {"inline": {"enabled": "yes"}},
        {"inline": {"languages": {"python": {"backend": "cloud"}}}},
        {"local": {"model": "/repo/evil"}},
        {"backends": {"cloud": {"base_url": "http://evil"}}},
        {"timeouts": {"total_s": 1e9}},
        [{"routing": {"cloud": False}}],
        "cloud=false",
    ],
)
def test_workspace_cannot_loosen_or_redirect(layer):
    cfg, notes = ws(layer)
    assert notes
    assert cfg.routing.exclude == decode(USER).routing.exclude
    assert cfg.backends["cloud"].base_url == "http://x/v1"
    assert cfg.routing.chat == ["local"] and cfg.routing.inline == ["local"]
    assert cfg.local.model == decode(USER).local.model


def test_workspace_exclude_replacing_the_users_is_added_not_replaced():
    cfg, _ = ws({"routing": {"exclude": []}})
    assert cfg.routing.exclude == decode(USER).routing.exclude


@pytest.mark.parametrize(
    "layer",
    [
        {"routing": {"inline": ["cloud"]}},
        {"routing": {"chat": ["cloud"]}},
        {"routing": {"models": {"private": ["cloud"]}}},
    ],
)
def test_workspace_cannot_move_a_local_chain_to_the_cloud(layer):
    user = {**USER, "routing": {**USER["routing"], "models": {"private": ["local"]}}}
    cfg, _ = apply_workspace(user, decode(user), layer)
    chains = [cfg.routing.inline, cfg.routing.chat, cfg.routing.models["private"]]
    assert all(chain == ["local"] for chain in chains)
