"""uris.py: the one normal form of a document URI (issue #14 item 1) and the paths an
exclude is matched against (issue #15 case 3)."""

from __future__ import annotations

import unicodedata
from urllib.parse import quote

import pytest

from mlxd import uris


@pytest.mark.parametrize(
    "a, b",
    [
        ("file:///home/ana/My%20Project/app.py", "file:///home/ana/My Project/app.py"),
        ("file:///c%3A/work/app.py", "file:///C:/work/app.py"),
        ("file:///C%3A/work/app.py", "file:///c:/work/app.py"),
        ("file:///home/jos%C3%A9/a.py", "file:///home/jos\u00e9/a.py"),
        ("untitled:Untitled%201", "untitled:Untitled 1"),
    ],
)
def test_spellings_of_one_address_have_one_key(a, b):
    assert uris.key(a) == uris.key(b)


@pytest.mark.parametrize(
    "a, b",
    [
        ("file://localhost/w/app.py", "file:///w/app.py"),  # RFC 8089
        ("file://LocalHost/C%3A/w/app.py", "file:///c:/w/app.py"),
        ("file:///w/caf%e9.py", "file:///w/caf%E9.py"),  # hex case of an undecodable byte
    ],
)
def test_more_spellings_of_one_address_have_one_key(a, b):
    assert uris.key(a) == uris.key(b)


@pytest.mark.parametrize(
    "a, b",
    [
        ("file:///w/caf%E9.py", "file:///w/caf%FF.py"),  # not UTF-8: not both U+FFFD
        ("file:///w/caf%E9.py", "file:///w/caf\ufffd.py"),
        ("file://server/share/a.py", "file:///share/a.py"),  # a UNC host is not localhost
        ("untitled://localhost/a", "untitled:///a"),  # only file: has RFC 8089's rule
    ],
)
def test_different_addresses_keep_different_keys(a, b):
    assert uris.key(a) != uris.key(b)


def test_an_undecodable_byte_keeps_its_escape():
    assert uris.key("file:///w/caf%E9.py") == "file:///w/caf%E9.py"


@pytest.mark.parametrize("lone", ["\ud800", "\udbff", "\udc00", "\udfff"])
def test_a_lone_surrogate_has_a_key_of_its_own(lone):
    """A client's JSON may hold a lone surrogate ("\\ud800"): key() raised on it (the
    forwarder died). Its key is a URI, stable, and apart from an undecodable byte's."""
    uri = f"file:///p/{lone}x/.env"
    k = uris.key(uri)
    assert k.isascii() and uris.key(k) == k and k != uris.key("file:///p/%FFx/.env")
    assert uris.key(f"file:///p/{lone}y/.env") != k


def test_different_documents_keep_different_keys():
    assert uris.key("file:///p/a.py") != uris.key("file:///p/b.py")
    cell = "vscode-notebook-cell:/p/nb.ipynb#W0sZmlsZQ%3D%3D"
    assert uris.key(cell) != uris.key("vscode-notebook-cell:/p/nb.ipynb#W1sZmlsZQ%3D%3D")


# --- issue #15 case 3: excludes match the file itself -------------------------------------
def router(*exclude: str):
    from mlxd.config import decode
    from mlxd.router import Router

    cfg = decode({"routing": {"exclude": list(exclude)}} if exclude else {})
    return Router(cfg, {})


@pytest.mark.parametrize(
    "uri",
    [
        "file:///p/.ENV",
        "file:///p/Secrets/notes.txt",
        "file:///p/SECRETS/deep/x.py",
        "file:///p/KEY.PEM",
        "file:///p/server.pem#W1",
        "file:///p/a/..//secrets/x.py",
        "file:///p//secrets//x.py",
        "file:///p/%2Eenv",
        "vscode-notebook-cell:/p/server.pem#W0sZmlsZQ%3D%3D",
        "file:///C%3A/work/Secrets/k.txt",
    ],
)
def test_default_excludes_match_every_spelling_of_the_file(uri):
    assert router().excluded(uri), uri


