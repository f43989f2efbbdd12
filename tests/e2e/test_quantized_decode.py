"""Decode on quantized shadows (mlxd/gemv_forward.py `shadow`): a float matrix dequantized from
4- or 8-bit affine weights is read in its quantized form by the few-row products, in real
child processes that preload the interposer as `mlxd serve` does. Products and a real model's
logits must be bit-identical to the float matrices' own; a form that does not unpack to the
float matrix exactly must be refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlxd import gemv_forward
from mlxd.models.specs import embedded_model_path

from .test_gemv_forward import pytestmark as _needs_preload
from .test_gemv_forward import run_child

pytestmark = _needs_preload

# Each case: random weights quantized by MLX (scales and biases rounded to float16, as a GGUF's
# are), dequantized to float32, held by an nn.Linear; products of 1-17 rows with the shadow
# and without it (suspended), compared bit for bit. 203 rows of B: blocks of 4 and a last one
# of 3; "wide" rows (4,608 weights) unpack into an allocated buffer instead of the stack.
SYNTH = """
import ctypes, gc, json
import numpy as np
from mlxd import blas, gemv_forward
blas.maybe_reexec_with_openblas()
import mlx.core as mx
import mlx.nn as nn
lib = ctypes.CDLL(None)
def shadowed():
    return ctypes.c_long.in_dll(lib, "mlxd_gemv_shadowed").value
def case(bits, group, n=203, k=576, spoil=False):
    w = mx.random.normal((n, k), key=mx.random.key(bits * 100 + group))
    packed, scales, biases = mx.quantize(w, group_size=group, bits=bits)
    scales, biases = scales.astype(mx.float16), biases.astype(mx.float16)
    floats = mx.dequantize(packed, scales.astype(mx.float32), biases.astype(mx.float32),
                           group_size=group, bits=bits)
    if spoil:  # one weight that its quantized form does not give
        floats = floats + mx.where(mx.arange(n * k).reshape(n, k) == 12345, 1e-3, 0.0)
    model = nn.Sequential(nn.Linear(k, n, bias=False))
    model.layers[0].weight = floats
    mx.eval(model.parameters())
    forms = {"layers.0": gemv_forward.Quantized(packed, scales, biases, bits, group)}
    shadows = gemv_forward.shadow(model, forms)
    out = {"registered": 0 if shadows is None else len(shadows)}
    if shadows is None:
        return out
    same, used = [], []
    for rows in (1, 2, 3, 5, 9, 16, 17):
        x = mx.random.normal((rows, k), key=mx.random.key(rows))
        before = shadowed()
        on = np.array(model(x))
        used.append(shadowed() - before)
        with shadows.suspended():
            off = np.array(model(x))
        same.append(bool((on == off).all()))
    # C = alpha x W.T + beta C with beta neither 0 nor 1 (mlx-lm never asks it; MLX's addmm
    # does): the shadow's 1-2 row kernels rounded it another way (attack, session 15).
    addmm = []
    for rows in (1, 2, 3, 9):
        x = mx.random.normal((rows, k), key=mx.random.key(rows))
        c = mx.random.normal((rows, n), key=mx.random.key(100 + rows))
        on = np.array(mx.addmm(c, x, floats.T, alpha=0.7, beta=0.37))
        with shadows.suspended():
            off = np.array(mx.addmm(c, x, floats.T, alpha=0.7, beta=0.37))
        addmm.append(bool((on == off).all()))
    out.update(same=same, used=used, addmm=addmm)
    del model, shadows
    gc.collect()  # the model is gone: its entries must be too
    x = mx.random.normal((1, k))
    before = shadowed()
    mx.eval(x @ floats.T)  # the same float matrix, alive here: read as floats again
    out["after_collect"] = shadowed() - before
    return out
