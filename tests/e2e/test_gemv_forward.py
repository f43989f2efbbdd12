"""Few-row products (mlxd/gemv_forward.py): the interposer built and preloaded ahead of OpenBLAS
as `mlxd serve` does it, checked in real child processes against numpy, with and without it,
on raw products and on a real model: a verify pass's rows equal single steps bit for bit."""

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
x16 = arr(16, 576)
check("sixteen rows", mx.array(x16) @ mx.array(w).T, x16.astype(np.float64) @ w.T)
few_rows = forwarded()
x17 = arr(17, 576)
check("seventeen rows (OpenBLAS)", mx.array(x17) @ mx.array(w).T, x17.astype(np.float64) @ w.T)
many_rows = forwarded()
# Edges: K and N not multiples of the 16 lanes, 4 rows of B, or 64 columns; alpha and beta.
x3, wk, bn, c3 = arr(3, 101), arr(7, 101), arr(101, 83), arr(3, 83)
check("K % 16 != 0, N % 4 != 0", mx.array(x3) @ mx.array(wk).T, x3.astype(np.float64) @ wk.T)
check("x @ B, N % 16 != 0", mx.array(x3) @ mx.array(bn), x3.astype(np.float64) @ bn)
check("addmm, three rows", mx.addmm(mx.array(c3), mx.array(x3), mx.array(bn), alpha=-1.5, beta=2.0),
      2.0 * c3 - 1.5 * (x3.astype(np.float64) @ bn))
# Each row of a 9-row (tiles of 4 + 4 + 1 rows) or 7-row (4 + 3) product is the row computed
# alone, bit for bit: a large B (split over threads where there are 3+ cores), a small one, x @ B.
big, small, xb = arr(8192, 576), arr(7, 576), arr(576, 200)
nine, nine_k, seven = arr(9, 576), arr(9, 576), arr(7, 576)
identical = {}
for name, left, right, want in (
    ("x @ W.T, a large B", nine, mx.array(big).T, big.T),
    ("x @ W.T, small", nine, mx.array(small).T, small.T),
    ("x @ W.T, seven rows", seven, mx.array(big).T, big.T),
    ("x @ B", nine_k, mx.array(xb), xb),
):
    a_all = np.array(mx.array(left) @ right)
    rows = np.stack([np.array(mx.array(left[i : i + 1]) @ right)[0] for i in range(len(left))])
    identical[name] = bool((a_all == rows).all())
    check(name, a_all, left.astype(np.float64) @ want.astype(np.float64))
# cblas_sgemm called directly: beta = 0 over memory full of NaN must give the product.
lib = ctypes.CDLL(None)
P = ctypes.POINTER(ctypes.c_float)
lib.cblas_sgemm.argtypes = [ctypes.c_int] * 6 + [ctypes.c_float, P, ctypes.c_int, P, ctypes.c_int,
                                                 ctypes.c_float, P, ctypes.c_int]
for rows in (1, 3):
    out = np.full((rows, 1536), np.nan, np.float32)
    xr = arr(rows, 576)
    lib.cblas_sgemm(101, 111, 112, rows, 1536, 576, 1.0, xr.ctypes.data_as(P), 576,
                    w.ctypes.data_as(P), 576, 0.0, out.ctypes.data_as(P), 1536)
    check(f"cblas_sgemm, {rows} rows, beta = 0 over NaN", out, xr.astype(np.float64) @ w.T)
# alpha = 0: C = beta C, A and B not read (BLAS's rule): an inf in A must not make NaN.
inf_a, c2 = np.full((2, 576), np.inf, np.float32), arr(2, 1536)
out = c2.copy()
lib.cblas_sgemm(101, 111, 112, 2, 1536, 576, 0.0, inf_a.ctypes.data_as(P), 576, w.ctypes.data_as(P),
                576, 2.0, out.ctypes.data_as(P), 1536)
