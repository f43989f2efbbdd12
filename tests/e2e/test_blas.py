"""The Linux CPU fast path: find the venv's OpenBLAS and re-exec with it preloaded, once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import numpy as np
import pytest

from mlxd import blas

pytestmark = [
    pytest.mark.skipif(sys.platform != "linux", reason="the preload is Linux-only"),
    pytest.mark.serial,  # compares matmul times
]

# Run as a child: re-exec (or not), then report what it sees. Appends a line to argv[1] at every
# start so that the test can count executions; reads stdin only after the re-exec.
CHILD = """
import json, os, sys, time
with open(sys.argv[1], "a") as f:
    f.write(f"{os.getpid()}\\n")
from mlxd import blas
blas.maybe_reexec_with_openblas()
import mlx.core as mx
import numpy as np
rng = np.random.default_rng(0)
a = mx.array(rng.standard_normal((512, 576), np.float32))
b = mx.array(rng.standard_normal((576, 1536), np.float32))
mx.eval(a @ b)
times = []
for _ in range(5):
    t = time.perf_counter()
    c = a @ b
    mx.eval(c)
    times.append(time.perf_counter() - t)
np.save(sys.argv[2], np.array(c))
print(json.dumps({
    "blas": blas.blas_in_use(),
    "maps": "libopenblas" in open("/proc/self/maps").read(),
    "stdin": sys.stdin.read(),
    "env": {k: os.environ.get(k) for k in ("LD_PRELOAD", "LD_LIBRARY_PATH", "MLXD_BLAS_REEXEC")},
    "ms": 1000 * min(times),
}))
"""


def run_child(tmp_path: Path, name: str, **env: str) -> tuple[dict, np.ndarray, int]:
    starts = tmp_path / f"{name}.starts"
    out = tmp_path / f"{name}.npy"
    base = {k: v for k, v in os.environ.items() if k not in ("MLXD_NO_BLAS_PRELOAD", "LD_PRELOAD")}
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(starts), str(out)],
        input="ping over stdin",
        capture_output=True,
        text=True,
        env=base | env,
        timeout=120,
        check=True,
    )
    return json.loads(done.stdout), np.load(out), len(starts.read_text().split())


def test_find_openblas_finds_the_venv_library() -> None:
    lib = blas.find_openblas()
    assert lib is not None
    expected = Path(sysconfig.get_paths()["purelib"]) / "cmeel.prefix/lib/libopenblas.so.0"
    assert lib == expected


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[dict, np.ndarray, int]]:
    tmp = tmp_path_factory.mktemp("blas")
    return {
        "preloaded": run_child(tmp, "fast"),
        "reference": run_child(tmp, "slow", MLXD_NO_BLAS_PRELOAD="1"),
    }


def test_reexec_preloads_openblas_once(runs) -> None:
    seen, _, starts = runs["preloaded"]
    assert seen["maps"] and seen["blas"].startswith(f"OpenBLAS ({blas.find_openblas()})")
    assert starts == 2  # the original process and one re-exec, not a loop


def test_no_blas_preload_env_keeps_reference_blas(runs) -> None:
    seen, _, starts = runs["reference"]
    assert not seen["maps"] and seen["blas"] == "reference BLAS bundled with mlx (slow)"
    assert starts == 1


def test_preloaded_matmul_gives_the_same_result(runs) -> None:
    (_, fast, _), (_, slow, _) = runs["preloaded"], runs["reference"]
    np.testing.assert_allclose(fast, slow, rtol=1e-4, atol=1e-3)
    assert np.abs(fast).max() > 10  # a real product, not zeros


def test_preloaded_matmul_is_much_faster(runs) -> None:
    """Field notes: 160 ms on reference BLAS against 3 ms preloaded (512x576 @ 576x1536)."""
    fast, slow = runs["preloaded"][0]["ms"], runs["reference"][0]["ms"]
    assert fast * 5 < slow, (fast, slow)


def test_reexec_leaves_stdin_and_child_environment_alone(runs) -> None:
    seen, _, _ = runs["preloaded"]
    assert seen["stdin"] == "ping over stdin"  # nothing read it before the exec
    # The LD_* variables are gone again, so the daemon's own children never inherit them.
    assert seen["env"] == {"LD_PRELOAD": None, "LD_LIBRARY_PATH": None, "MLXD_BLAS_REEXEC": None}


def test_reexec_restores_the_callers_own_ld_library_path(tmp_path: Path) -> None:
    seen, _, starts = run_child(tmp_path, "keep", LD_LIBRARY_PATH="/opt/nothing-here")
    assert seen["maps"] and starts == 2
    assert seen["env"]["LD_LIBRARY_PATH"] == "/opt/nothing-here"
