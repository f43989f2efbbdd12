"""Document addresses: one normal form for every lookup, comparison and key, and the file
paths a privacy rule is matched against.

`key(uri)` is the normal form of a document URI: percent-encoding decoded and re-applied one
canonical way (so `file:///home/ana/My%20Project/app.py` and `.../My Project/app.py` are one
document, and `%3A`/`:` too), scheme and authority in lower case, a Windows drive letter in
lower case (`file:///C%3A/x` = `file:///c:/x`). It is itself a URI. Use it wherever a URI is
looked up, compared or used as a key.

`match_paths(uri)` are the spellings of the *file itself* that an exclude glob must be tried
against: the decoded path with `.`/`..`/`//` folded, and, for a file that exists, its real path
(symlinks resolved). A notebook cell (`vscode-notebook-cell:/p/nb.ipynb#W0`) is its notebook;
any fragment or query is dropped. All lower-case: excludes match case-insensitively, as the
file systems of macOS and Windows do.
"""

from __future__ import annotations

import os
import posixpath
import re
from urllib.parse import quote, unquote, urlsplit, urlunsplit

_DRIVE = re.compile(r"^(/?)([A-Za-z]):(?=/|$)")
_PCHAR = "!$&'()*+,;=:@"  # allowed unencoded in a URI path besides letters, digits, -._~


def key(uri: str) -> str:
    """The normal form of a document URI (see the module docstring)."""
    parts = urlsplit(uri)
    if not parts.scheme or len(parts.scheme) == 1:  # a bare path, or "c:/x"
        return uri
    scheme = parts.scheme.lower()
    path = unquote(parts.path)
    if scheme == "file":
        path = _DRIVE.sub(lambda m: f"{m.group(1)}{m.group(2).lower()}:", path)
    return urlunsplit(
        (
            scheme,
            parts.netloc.lower(),
            quote(path, safe=_PCHAR + "/"),
            quote(unquote(parts.query), safe=_PCHAR + "/?"),
            quote(unquote(parts.fragment), safe=_PCHAR + "/?"),
        )
    )


def doc_path(uri: str) -> str:
    """The decoded path a URI names (no scheme, authority, query or fragment); a string that is
    not a URI is taken as a path."""
    parts = urlsplit(uri)
    if not parts.scheme or len(parts.scheme) == 1:  # "c:/x" is a Windows path, not a scheme
        return uri.split("#", 1)[0]
    return unquote(parts.path)


def match_paths(uri: str) -> list[str]:
    """The lower-cased spellings of the file a URI names, for exclude globs."""
    path = doc_path(uri).replace("\\", "/")
    lexical = _fold(path)
    out = [lexical]
    scheme = urlsplit(uri).scheme
    if scheme in ("file", "", "vscode-notebook-cell") or len(scheme) == 1:
        real = _real(lexical)
        if real and real != lexical:
            out.append(real)
    # "/c:/x" is also "c:/x", the way a Windows user writes an absolute glob.
    out += [p[1:] for p in out if _DRIVE.match(p) and p.startswith("/")]
    return list(dict.fromkeys(p.lower() for p in out))


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