print(json.dumps({
    "4/32": case(4, 32), "4/64": case(4, 64), "8/32": case(8, 32), "8/64": case(8, 64),
    "4/32 wide": case(4, 32, n=37, k=4608), "8/32 wide": case(8, 32, n=37, k=4608),
    "4/32 spoiled": case(4, 32, spoil=True), "2/32": case(2, 32), "6/64": case(6, 64), "4/128": case(4, 128, k=768),
    "shadow_rows": gemv_forward.shadow_rows(),
}))
"""


def test_quantized_shadows_give_the_float_products_bit_for_bit(tmp_path: Path) -> None:
    seen = run_child(tmp_path, SYNTH)
    for name in ("4/32", "4/64", "4/128", "8/32", "8/64", "4/32 wide", "8/32 wide"):
        case = seen[name]
        assert case["registered"] == 1, (name, case)
        assert all(case["same"]) and all(case["addmm"]), (name, case)
        # 1-16 rows read the shadow (one product each: 1-2 rows (AVX-512: 1-3) unpacking it in
        # registers, the others into L1), 17 go to OpenBLAS's sgemm on the floats: the same bits.
        assert case["used"] == [1, 1, 1, 1, 1, 1, 0], (name, case)
        assert case["after_collect"] == 0, (name, case)
    # What speculation prices passes by (models/speculative.py): the tile's rows, as built here.
    flags = next(x for x in Path("/proc/cpuinfo").read_text().splitlines() if x.startswith("flags"))
    avx512 = "avx512f" in flags.split()
    assert seen["shadow_rows"] == (3 if avx512 else 2)
    # Refused: a weight its form does not give, 2- and 6-bit weights.
    assert seen["4/32 spoiled"] == {"registered": 0}
    assert seen["2/32"] == {"registered": 0}
    assert seen["6/64"] == {"registered": 0}


def test_off_switch_registers_nothing(tmp_path: Path) -> None:
    seen = run_child(tmp_path, SYNTH, **{gemv_forward.SHADOW_OFF_ENV: "1"})
    seen.pop("shadow_rows")  # the kernel's tile, not a case: built whether or not shadows are
    assert len(seen) == 10 and all(case == {"registered": 0} for case in seen.values()), seen


# The embedded model as the daemon loads it: 12 one-token steps with its shadows and without,
# and a verify pass of the same 12 tokens with them.
EMBEDDED = """
import ctypes, json, sys
import numpy as np
from mlxd import blas
blas.maybe_reexec_with_openblas()
import mlx.core as mx
from mlx_lm.models.cache import make_prompt_cache
from mlxd.models.loader import load_model
lm = load_model("smollm2-135m", fast_prefill=True)
ids = lm.tokenizer.encode("def add(a, b):\\n    return a + b\\n\\ndef sub(a, b):\\n")
def steps():
    cache = make_prompt_cache(lm.model)
    lm.model(mx.array([ids]), cache=cache)
    return np.array(mx.stack([lm.model(mx.array([[t]]), cache=cache)[0, -1] for t in ids[:12]]))
lib = ctypes.CDLL(None)
count = lambda: ctypes.c_long.in_dll(lib, "mlxd_gemv_shadowed").value
before = count()
on = steps()
used = count() - before
with lm.shadows.suspended():
    off = steps()
cache = make_prompt_cache(lm.model)
lm.model(mx.array([ids]), cache=cache)
verify = np.array(lm.model(mx.array([ids[:12]]), cache=cache)[0])
np.save(sys.argv[1], on); np.save(sys.argv[2], off); np.save(sys.argv[3], verify)
print(json.dumps({"shadows": len(lm.shadows), "used": used}))
"""


@pytest.mark.skipif(embedded_model_path() is None, reason="the embedded model is not installed")
def test_the_embedded_model_decodes_on_its_q4_weights_with_the_same_logits(tmp_path: Path) -> None:
    import numpy as np

    paths = [tmp_path / f"{name}.npy" for name in ("on", "off", "verify")]
    seen = run_child(tmp_path, EMBEDDED, *map(str, paths))
    # 30 layers x 7 projections (4-bit) and the tied embedding as the LM head (8-bit).
    assert seen["shadows"] == 211, seen
    assert seen["used"] >= 12 * 211, seen  # every product of every step read a shadow
    on, off, verify = (np.load(p) for p in paths)
    assert on.shape == off.shape == verify.shape == (12, on.shape[1])
    assert (on == off).all(), float(np.abs(on - off).max())
    # A verify pass of 12 rows (the shadows unpacked into L1): its rows equal the steps, so
    # speculation stays exact.
    assert (on == verify).all(), float(np.abs(on - verify).max())


# The registry under attack (session 14's attacker): a model dropped while MLX's stream thread
# still runs its products; remove and add racing with products; a model dropped inside
# `suspended()`; one buffer registered under several shapes; slots used up by matrices that
# come and go at new addresses.
REGISTRY = """
import ctypes, gc, json, threading, time
import numpy as np
from mlxd import blas, gemv_forward
blas.maybe_reexec_with_openblas()
import mlx.core as mx
import mlx.nn as nn
lib = ctypes.CDLL(None)
add, rem = lib.mlxd_gemv_shadow_add, lib.mlxd_gemv_shadow_remove
P = lambda a: ctypes.c_void_p(a.ctypes.data)
shadowed = lambda: ctypes.c_long.in_dll(lib, "mlxd_gemv_shadowed").value
def make(n, k, seed):
    w = mx.random.normal((n, k), key=mx.random.key(seed))
    packed, scales, biases = mx.quantize(w, group_size=32, bits=4)
    scales, biases = scales.astype(mx.float16), biases.astype(mx.float16)
    floats = mx.dequantize(packed, scales.astype(mx.float32), biases.astype(mx.float32),
                           group_size=32, bits=4)
    model = nn.Sequential(nn.Linear(k, n, bias=False))
    model.layers[0].weight = floats
    mx.eval(model.parameters())
    forms = {"layers.0": gemv_forward.Quantized(packed, scales, biases, 4, 32)}
    return model, gemv_forward.shadow(model, forms)
