"""SwiGLU of a decode step or a verify pass on MLX's CPU backend, in mlxd's native library.

The MLP of llama-style models computes silu(gate) * up on every token: 1,536 values a layer
for the embedded model. MLX's CPU sigmoid is scalar (~25 ns a value: 30 layers took 0.96 ms of
a one-token step, 2.8 ms of a 3-token verify pass). prefill_math's compiled version is fast on
a prefill chunk but costs more than MLX's on one row (three MLX operations to dispatch). Here it
is one product that the preloaded interposer computes as silu(A) * C (native/gemv_forward.c's
swiglu_product, on the vectorized exp attention.py's softmax uses), asked for by a `mx.addmm`
with alpha SWIGLU_ALPHA: one operation in MLX's graph, 30 layers 0.51 ms for one token, 0.83 ms
for three. Each value alone, so a verify pass's rows stay bit-identical to that token's decode
steps.

prefill_math's wrapper sends here the calls of fewer than its MIN_ROWS rows on float32 arrays;
processes without the interposer keep MLX's. MLXD_NO_NATIVE_SWIGLU=1 turns it off.
"""

from __future__ import annotations

import functools
import os
from typing import Any

from .. import gemv_forward
from .attention import interposer_computes

OFF_ENV = "MLXD_NO_NATIVE_SWIGLU"
SWIGLU_ALPHA = -2.0e30  # native/gemv_forward.c's: this addmm is C = silu(A B) * beta C


@functools.cache
def available() -> bool:
    """Whether this process's products take SWIGLU_ALPHA (the interposer is preloaded, from a
    source that has swiglu_product) and MLXD_NO_NATIVE_SWIGLU is not set."""
    if os.environ.get(OFF_ENV) or not gemv_forward.mapped():
        return False
    import mlx.core as mx

    # As attention.available: one product computed and checked (another BLAS would return
    # -2e30 * gate + up).
    gate, up, one = mx.array([[1.0]]), mx.array([[3.0]]), mx.array([[1.0]])
    return interposer_computes(
        "mlxd_swiglu_products",
        lambda: mx.addmm(up, gate, one, alpha=SWIGLU_ALPHA, beta=1.0),
        2.1931758,  # silu(1) * 3
    )


def swiglu(gate: Any, up: Any) -> Any:
    """silu(gate) * up (mlx-lm's activations.swiglu), or None where the library does not take
    it (the caller then uses MLX's). gate and up: float32 arrays of one shape, any rank.
    Relative error ~1e-6 against float64 (MLX's: ~4e-6); a gate below -87 gives 0, where
    silu is under 1e-36 in magnitude. Returns an array of that shape, lazily."""
    import mlx.core as mx

    if not available() or mx.default_device() != mx.cpu:
        return None
    if gate.shape != up.shape or gate.dtype != mx.float32:
        return None
    if up.dtype != mx.float32 or gate.size == 0:
        return None
    one = mx.ones((1, 1), dtype=mx.float32)
    out = mx.addmm(up.reshape(-1, 1), gate.reshape(-1, 1), one, alpha=SWIGLU_ALPHA, beta=1.0)
    return out.reshape(gate.shape)
