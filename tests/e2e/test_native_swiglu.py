"""SwiGLU of decode steps and verify passes (models/activation.py: silu(gate) * up in the
interposer's swiglu_product) in a child with the interposer preloaded, as `mlxd serve` runs:
against float64 numpy, a verify pass's rows against single steps, every sgemm layout of the
product, what it leaves to MLX, and its off switch."""

from __future__ import annotations

from pathlib import Path

from mlxd.models.activation import OFF_ENV

from .test_gemv_forward import NATIVE_CHILD, run_child
from .test_gemv_forward import pytestmark as _needs_preload

pytestmark = _needs_preload

SWIGLU = (
    NATIVE_CHILD
    + """
from mlx_lm.models.activations import swiglu as mlx_swiglu
from mlxd.models.activation import SWIGLU_ALPHA, swiglu
def products():
    return count("mlxd_swiglu_products")
def ref(g, u):
    g, u = np.asarray(g, np.float64), np.asarray(u, np.float64)
    return g / (1 + np.exp(-g)) * u
def err(got, want):
    return float((np.abs(np.asarray(got, np.float64) - want) / (np.abs(want) + 1e-30)).max())
rng = np.random.default_rng(4)
errors, identical, refused, mlx_same = {}, {}, {}, {}
__import__("mlxd.models.activation").models.activation.available()  # its check: one product
before = products()
for shape in ((1, 1, 1536), (1, 7, 1541), (2, 3, 40), (5,)):
    g = rng.standard_normal(shape).astype(np.float32) * 8
    g.flat[:6] = (0.0, -0.0, 95.0, -95.0, 1e-4, -30.0)  # past exp's range, signed zeros
    g, u = mx.array(g), mx.array(rng.standard_normal(shape).astype(np.float32))
    got = swiglu(g, u)
    name = str(shape)
    if got is None:
        refused[name] = True
        mlx_same[name] = True
        continue
    errors[name] = err(got, ref(g, u))
    mlx_same[name] = err(got, np.asarray(mlx_swiglu(g, u), np.float64)) < 1e-5
    if len(shape) == 3:  # each row alone, as a decode step computes it
        alone = [swiglu(g[:, i : i + 1], u[:, i : i + 1]) for i in range(shape[1])]
        identical[name] = bool((np.array(mx.concatenate(alone, axis=1)) == np.array(got)).all())
computed = products() - before
for name, args in (("float16", (mx.ones((1, 2, 8), mx.float16),) * 2),
                   ("other shapes", (mx.ones((1, 2, 8)), mx.ones((1, 1, 8))))):
    refused[name] = swiglu(*args) is None
# cblas_sgemm with SWIGLU_ALPHA in every layout: silu(A B) * beta C, beta 0 over NaN too.
a, b, c0 = (rng.standard_normal(s).astype(np.float32) for s in ((3, 5), (5, 4), (3, 4)))
ab = a.astype(np.float64) @ b
for name, beta, out in every_layout(SWIGLU_ALPHA, a, b, c0):
    errors[name] = float(np.abs(out - ab / (1 + np.exp(-ab)) * beta * c0).max())
# The daemon's shape (M x 1 times 1 x 1) with B and beta other than 1: not its fast loop's case.
a, b, c0 = (rng.standard_normal(s).astype(np.float32) for s in ((5, 1), (1, 1), (5, 1)))
ab = a.astype(np.float64) @ b
for name, beta, out in every_layout(SWIGLU_ALPHA, a, b, c0):
    errors["M x 1, " + name] = float(np.abs(out - ab / (1 + np.exp(-ab)) * beta * c0).max())
# available()'s check: a product the interposer did not compute, or computed wrong, fails it.
from mlxd.models.attention import interposer_computes
one = mx.array([[1.0]])
check = {
    "the real product": interposer_computes("mlxd_swiglu_products", lambda: mx.addmm(
        3 * one, one, one, alpha=SWIGLU_ALPHA, beta=1.0), 2.1931758),
    "not through the interposer": interposer_computes("mlxd_swiglu_products", lambda: one * 2.1931758, 2.1931758),
    "another value": interposer_computes("mlxd_swiglu_products", lambda: mx.addmm(
        3 * one, one, one, alpha=SWIGLU_ALPHA, beta=1.0), 3.0),
    "no such counter": interposer_computes("mlxd_no_such_products", lambda: one, 1.0),
}
print(json.dumps({"errors": errors, "identical": identical, "refused": refused,
                  "mlx_same": mlx_same, "computed": computed, "check": check}))
"""
)


def test_native_swiglu_equals_float64_and_a_verify_pass_its_steps(tmp_path: Path) -> None:
    seen = run_child(tmp_path, SWIGLU)
    assert len(seen["errors"]) == 4 + 16 + 16, seen["errors"]
    for name, e in seen["errors"].items():
        assert e < 2e-6, (name, e)
    assert len(seen["identical"]) == 3 and all(seen["identical"].values()), seen["identical"]
    assert seen["computed"] == 4 + 3 + 7 + 1, seen  # each call one product, never MLX's sigmoid
    assert seen["refused"] == {"float16": True, "other shapes": True}, seen["refused"]
    assert all(seen["mlx_same"].values())
    assert seen["check"] == {
        "the real product": True,
        "not through the interposer": False,
        "another value": False,
        "no such counter": False,
    }


def test_the_off_switch_leaves_swiglu_to_mlx(tmp_path: Path) -> None:
    seen = run_child(tmp_path, SWIGLU, **{OFF_ENV: "1"})
    assert seen["computed"] == 0 and len(seen["refused"]) == 6, seen
