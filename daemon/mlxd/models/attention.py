"""Attention of a decode step or a verify pass on MLX's CPU backend, in mlxd's native library.

MLX's CPU backend has no attention kernel: `mx.fast.scaled_dot_product_attention` falls back
to matmul, softmax and matmul, and its softmax's `exp` is scalar code, ~30 ns an element on
the 2-core box (numpy's: ~0.6 ns). A token at depth 900 of the embedded model (9 heads, 30
layers) pays ~13 ms for it, of a ~55 ms step, and each more token of a verify pass as much
again. Here the graph is MLX's own (q k^T through the products mlxd's interposer computes, a row
alone; the mask by `where`), but its softmax and last matmul are one product that the
interposer computes as softmax(A) B (native/gemv_forward.c's softmax_product), with a
vectorized exp (relative error ~2e-7), asked for by a `mx.addmm` with alpha SOFTMAX_ALPHA; a
verify pass's causal mask by CAUSAL_SOFTMAX_ALPHA, each row summing its own keys only (the
mask's array and its `where` over all the scores cost a 3-token pass 900 deep ~0.1x a step).
The graph is not cut (no evaluation, no copy); each row of scores is its own softmax, summed
in one order over its keys, so a verify pass's rows stay bit-identical to that token's decode
steps (speculative decoding stays exact).

prefill_math's wrapper sends here the calls of fewer than its MIN_ROWS query rows (decode
steps, verify passes; continuous batching's steps too, with their bool masks) on float32
arrays; others (additive masks, quantized KV caches, sinks, other dtypes) keep MLX's ops, as
do processes without the interposer. MLXD_NO_NATIVE_ATTENTION=1 turns it off.
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Callable
from typing import Any

from .. import gemv_forward

log = logging.getLogger(__name__)

OFF_ENV = "MLXD_NO_NATIVE_ATTENTION"
SOFTMAX_ALPHA = -1.0e30  # native/gemv_forward.c's: this addmm is C = softmax(A) B
# ... and this one, with beta = R query rows a group, C = softmax(A) B under the causal mask
CAUSAL_SOFTMAX_ALPHA = -3.0e30
MAX_DIM = 256  # native/gemv_forward.c's: wider heads keep MLX's attention


@functools.cache
def available() -> bool:
    """Whether this process's products take SOFTMAX_ALPHA (the interposer is preloaded, from a
    source that has softmax_product) and MLXD_NO_NATIVE_ATTENTION is not set."""
    if os.environ.get(OFF_ENV) or not gemv_forward.mapped():
        return False
    import mlx.core as mx

    # MLX must still hand this addmm, alpha untouched, to the interposer's cblas_sgemm: a
    # product that reached another BLAS would be -1e30 (A B), so one is computed and checked.
    scores, values = mx.array([[0.0, 1.0, 2.0]]), mx.array([[1.0], [2.0], [3.0]])
    return interposer_computes(
        "mlxd_softmax_products",
        lambda: mx.addmm(mx.zeros((1,)), scores, values, alpha=SOFTMAX_ALPHA, beta=0.0),
        2.5752103,  # softmax(0, 1, 2) . (1, 2, 3)
    )


@functools.cache
def causal_available() -> bool:
    """Whether the interposer also masks causally itself (CAUSAL_SOFTMAX_ALPHA): a verify
    pass then builds no mask and applies none (~1-2 ms of a 3-9 token pass 900 deep)."""
    if not available():
        return False
    import mlx.core as mx

    # Two query rows over 3 keys: the first sees keys 0-1 only, the second all three.
    scores, values = mx.array([[0.0, 1.0, 2.0], [0.0, 1.0, 2.0]]), mx.array([[1.0], [2.0], [3.0]])
    return interposer_computes(
        "mlxd_softmax_products",
        lambda: mx.addmm(
            mx.zeros((1,)), scores, values, alpha=CAUSAL_SOFTMAX_ALPHA, beta=2.0
        ).sum(),
        1.7310586 + 2.5752103,  # softmax(0, 1) . (1, 2) + softmax(0, 1, 2) . (1, 2, 3)
    )


def interposer_computes(counter: str, product: Callable[[], Any], want: float) -> bool:
    """Whether `product()` (a 1 x 1 mx.addmm with one of the interposer's alphas) is computed
    by native/gemv_forward.c: its `counter` goes up and the value is `want`. False
    where the library lacks that counter or MLX cannot evaluate here (inside mx.compile)."""
    import ctypes

    import mlx.core as mx

    try:
        count = ctypes.c_long.in_dll(ctypes.CDLL(None), counter)
        before = count.value
        with mx.stream(mx.cpu):
            got = product().item()
    except ValueError:
        return False
    if count.value > before and abs(got - want) <= 1e-5 * abs(want):
        return True
    log.warning(
        "%s: MLX did not hand the product to mlxd's interposer: MLX's ops are used", counter
    )
    return False


def attention(queries: Any, keys: Any, values: Any, scale: float, mask: Any) -> Any:
    """softmax(scale * Q K^T + mask) V, or None where the library does not take it (the
    caller then uses MLX's). Shapes: queries (B, H, L, D), keys and values (B, Hkv, S, D),
    float32, H a multiple of Hkv, L at most gemv_forward.MAX_ROWS; mask None, "causal" (query
    i sees keys up to S - L + i) or a bool array (L, S) or (B, 1, L, S) (True: attend;
    continuous batching's). Returns (B, H, L, D), lazily, as MLX's would."""
    import mlx.core as mx

    if (
        not available()
        or mx.default_device() != mx.cpu
        or queries.ndim != 4
        or values.shape[-1] > MAX_DIM  # the widest rows softmax_product sums in registers
        or keys.shape != values.shape
        or keys.shape[0] != queries.shape[0]
        or queries.shape[2] > gemv_forward.MAX_ROWS
        or any(a.dtype != mx.float32 for a in (queries, keys, values))
        or not _mask_ok(mask, queries.shape, keys.shape[2])
    ):
        return None
    b, heads, rows, dim = queries.shape
    kv_heads, seen_keys = keys.shape[1], keys.shape[2]
    # A KV head's query heads in one product of group * rows rows: its keys and values read
    # once (on AVX-512 softmax_product takes 4 rows a key). Past MAX_ROWS, one product a query
    # head, as MLX's own broadcast (mlxd's products compute a row alone: the same sums either
    # way).
    group = heads // kv_heads
    q = (queries * scale).reshape(b, kv_heads, group, rows, dim)
    if group * rows <= gemv_forward.MAX_ROWS:
        q = q.reshape(b, kv_heads, 1, group * rows, dim)
    k, v = mx.expand_dims(keys, 2), mx.expand_dims(values, 2)
    scores = (q @ k.swapaxes(-1, -2)).reshape(b, kv_heads, group, rows, seen_keys)
    alpha, beta = SOFTMAX_ALPHA, 0.0
    if isinstance(mask, str) and causal_available():  # each product's rows: group x rows
        alpha, beta, mask = CAUSAL_SOFTMAX_ALPHA, float(rows), None
    elif isinstance(mask, str):
        mask = mx.arange(seen_keys - rows, seen_keys)[:, None] >= mx.arange(seen_keys)[None]
    if mask is not None:
        mask = mx.expand_dims(mask, 1) if mask.ndim == 4 else mask  # over (Hkv, H/Hkv)
        scores = mx.where(mask, scores, mx.finfo(mx.float32).min)
    zero = mx.zeros((dim,), dtype=mx.float32)
    scores = scores.reshape(*q.shape[:-1], seen_keys)
    out = mx.addmm(zero, scores, v, alpha=alpha, beta=beta)
    return out.reshape(b, heads, rows, dim)


def _mask_ok(mask: Any, shape: tuple[int, ...], keys: int) -> bool:
    if mask is None or isinstance(mask, str):
        return mask is None or mask == "causal"
    import mlx.core as mx

    b, _, rows, _ = shape
    return (
        mask.dtype == mx.bool_
        and (mask.ndim == 2 or (mask.ndim == 4 and mask.shape[1] == 1 and mask.shape[0] in (1, b)))
        and mask.shape[-2:] == (rows, keys)
    )
