"""The privacy rules, decided before any byte leaves the machine: cloud backends only with
`routing.cloud`, and never for a request tied to a document that matches `routing.exclude`."""

from __future__ import annotations

import fnmatch

from .. import uris
from ..config import RoutingConfig
from ..types import Backend


def excluded(uri: str, exclude: list[str]) -> bool:
    """Whether a document matches one of the `exclude` globs. A glob with no `/` (`*.pem`) also
    matches the file name alone, as in .gitignore. The file itself is matched, not the
    address text: every spelling of uris.match_paths, case-insensitively."""
    if uri == uris.LOCAL_ONLY:
        return True
    globs = [uris.normal_glob(g) for g in exclude]
    for path in uris.match_paths(uri):
        name = path.rsplit("/", 1)[-1]
        if any(
            fnmatch.fnmatchcase(path, g) or ("/" not in g and fnmatch.fnmatchcase(name, g))
            for g in globs
        ):
            return True
    return False


def skip_reason(
    backend: Backend | None, routing: RoutingConfig, documents: list[str]
) -> str | None:
    """Why the privacy rules skip `backend` for a request about `documents` (None: allowed)."""
    if backend is None:
        return "skipped: not configured"
    if backend.is_local:
        return None
    if not routing.cloud:
        return "skipped: cloud backends are off (routing.cloud)"
    if uris.LOCAL_ONLY in documents:
        return "skipped: the conversation may carry an excluded document (kept local)"
    if doc := next((d for d in documents if excluded(d, routing.exclude)), None):
        return f"skipped: {doc} matches routing.exclude"
    return None