out = {}
# 1. Dropped mid-flight: products queued with async_eval, the model and its shadows dropped.
for it in range(3):
    model, sh = make(4096, 4096, it)
    y = mx.random.normal((1, 4096))
    for _ in range(60):
        y = model(y) * 1e-2
    mx.async_eval(y)
    time.sleep(0.002)
    del model, sh
    gc.collect()
    junk = [np.full(4096 * 2048, 0xFF, np.uint8) for _ in range(3)]  # the freed memory reused
    mx.eval(y)
out["in_flight"] = "survived"
# 2. Remove and add on one thread, products of the same matrix on another.
n, k = 512, 1024
A = np.ones((n, k), np.float32)
C = np.full((n, k), 2.0, np.float32)
def form(val):  # every weight = val: q = 0, scale 1, bias val
    return (np.zeros((n, k // 2), np.uint8), np.ones((n, k // 32), np.float32),
            np.full((n, k // 32), val, np.float32))
fa, fc = form(1.0), form(2.0)
sgemm = lib.cblas_sgemm
sgemm.argtypes = [ctypes.c_int] * 6 + [ctypes.c_float, ctypes.c_void_p, ctypes.c_int,
                  ctypes.c_void_p, ctypes.c_int, ctypes.c_float, ctypes.c_void_p, ctypes.c_int]
x, y = np.ones((1, k), np.float32), np.zeros((1, n), np.float32)
stop, counts = False, [0, 0]
def products():
    while not stop:
        sgemm(101, 111, 112, 1, n, k, 1.0, P(x), k, P(A), k, 0.0, P(y), n)
        counts[0] += 1
        counts[1] += int((y != k).any())
add(P(A), n, k, 4, 32, *map(P, fa))
t = threading.Thread(target=products)
t.start()
t0 = time.time()
while time.time() - t0 < 2:
    rem(P(A)); add(P(C), n, k, 4, 32, *map(P, fc)); rem(P(C)); add(P(A), n, k, 4, 32, *map(P, fa))
stop = True
t.join()
rem(P(A))
out["race"] = {"products": counts[0], "wrong": counts[1]}
# 3. A model dropped inside suspended(): its shadows must not come back on the way out.
model, sh = make(1536, 576, 1)
with sh.suspended():
    del model
    gc.collect()
out["restored_after_death"] = len(sh)
sh = None
gc.collect()
junk = [np.full(1536 * 576, 0x7F, np.uint8) for _ in range(4)]
model_b, sh_b = make(1536, 576, 2)
x = mx.random.normal((1, 576), key=mx.random.key(5))
before = shadowed()
on = np.array(model_b(x))
used = shadowed() - before
with sh_b.suspended():
    off = np.array(model_b(x))
out["next_model"] = {"used": used, "same": bool((on == off).all())}
# 4. One buffer, several shapes: one entry.
B = np.ones((4, 64), np.float32)
q, s, b = np.zeros(128, np.uint8), np.ones(8, np.float32), np.ones(8, np.float32)
out["one_entry"] = [add(P(B), 4, 64, 4, 32, P(q), P(s), P(b)),
                    add(P(B), 8, 32, 4, 32, P(q), P(s), P(b)),
                    add(P(B), 2, 128, 4, 32, P(q), P(s), P(b)), rem(P(B)), rem(P(B))]
# 5. 60 rounds of 211 matrices at new addresses, registered and removed: all get a slot.
q, s, b = np.zeros(16, np.uint8), np.zeros(1, np.float32), np.zeros(1, np.float32)
alive, rounds = [], []
for _ in range(60):
    mats = [np.zeros((1, 32), np.float32) for _ in range(211)]
    alive.extend(mats)
    rounds.append(sum(add(P(m), 1, 32, 4, 32, P(q), P(s), P(b)) for m in mats))
    for m in mats:
        rem(P(m))
out["rounds"] = rounds
print(json.dumps(out))
"""


def test_the_registry_holds_under_drops_races_and_churn(tmp_path: Path) -> None:
    seen = run_child(tmp_path, REGISTRY)
    assert seen["in_flight"] == "survived"  # it segfaulted when the arrays went first
    assert seen["race"]["products"] > 100 and seen["race"]["wrong"] == 0, seen["race"]
    assert seen["restored_after_death"] == 0
    assert seen["next_model"] == {"used": 1, "same": True}, seen["next_model"]
    assert seen["one_entry"] == [1, 0, 0, 1, 0]
    assert seen["rounds"] == [211] * 60, seen["rounds"]
