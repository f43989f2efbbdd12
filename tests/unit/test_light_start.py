"""A daemon that never loads a local model never imports mlx-lm or transformers: they are most of
a daemon's start-up (about 1 s of CPU of ~1.5 s), and cloud-only windows, `mlxd status`/`stop`
and most of the test suite's daemons never need them. `mlxd.models` hands out the loader's names
lazily; the model pool imports the loader when it loads a model."""

import subprocess
import sys

HEAVY = ("mlx_lm", "transformers")


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


def test_the_loader_names_are_still_there() -> None:
    import mlxd.models as models
    from mlxd.models import loader

    for name in ("EMBEDDED", "Dequantize", "LoadedModel", "Progress", "describe", "load_model"):
        assert getattr(models, name) is getattr(loader, name)
    assert "embedded_model_path" in models.__all__
