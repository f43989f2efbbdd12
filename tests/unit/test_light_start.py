"""A daemon that never loads a local model never imports mlx-lm or transformers: they are most of
a daemon's start-up (about 1 s of CPU of ~1.5 s), and cloud-only windows, `mlxd status`/`stop`
and most of the test suite's daemons never need them. `mlxd.models` hands out the loader's names
lazily; the model pool imports the loader when it loads a model. Likewise a daemon whose
backends are all local never imports aiohttp or keyring (0.2-0.25 s of CPU of the 0.8 s the
serving modules cost): the backend factory imports the HTTP backends for the first config that
names one, the key store imports keyring at its first lookup."""

import json
import subprocess
import sys

HEAVY = ("mlx_lm", "transformers", "aiohttp", "keyring")


def test_serving_modules_import_no_model_library() -> None:
    code = (
        "import sys\n"
        "import mlxd.cli.serve, mlxd.server, mlxd.app, mlxd.transport, mlxd.models\n"
        f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


def _imported_after_make_backends(toml: str) -> list[str]:
    code = (
        "import json, sys, tomllib\n"
        "from mlxd.app.process import Process\n"
        "from mlxd.backends import make_backends\n"
        "from mlxd.config import Config, decode\n"
        "from mlxd.secrets import KeyStore\n"
        f"cfg = decode(tomllib.loads({toml!r}))\n"
        "p = Process()\n"
        "make_backends(cfg, {}, Config(), KeyStore(), p.pool, pools=p.http)\n"
        f"print(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    return json.loads(out.stdout)


def test_local_backends_import_no_http_client_and_cloud_ones_do() -> None:
    assert _imported_after_make_backends('[local]\nmodel = "x"\n') == []
    cloud = '[backends.c]\nprotocol = "openai"\nbase_url = "http://127.0.0.1:9/v1"\nmodel = "m"\n'
    assert "aiohttp" in _imported_after_make_backends(cloud)


def test_the_loader_names_are_still_there() -> None:
    import mlxd.models as models
    from mlxd.models import loader

    for name in ("EMBEDDED", "Dequantize", "LoadedModel", "Progress", "describe", "load_model"):
        assert getattr(models, name) is getattr(loader, name)
    assert "embedded_model_path" in models.__all__
