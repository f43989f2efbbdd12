"""Document addresses: one normal form for every lookup, comparison and key, and the file
paths a privacy rule is matched against.

`key(uri)` is the normal form of a document URI: percent-encoding decoded and re-applied one
canonical way (so `file:///home/ana/My%20Project/app.py` and `.../My Project/app.py` are one
document, and `%3A`/`:` too), scheme and authority in lower case, a Windows drive letter in
lower case (`file:///C%3A/x` = `file:///c:/x`), a `localhost` authority of a file URI empty
(RFC 8089: `file://localhost/x` = `file:///x`). Bytes that are not UTF-8 (`caf%E9.py`) keep
their own escapes, so two such names stay two documents. It is itself a URI. Use it wherever a URI is
looked up, compared or used as a key.

`match_paths(uri)` are the spellings of the *file itself* that an exclude glob must be tried
against: the decoded path with `.`/`..`/`//` folded, and, for an absolute path under any scheme
(`file:`, `git:`, `vscode-notebook:` ...), its real path (symlinks resolved as far as they
exist). A notebook cell (`vscode-notebook-cell:/p/nb.ipynb#W0`) is its notebook; any fragment
or query is dropped. All lower-case and in Unicode NFC: excludes match case-insensitively and
whatever the normalisation form (macOS stores names decomposed), as the file systems of macOS
and Windows do.
"""

from __future__ import annotations

import os
import posixpath
import re
import unicodedata
from urllib.parse import quote, unquote, urlsplit, urlunsplit

_DRIVE = re.compile(r"^(/?)([A-Za-z]):(?=/|$)")
_PCHAR = "!$&'()*+,;=:@"  # allowed unencoded in a URI path besides letters, digits, -._~


# A pseudo-document every privacy rule treats as excluded: a conversation the daemon cannot
# vouch for (one begun before a shared daemon restarted, taint.Conversations.recovered).
LOCAL_ONLY = "mlxd:local-only"


def key(uri: str) -> str:
    """The normal form of a document URI (see the module docstring)."""
    parts = urlsplit(uri)
    if not parts.scheme or len(parts.scheme) == 1:  # a bare path, or "c:/x"
        return uri
    scheme, netloc = parts.scheme.lower(), parts.netloc.lower()
    path = _unquote(parts.path)
    if scheme == "file":
        path = _DRIVE.sub(lambda m: f"{m.group(1)}{m.group(2).lower()}:", path)
        netloc = "" if netloc == "localhost" else netloc
    return urlunsplit(
        (
            scheme,
            netloc,
            _quote(path, _PCHAR + "/"),
            _quote(_unquote(parts.query), _PCHAR + "/?"),
            _quote(_unquote(parts.fragment), _PCHAR + "/?"),
        )
    )


# Undecodable bytes become lone surrogates and back, so `%E9` and `%FF` stay apart.
def _unquote(s: str) -> str:
    return unquote(s, errors="surrogateescape")


# A lone surrogate a client sent as such (JSON "\ud800": not one of surrogateescape's) has no
# UTF-8 form: it is written as the bytes "surrogatepass" gives it, escaped, so key() never
# raises on it (the forwarder died on such a didOpen) and stays idempotent.
_LONE = re.compile("[\ud800-\udc7f\udd00-\udfff]")


def _quote(s: str, safe: str) -> str:
    s = _LONE.sub(
        lambda m: m.group().encode("utf-8", "surrogatepass").decode("utf-8", "surrogateescape"), s
    )
    return quote(s, safe=safe, errors="surrogateescape")


def doc_path(uri: str) -> str:
    """The decoded path a URI names (no scheme, authority, query or fragment); a string that is
    not a URI is taken as a path."""
    parts = urlsplit(uri)
    if not parts.scheme or len(parts.scheme) == 1:  # "c:/x" is a Windows path, not a scheme
        return uri.split("#", 1)[0]
    return unquote(parts.path)


def match_paths(uri: str) -> list[str]:
    """The lower-cased spellings of the file a URI names, for exclude globs."""
    path = unicodedata.normalize("NFC", doc_path(uri).replace("\\", "/"))
    lexical = _fold(path)
    out = [lexical]
    # Whatever the scheme (file, git, vscode-notebook, vscode-userdata ...), an absolute path
    # may name a local file, perhaps through a symlink: its real path is one more spelling (an
    # extra spelling can only add a match). A relative one names nothing on disk.
    real = _real(lexical) if lexical.startswith("/") or _DRIVE.match(lexical) else None
    if real and real != lexical:
        out.append(unicodedata.normalize("NFC", real))
    # "/c:/x" is also "c:/x", the way a Windows user writes an absolute glob.
    out += [p[1:] for p in out if _DRIVE.match(p) and p.startswith("/")]
    return list(dict.fromkeys(p.lower() for p in out))


def normal_glob(glob: str) -> str:
    """An exclude glob in the form match_paths' spellings take: `/` separators, lower case, NFC."""
    return unicodedata.normalize("NFC", glob.replace("\\", "/").lower())


def _fold(path: str) -> str:
    if not path:
        return path
    lead = "/" if path.startswith("/") else ""
    folded = posixpath.normpath(path)
    return lead + folded.lstrip("/") if folded != "." else lead


def _real(path: str) -> str | None:
    local = path[1:] if _DRIVE.match(path) and path.startswith("/") and os.name == "nt" else path
    try:
        real = os.path.realpath(local)
    except (OSError, ValueError):
        return None
    return _fold(real.replace("\\", "/"))