check("cblas_sgemm, alpha = 0 over inf", out, 2.0 * c2.astype(np.float64))
print(json.dumps({
    "blas": blas.blas_in_use(),
    "mapped": gemv_forward.mapped(),
    "errors": errors,
    "identical": identical,
    "forwarded_one_row": None if start is None else one_row - start,
    "forwarded_few_rows": None if start is None else few_rows - one_row,
    "forwarded_many_rows": None if start is None else many_rows - few_rows,
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
    assert seen["mapped"] and seen["blas"].endswith(", few-row products in mlxd's kernel"), seen
    # Every product of 1 to 16 rows was computed here (the batched one is one call per batch
    # element or one in all, as MLX decides); one of 17 rows went to OpenBLAS.
    assert seen["forwarded_one_row"] >= 4, seen
    assert seen["forwarded_few_rows"] == 2 and seen["forwarded_many_rows"] == 0, seen


def test_few_row_products_equal_numpys(runs) -> None:
    for name, err in runs["on"]["errors"].items():
        assert err < 1e-5, (name, err)


def test_a_row_is_the_same_alone_or_among_others(runs) -> None:
    """What makes greedy speculation exact: a verify pass's row is a plain step's row."""
    assert runs["on"]["identical"] and all(runs["on"]["identical"].values()), runs["on"]


def test_the_off_switch_leaves_openblas_alone(runs) -> None:
    seen = runs["off"]
    assert not seen["mapped"] and seen["forwarded_one_row"] is None, seen
    assert seen["blas"].startswith("OpenBLAS (") and "mlxd" not in seen["blas"]
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
from mlxd.models import prefill_math
model, tok = load(sys.argv[1])
installed = prefill_math.install(model)  # as the daemon runs it: prompt prefill on mlxd's exp
ids = tok.encode("def add(a, b):\\n    return a + b\\n\\ndef sub(a, b):\\n")
caches = [make_prompt_cache(model), make_prompt_cache(model)]
for cache in caches:
    model(mx.array([ids]), cache=cache)
steps = [model(mx.array([[t]]), cache=caches[0])[0, -1] for t in ids[:12]]  # one-row steps
verify = model(mx.array([ids[:12]]), cache=caches[1])[0]  # the same 12 tokens in one pass
np.save(sys.argv[2], np.array(mx.stack(steps)))
np.save(sys.argv[3], np.array(verify))
mapped = __import__("mlxd.gemv_forward").gemv_forward.mapped()
def count(name):
    try:
        return __import__("ctypes").c_long.in_dll(__import__("ctypes").CDLL(None), name).value
    except ValueError:
        return None
print(json.dumps({"mapped": mapped, "installed": installed,
                  "native_attention": count("mlxd_softmax_products"),
                  "native_swiglu": count("mlxd_swiglu_products")}))
"""


def test_a_real_models_steps_keep_their_logits_and_equal_a_verify_pass(
    tmp_path: Path, tiny_model: Path
) -> None:
    import numpy as np

    on, off = (
        (tmp_path / "on.npy", tmp_path / "on_pass.npy"),
        (tmp_path / "off.npy", tmp_path / "off_pass.npy"),
    )
    seen = run_child(tmp_path, DECODE, str(tiny_model), *map(str, on))
    assert seen["mapped"] and seen["installed"] == ["scaled_dot_product_attention", "swiglu"]
    # The steps' and the pass's attention in mlxd's product (attention.py): each layer's for
    # each of the 12 steps, one product per KV head (its query heads' rows together), and for
    # the pass, past MAX_ROWS rows so, one per head (the prompt's prefill has MIN_ROWS rows:
    # prefill_math's ops); their SwiGLU too (activation.py), one a layer.
    model = __import__("mlx_lm").load(str(tiny_model))[0]
    heads, kv_heads = model.args.num_attention_heads, model.args.num_key_value_heads
    assert 12 * heads // kv_heads > gemv_forward.MAX_ROWS >= heads // kv_heads > 1
    # (+ 2: the checks that MLX hands the interposer such products, plain and causal: the
    # verify pass is masked by the interposer itself, attention.causal_available)
    assert seen["native_attention"] == len(model.layers) * (12 * kv_heads + heads) + 2, seen
    assert seen["native_swiglu"] == 13 * len(model.layers) + 1, seen  # activation.py's, a layer
    off_env = {gemv_forward.OFF_ENV: "1"}
    assert not run_child(tmp_path, DECODE, str(tiny_model), *map(str, off), **off_env)["mapped"]
    steps, verify = np.load(on[0]), np.load(on[1])
    plain = np.load(off[0])
    assert steps.shape == plain.shape == verify.shape and steps.shape[0] == 12
    np.testing.assert_allclose(steps, plain, rtol=1e-4, atol=1e-4)
    assert (steps.argmax(-1) == plain.argmax(-1)).all()
    # Bit for bit: a speculative verify pass decides exactly as plain steps would.
    assert (steps == verify).all(), float(np.abs(steps - verify).max())


# Four CPUs, and the kernel's first worker thread fails to start (EAGAIN, as under a pids
# limit): products must still finish, and right.
SHIM = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <string.h>
int sched_getaffinity(pid_t pid, size_t n, cpu_set_t *set) {
    (void)pid;
    CPU_ZERO_S(n, set);
    for (int i = 0; i < 4; i++) CPU_SET_S(i, n, set);
    return 0;
}
typedef int (*create_fn)(pthread_t *, const pthread_attr_t *, void *(*)(void *), void *);
int pthread_create(pthread_t *t, const pthread_attr_t *a, void *(*f)(void *), void *arg) {
    static int failed;
    Dl_info info;
    if (!failed && dladdr((void *)f, &info) && info.dli_fname
        && strstr(info.dli_fname, "libmlxd_gemv_forward")) {
        failed = 1;
        return EAGAIN;
    }
    return ((create_fn)dlsym(RTLD_NEXT, "pthread_create"))(t, a, f, arg);
}
"""

THREADS = """
import ctypes, json
import numpy as np
from mlxd import blas
blas.maybe_reexec_with_openblas()
lib = ctypes.CDLL(None)
P = ctypes.POINTER(ctypes.c_float)
lib.cblas_sgemm.argtypes = [ctypes.c_int] * 6 + [ctypes.c_float, P, ctypes.c_int, P, ctypes.c_int,
                                                 ctypes.c_float, P, ctypes.c_int]
lib.openblas_set_num_threads(4)  # as blas_threads.py may: the products' workers follow it
rng = np.random.default_rng(1)
x, w = rng.standard_normal((2, 576)).astype(np.float32), rng.standard_normal((4096, 576)).astype(np.float32)
worst = 0.0
for _ in range(20):
    out = np.full((2, 4096), np.nan, np.float32)
    lib.cblas_sgemm(101, 111, 112, 2, 4096, 576, 1.0, x.ctypes.data_as(P), 576, w.ctypes.data_as(P),
                    576, 0.0, out.ctypes.data_as(P), 4096)
    want = x.astype(np.float64) @ w.T
    worst = max(worst, float(np.max(np.abs(out - want)) / np.max(np.abs(want))))
# Split over the workers that did start, each row of a 7-row product is the row alone.
x7, rows = rng.standard_normal((7, 576)).astype(np.float32), []
def product(a):
    out = np.empty((len(a), 4096), np.float32)
    lib.cblas_sgemm(101, 111, 112, len(a), 4096, 576, 1.0, a.ctypes.data_as(P), 576,
                    w.ctypes.data_as(P), 576, 0.0, out.ctypes.data_as(P), 4096)
    return out
alone = np.concatenate([product(x7[i : i + 1].copy()) for i in range(7)])
identical = bool((product(x7) == alone).all())
print(json.dumps({"worst": worst, "identical": identical, "threads": lib.openblas_get_num_threads()}))
"""


def test_a_worker_that_fails_to_start_costs_speed_only(tmp_path: Path) -> None:
    """Worker ids must stay 1..workers: with ids {2, 3} a product waited for id 1 for ever."""
    compiler = host.which("cc") or host.which("gcc")
    shim = tmp_path / "libshim.so"
    src = tmp_path / "shim.c"
    src.write_text(SHIM)
    subprocess.run(
        [compiler, "-O2", "-shared", "-fPIC", "-o", str(shim), str(src), "-ldl"], check=True
    )
    seen = run_child(tmp_path, THREADS, LD_PRELOAD=str(shim), OPENBLAS_NUM_THREADS="4")
    assert seen["threads"] >= 3, seen  # products split over 1+ workers (one core left over)
    assert seen["worst"] < 1e-5 and seen["identical"], seen


# The start of the native products' children: preloaded as the daemon is; `count(name)` reads
# one of the interposer's counters; `every_layout` calls cblas_sgemm directly in every CBLAS
# layout (MLX may hand a transposed operand over), with beta 0 over C full of NaN and beta 2.
NATIVE_CHILD = """
import ctypes, json
import numpy as np
from mlxd import blas
blas.maybe_reexec_with_openblas()
import mlx.core as mx
def count(name):
    return ctypes.c_long.in_dll(ctypes.CDLL(None), name).value
def every_layout(alpha, a, b, c0):
    lib = ctypes.CDLL(None)
    P = ctypes.POINTER(ctypes.c_float)
    lib.cblas_sgemm.argtypes = [ctypes.c_int] * 6 + [ctypes.c_float, P, ctypes.c_int, P,
                                                     ctypes.c_int, ctypes.c_float, P, ctypes.c_int]
    (m, k), n = a.shape, b.shape[1]
    for order in (101, 102):
        for ta in (111, 112):
            for tb in (111, 112):
                for beta in (0.0, 2.0):
                    f = "C" if order == 101 else "F"
                    aa = np.array(a.T if ta == 112 else a, order=f)
                    bb = np.array(b.T if tb == 112 else b, order=f)
                    out = np.array(c0, order=f) if beta else np.full((m, n), np.nan, np.float32, order=f)
                    ld = (lambda x: x.shape[1]) if order == 101 else (lambda x: x.shape[0])
                    lib.cblas_sgemm(order, ta, tb, m, n, k, alpha, aa.ctypes.data_as(P), ld(aa),
                                    bb.ctypes.data_as(P), ld(bb), beta, out.ctypes.data_as(P), ld(out))
                    yield f"sgemm order {order} {ta} {tb} beta {beta}", beta, np.ascontiguousarray(out)
"""

# The attention of decode steps and verify passes (models/attention.py: its softmax and last
# matmul in softmax_product) in a child with the interposer preloaded: against float64 numpy,
# a verify pass's rows against single steps, KV-cache views, batching's masks against MLX's
# own attention, and what it leaves to MLX.
ATTENTION = (
    NATIVE_CHILD
    + """
from mlxd.models.attention import attention
def products():
    return count("mlxd_softmax_products")
rng = np.random.default_rng(2)
def ref(q, k, v, scale, causal):
    h, hk = q.shape[1], k.shape[1]
    q, k, v = (np.asarray(a, np.float64)[0] for a in (q, k, v))
    k, v = np.repeat(k, h // hk, 0), np.repeat(v, h // hk, 0)
    s = q @ k.transpose(0, 2, 1) * scale
    rows, keys = q.shape[1], k.shape[1]
    if causal:
        s = np.where(np.arange(keys)[None] <= np.arange(keys - rows, keys)[:, None], s, -np.inf)
    p = np.exp(s - s.max(-1, keepdims=True))
    return (p / p.sum(-1, keepdims=True)) @ v
if attention(*(mx.ones((1, 1, 1, 16)),) * 3, 0.25, None) is None:  # MLXD_NO_NATIVE_ATTENTION
    print(json.dumps({"off": True, "computed": products()}))
    raise SystemExit
errors, identical, refused = {}, {}, {}
before = products()
for heads, kv, rows, keys, dim in ((9, 3, 1, 900, 64), (9, 3, 5, 37, 64), (4, 4, 3, 3, 128),
                                   (2, 1, 16, 40, 16), (6, 2, 1, 1, 64), (2, 2, 2, 9, 24)):
    # k and v as mlx-lm's KV cache hands them over: the first `keys` positions of a buffer.
    buf = mx.array(rng.standard_normal((2, 1, kv, keys + 256, dim)).astype(np.float32) * 3)
    k, v = buf[0, :, :, :keys], buf[1, :, :, :keys]
    q = mx.array(rng.standard_normal((1, heads, rows, dim)).astype(np.float32))
    mask = "causal" if rows > 1 else None
    got = attention(q, k, v, dim ** -0.5, mask)
    name = f"{heads}/{kv} heads, {rows} rows, {keys} keys, dim {dim}"
    want = ref(q, k, v, dim ** -0.5, mask is not None)
    errors[name] = float(np.abs(np.array(got)[0] - want).max() / np.abs(want).max())
    alone = [attention(q[:, :, i : i + 1], k[:, :, : keys - rows + i + 1],
                       v[:, :, : keys - rows + i + 1], dim ** -0.5, None) for i in range(rows)]
    identical[name] = bool((np.array(mx.concatenate(alone, axis=2)) == np.array(got)).all())
computed = products() - before
# Continuous batching's masks: two sequences, the second left-padded by 3 (its first row sees
# no key: MLX averages them all, so must this), against MLX's own attention.
q = mx.array(rng.standard_normal((2, 4, 2, 64)).astype(np.float32))
k, v = (mx.array(rng.standard_normal((2, 2, 5, 64)).astype(np.float32)) for _ in range(2))
pad = mx.array([[[[True] * 5, [True] * 5]], [[[False] * 5, [False] * 3 + [True, True]]]])
for name, mask in (("a mask for each sequence", pad), ("one mask for both", pad[1:]),
                   ("an (L, S) mask", pad[1, 0])):
    got = attention(q, k, v, 0.125, mask)
    want = mx.fast.scaled_dot_product_attention(q, k, v, scale=0.125, mask=mask)
    errors[name] = float(np.abs(np.array(got) - np.array(want)).max() / np.abs(np.array(want)).max())
q, k = mx.ones((1, 4, 2, 64)), mx.ones((1, 2, 8, 64))
for name, args in (("an additive mask", (q, k, k, 0.1, mx.zeros((2, 8)))),
                   ("a mask of other rows", (q, k, k, 0.1, mx.ones((3, 8), dtype=mx.bool_))),
                   ("float16", (q.astype(mx.float16), k.astype(mx.float16), k.astype(mx.float16), 0.1, "causal")),
                   ("17 rows", (mx.ones((1, 4, 17, 64)), mx.ones((1, 2, 20, 64)), mx.ones((1, 2, 20, 64)), 0.1, "causal")),
                   ("heads wider than 256", (mx.ones((1, 2, 1, 272)), mx.ones((1, 2, 8, 272)), mx.ones((1, 2, 8, 272)), 0.1, None))):
    refused[name] = attention(*args) is None
# cblas_sgemm with SOFTMAX_ALPHA in every layout (MLX may hand a transposed operand over), with
# beta 0 over NaN and beta 2: softmax(A) B (+ beta C), never OpenBLAS's product.
from mlxd.models.attention import SOFTMAX_ALPHA
lib = ctypes.CDLL(None)
P = ctypes.POINTER(ctypes.c_float)
lib.cblas_sgemm.argtypes = [ctypes.c_int] * 6 + [ctypes.c_float, P, ctypes.c_int, P, ctypes.c_int,
                                                 ctypes.c_float, P, ctypes.c_int]
a, bv, c0 = (rng.standard_normal(s).astype(np.float32) for s in ((3, 21), (21, 32), (3, 32)))
w = np.exp(a.astype(np.float64) - a.max(1, keepdims=True))
soft = (w / w.sum(1, keepdims=True)) @ bv
for name, beta, out in every_layout(SOFTMAX_ALPHA, a, bv, c0):
    want = soft + beta * c0
    errors[name] = float(np.abs(out - want).max() / np.abs(want).max())
# Products wider than softmax_product's registers (n > 256 columns) sum in memory, right.
a, bv = rng.standard_normal((2, 40)).astype(np.float32), rng.standard_normal((40, 520)).astype(np.float32)
out = np.full((2, 520), np.nan, np.float32)
lib.cblas_sgemm(101, 111, 111, 2, 520, 40, SOFTMAX_ALPHA, a.ctypes.data_as(P), 40, bv.ctypes.data_as(P),
                520, 0.0, out.ctypes.data_as(P), 520)
w = np.exp(a.astype(np.float64) - a.max(1, keepdims=True))
want = (w / w.sum(1, keepdims=True)) @ bv
errors["sgemm, 520 columns"] = float(np.abs(out - want).max() / np.abs(want).max())
# The causal opcode (beta = query rows a group): row i of 6 (2 groups of 3) sees 40 - 3 + 1 +
# i % 3 keys, as under MLX's mask; a beta that is no row count is never a softmax.
CAUSAL = -3.0e30
a, bv = rng.standard_normal((6, 40)).astype(np.float32), rng.standard_normal((40, 64)).astype(np.float32)
out = np.full((6, 64), np.nan, np.float32)
lib.cblas_sgemm(101, 111, 111, 6, 64, 40, CAUSAL, a.ctypes.data_as(P), 40, bv.ctypes.data_as(P),
                64, 3.0, out.ctypes.data_as(P), 64)
seen_keys = [38 + i % 3 for i in range(6)]
want = np.stack([
    (np.exp(r[:n] - r[:n].max()) / np.exp(r[:n] - r[:n].max()).sum()) @ bv[:n]
    for r, n in zip(a.astype(np.float64), seen_keys)
])
errors["causal sgemm"] = float(np.abs(out - want).max() / np.abs(want).max())
# A key a row does not see is not in its sums: an inf among its values (an overflowed value
# projection) left NaN in the rows of a 4-row tile that stop before it (0 x inf; attack,
# session 26).
bv[39, 5] = np.inf
out = np.full((6, 64), np.nan, np.float32)
lib.cblas_sgemm(101, 111, 111, 6, 64, 40, CAUSAL, a.ctypes.data_as(P), 40, bv.ctypes.data_as(P),
                64, 3.0, out.ctypes.data_as(P), 64)
unseen_finite = bool(np.isfinite(out[[0, 1, 3, 4]]).all())
misuse = {}
for beta in (0.0, 2.5, 41.0, -1.0):
    out = np.zeros((6, 64), np.float32)
    lib.cblas_sgemm(101, 111, 111, 6, 64, 40, CAUSAL, a.ctypes.data_as(P), 40, bv.ctypes.data_as(P),
                    64, beta, out.ctypes.data_as(P), 64)
    misuse[str(beta)] = bool(np.isnan(out).all())
print(json.dumps({"errors": errors, "identical": identical, "refused": refused, "computed": computed,
                  "misuse": misuse, "unseen_finite": unseen_finite}))
"""
)


def test_native_attention_equals_float64_and_a_verify_pass_its_steps(tmp_path: Path) -> None:
    seen = run_child(tmp_path, ATTENTION)
    for name, err in seen["errors"].items():
        assert err < 1e-5, (name, err)
    assert len(seen["identical"]) == 6 and all(seen["identical"].values()), seen["identical"]
    assert seen["computed"] > 0, seen  # by softmax_product, not by MLX's softmax
    assert len(seen["refused"]) == 5 and all(seen["refused"].values()), seen["refused"]
    assert seen["misuse"] and all(seen["misuse"].values()), seen["misuse"]
    assert seen["unseen_finite"]


def test_the_off_switch_leaves_attention_to_mlx(tmp_path: Path) -> None:
    from mlxd.models.attention import OFF_ENV as ATTENTION_OFF

    seen = run_child(tmp_path, ATTENTION, **{ATTENTION_OFF: "1"})
    assert seen == {"off": True, "computed": 0}, seen
