"""The backend factory (backends/factory.py): what a config builds, what a reload keeps."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from mlxd.backends import make_backends, retired
from mlxd.config import Config, decode
from mlxd.models import ModelPool
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
