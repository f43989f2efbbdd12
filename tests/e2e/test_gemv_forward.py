"""One-row products on sgemv (mlxd/gemv_forward.py): the interposer built and preloaded ahead
of OpenBLAS as `mlxd serve` does it, checked in real child processes against numpy, with and
without forwarding, on raw products and on a real model's decode step."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mlxd import blas, gemv_forward, host

pytestmark = [
    pytest.mark.skipif(
        sys.platform != "linux" or blas.find_openblas() is None,
        reason="the preload is Linux-only, with OpenBLAS",
    ),
    pytest.mark.skipif(
        host.which("cc") is None and host.which("gcc") is None,
        reason="no C compiler to build the interposer (mlxd then runs without it)",
    ),
]

# The child re-execs as the daemon does, then multiplies through MLX (which calls the preloaded
# cblas_sgemm) and through cblas_sgemm directly, comparing each with numpy in float64.
CHILD = """
import ctypes, json, sys
import numpy as np
from mlxd import blas, gemv_forward
blas.maybe_reexec_with_openblas()
import mlx.core as mx
rng = np.random.default_rng(0)
def arr(*shape):
    return rng.standard_normal(shape).astype(np.float32)
def forwarded():
    try:
        return ctypes.c_long.in_dll(ctypes.CDLL(None), "mlxd_gemv_forwarded").value
    except ValueError:
        return None
errors, counts = {}, {}
def check(name, got, want):
    before = counts.setdefault("before", forwarded())
    got = np.array(got, dtype=np.float64)
    errors[name] = float(np.max(np.abs(got - want)) / (np.max(np.abs(want)) + 1e-9))
w, b, x, x2 = arr(1536, 576), arr(576, 1536), arr(1, 576), arr(2, 576)
c = arr(1, 1536)
start = forwarded()
check("x @ W.T (a linear layer)", mx.array(x) @ mx.array(w).T, x.astype(np.float64) @ w.T)
check("x @ B", mx.array(x) @ mx.array(b), x.astype(np.float64) @ b)
col = arr(576, 3)
check("a column as the row", mx.array(col)[:, 1:2].T @ mx.array(b), col[:, 1:2].T.astype(np.float64) @ b)
check("addmm, beta != 0", mx.addmm(mx.array(c), mx.array(x), mx.array(w).T, alpha=2.0, beta=0.5),
      0.5 * c + 2.0 * (x.astype(np.float64) @ w.T))
bx, bw = arr(3, 1, 576), arr(3, 576, 64)
check("batched, one row each", mx.array(bx) @ mx.array(bw), np.matmul(bx.astype(np.float64), bw))
one_row = forwarded()
check("two rows", mx.array(x2) @ mx.array(w).T, x2.astype(np.float64) @ w.T)
two_rows = forwarded()
# cblas_sgemm called directly: beta = 0 over memory full of NaN must give the product.
lib = ctypes.CDLL(None)
P = ctypes.POINTER(ctypes.c_float)
lib.cblas_sgemm.argtypes = [ctypes.c_int] * 6 + [ctypes.c_float, P, ctypes.c_int, P, ctypes.c_int,
                                                 ctypes.c_float, P, ctypes.c_int]
out = np.full((1, 1536), np.nan, np.float32)
lib.cblas_sgemm(101, 111, 112, 1, 1536, 576, 1.0, x.ctypes.data_as(P), 576, w.ctypes.data_as(P),
                576, 0.0, out.ctypes.data_as(P), 1536)
check("cblas_sgemm, beta = 0 over NaN", out, x.astype(np.float64) @ w.T)
print(json.dumps({
    "blas": blas.blas_in_use(),
    "mapped": gemv_forward.mapped(),
    "errors": errors,
    "forwarded_one_row": None if start is None else one_row - start,
    "forwarded_two_rows": None if start is None else two_rows - one_row,
}))
"""


def run_child(tmp_path: Path, code: str, *args: str, **env: str) -> dict:
    base = {k: v for k, v in os.environ.items() if k not in (gemv_forward.OFF_ENV, "LD_PRELOAD")}
    done = subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        env=base | {"XDG_CACHE_HOME": str(tmp_path / "cache")} | env,
        timeout=180,
        check=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    tmp = tmp_path_factory.mktemp("gemv")
    return {
        "on": run_child(tmp, CHILD),
        "off": run_child(tmp, CHILD, **{gemv_forward.OFF_ENV: "1"}),
    }


def test_the_daemons_preload_puts_the_interposer_ahead_of_openblas(runs) -> None:
    seen = runs["on"]
    assert seen["mapped"] and seen["blas"].endswith(", one-row products on sgemv"), seen
    # Every one-row product went to sgemv (the batched one is one call per batch element or
    # one call in all, as MLX decides), and a two-row product did not.
    assert seen["forwarded_one_row"] >= 5 and seen["forwarded_two_rows"] == 0, seen


def test_forwarded_products_equal_numpys(runs) -> None:
    for name, err in runs["on"]["errors"].items():
        assert err < 1e-5, (name, err)


def test_the_off_switch_leaves_openblas_alone(runs) -> None:
    seen = runs["off"]
    assert not seen["mapped"] and seen["forwarded_one_row"] is None, seen
    assert seen["blas"].startswith("OpenBLAS (") and "sgemv" not in seen["blas"]
    for name, err in seen["errors"].items():
        assert err < 1e-5, (name, err)


DECODE = """
import json, sys
from mlxd import blas
blas.maybe_reexec_with_openblas()
import mlx.core as mx
import numpy as np
from mlx_lm import load
from mlx_lm.models.cache import make_prompt_cache
model, tok = load(sys.argv[1])
cache = make_prompt_cache(model)
ids = tok.encode("def add(a, b):\\n    return a + b\\n\\ndef sub(a, b):\\n")
model(mx.array([ids]), cache=cache)
out = [model(mx.array([[t]]), cache=cache)[0, -1] for t in ids[:12]]  # one-row decode steps
np.save(sys.argv[2], np.array(mx.stack(out)))
print(json.dumps({"mapped": __import__("mlxd.gemv_forward").gemv_forward.mapped()}))
"""


def test_a_real_models_decode_steps_keep_their_logits(tmp_path: Path, tiny_model: Path) -> None:
    on, off = tmp_path / "on.npy", tmp_path / "off.npy"
    assert run_child(tmp_path, DECODE, str(tiny_model), str(on))["mapped"]
    off_env = {gemv_forward.OFF_ENV: "1"}
    assert not run_child(tmp_path, DECODE, str(tiny_model), str(off), **off_env)["mapped"]
    import numpy as np

    a, b = np.load(on), np.load(off)
    assert a.shape == b.shape and a.shape[0] == 12
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)
    assert (a.argmax(-1) == b.argmax(-1)).all()