@pytest.mark.parametrize(
    "glob, uri",
    [
        ("/home/ana/proj/private/**", "file:///home/ana/proj/src/../private/a.py"),
        ("/home/ana/proj/private/**", "file:///home/ana//proj/private/a.py"),
        ("c:/work/private/**", "file:///c%3A/work/private/a.py"),
        ("C:/Work/Private/**", "file:///c%3A/work/private/a.py"),
        ("c:\\work\\private\\**", "file:///C:/work/private/a.py"),
        ("**/*.ipynb", "vscode-notebook-cell:/p/analysis.ipynb#W0sZmlsZQ%3D%3D"),
        ("**/*.ipynb", "vscode-notebook-cell://authority/p/analysis.ipynb#W3"),
    ],
)
def test_absolute_globs_match_normalised_paths(glob, uri):
    assert router(glob).excluded(uri), (glob, uri)


def test_a_symlink_into_an_excluded_directory_is_excluded(tmp_path):
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "vault.py").write_text("TOKEN = 1\n")
    (tmp_path / "innocent").symlink_to(secrets)
    (tmp_path / "alias.py").symlink_to(secrets / "vault.py")
    assert router().excluded((tmp_path / "innocent" / "vault.py").as_uri())
    assert router().excluded((tmp_path / "alias.py").as_uri())


@pytest.mark.parametrize(
    "uri",
    [
        "file:///p/.env.local",
        "file:///p/deploy/.env.production",
        "file:///p/.envrc",
        "file:///p/tls/server.key",
        "file:///p/cert.P12",
        "file:///home/ana/.ssh/id_ed25519",
        "file:///home/ana/.ssh/config",
        "file:///p/deploy/id_rsa",
        "file:///home/ana/.netrc",
        "file:///p/.npmrc",
        "file:///home/ana/.pypirc",
        "file:///home/ana/.git-credentials",
        "file:///home/ana/.aws/credentials",
        "file:///home/ana/.docker/config.json",
        "file:///home/ana/.kube/config",
    ],
)
def test_default_excludes_cover_the_usual_key_and_credential_files(uri):
    assert router().excluded(uri), uri


def test_ordinary_files_are_not_excluded():
    r = router()
    assert not r.excluded("file:///p/envelope.py")
    assert not r.excluded("file:///p/secretsauce/x.py")
    assert not r.excluded("file:///p/keyboard.py")
    assert not r.excluded("file:///p/id_rsa_parser.py")
    assert not r.excluded("file:///p/docker/config.json")
    assert not r.excluded("file:///p/environment.py")
    assert not r.excluded("untitled:Untitled-1")


@pytest.mark.parametrize(
    "scheme", ["git", "vscode-notebook", "vscode-userdata", "vscode-local-history", "untitled"]
)
def test_a_symlink_is_resolved_under_any_scheme_naming_an_absolute_path(tmp_path, scheme):
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "vault.py").write_text("TOKEN = 1\n")
    (tmp_path / "docs").symlink_to(secrets)
    (tmp_path / "alias.py").symlink_to(secrets / "vault.py")
    assert router().excluded(f"{scheme}:{tmp_path}/docs/vault.py?%7B%22ref%22%3A%22~%22%7D")
    assert router().excluded(f"{scheme}://{tmp_path}/alias.py")
    assert not router().excluded(f"{scheme}:{tmp_path}/vault.py")  # not through the link


@pytest.mark.parametrize("form", ["NFC", "NFD"])
@pytest.mark.parametrize("glob_form", ["NFC", "NFD"])
def test_excludes_match_whatever_the_unicode_normalisation(form, glob_form):
    glob = unicodedata.normalize(glob_form, "**/Café/**")
    uri = unicodedata.normalize(form, "file:///Users/ana/cafÉ/notes.md")
    assert router(glob).excluded(uri)
    assert router(glob).excluded(quote(uri, safe=":/"))  # percent-encoded UTF-8 too
    assert not router(glob).excluded("file:///Users/ana/cafe/notes.md")
