"""The backend factory (backends/factory.py): what a config builds, what a reload keeps."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mlxd.backends import make_backends, retired
from mlxd.config import Config, decode
from mlxd.errors import BackendError
from mlxd.models import ModelPool
from mlxd.router import Router
from mlxd.secrets import KeyStore


@pytest.fixture
def pool() -> Iterator[ModelPool]:
    p = ModelPool()
    yield p
    p.close()


def config(cloud_url: str = "http://127.0.0.1:9/v1", small: str = "small-model") -> Config:
    return decode(
        {
            "backends": {
                "cloud": {"protocol": "openai", "base_url": cloud_url, "model": "gpt-x"},
                "claude": {
                    "protocol": "anthropic",
                    "base_url": "http://127.0.0.1:9",
                    "model": "c-1",
                },
                "small": {"protocol": "mlx", "model": small},
            }
        }
    )


def test_a_config_builds_local_and_one_backend_per_entry(pool: ModelPool) -> None:
    built = make_backends(config(), {}, Config(), KeyStore(), pool)
    assert {n: (b.is_local, b.spec, b.loaded) for n, b in built.items()} == {
        "local": (True, "smollm2-135m", False),
        "cloud": (False, "gpt-x", False),
        "claude": (False, "c-1", False),
        # A local path, resolved here as the window would (in-process: this process's cwd).
        "small": (True, str(Path.cwd() / "small-model"), False),
    }


def test_a_reload_keeps_unchanged_http_backends_and_retires_the_rest(pool: ModelPool) -> None:
    keys = KeyStore()
    first = make_backends(config(), {}, Config(), keys, pool)
    second = make_backends(
        config(cloud_url="http://127.0.0.1:8/v1", small="other"), first, config(), keys, pool
    )
    assert second["claude"] is first["claude"]  # same settings: same HTTP session
    assert second["cloud"] is not first["cloud"]  # a new base_url: a new backend
    to_close, forget = retired(first, second)
    assert to_close == [first["cloud"]] and forget == {str(Path.cwd() / "small-model")}


def test_a_reload_keeps_a_local_backend_and_what_it_learned(pool: ModelPool) -> None:
    # Any settings change rebuilt every local backend: a work-ahead job's continuation after it
    # met one that knew neither the job's prompt (heads) nor what the KV cache holds, rendered
    # another window, and prefilled 283 of its 295 prompt tokens (test_work_ahead's flake).
    keys = KeyStore()
    first = make_backends(config(), {}, Config(), keys, pool)
    local, learned = first["local"], (first["local"].heads, first["local"].speed)
    inline = {"inline": {"whole_lines": True, "context_tokens": 512}}
    second = make_backends(local_only(inline), first, config(), keys, pool)
    assert second["local"] is local and (local.heads, local.speed) == learned
    assert (local.inline_cfg.whole_lines, local.inline_cfg.context_tokens) == (True, 512)
    assert second["small"] is first["small"]
    # Another model, or another dequantize setting: a new backend (another model's state).
    third = make_backends(local_only({}, small="other"), second, local_only(inline), keys, pool)
    assert third["local"] is local and third["small"] is not first["small"]
    never = local_only({"local": {"dequantize": "never"}})
    assert make_backends(never, third, local_only({}), keys, pool)["local"] is not local


def local_only(extra: dict[str, Any], small: str = "small-model") -> Config:
    return decode({"backends": {"small": {"protocol": "mlx", "model": small}}, **extra})


def test_a_kept_local_backend_gets_a_fresh_circuit_after_a_reload(pool: ModelPool) -> None:
    # Rebuilt, a local backend started each reload with a closed circuit; kept, it still does
    # (an unchanged HTTP backend keeps its own: its server did not change).
    keys = KeyStore()
    first = make_backends(config(), {}, Config(), keys, pool)
    router = Router(config(), first)
    for name in ("local", "claude"):
        router.breakers.failed(name, BackendError("down"), 1, 60.0)
    second = make_backends(config(), first, config(), keys, pool)
    router.update(config(), second)
    now = time.monotonic()
    assert second["local"] is first["local"] and router.breakers.state("local", now) == "ok"
    assert router.breakers.state("claude", now) == "cooldown"
