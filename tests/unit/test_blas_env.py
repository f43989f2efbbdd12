"""The environment a preloading re-exec runs with (blas.preload_env): one builder for the
daemon's re-exec and the benchmarks' (bench/common.reexec_with_blas), so both run alike."""

from __future__ import annotations

from mlxd import blas, gemv_forward

OPENBLAS = "/venv/lib/libopenblas.so.0"
KERNEL = f"/cache/gemv-abc/{gemv_forward.NAME}"


def test_libraries_go_in_front_of_the_users_own() -> None:
    env = blas.preload_env(
        {"LD_PRELOAD": "/u/libx.so", "LD_LIBRARY_PATH": "/u/lib"}, OPENBLAS, "/shim"
    )
    assert env == {"LD_PRELOAD": f"{OPENBLAS}:/u/libx.so", "LD_LIBRARY_PATH": "/shim:/u/lib"}


def test_no_library_path_and_no_spin_setting_without_the_kernel() -> None:
    assert blas.preload_env({}, OPENBLAS, "") == {"LD_PRELOAD": OPENBLAS}


def test_the_kernel_brings_openblas_short_idle_spin_unless_the_user_set_it() -> None:
    libs = f"{KERNEL}:{OPENBLAS}"
    env = blas.preload_env({}, libs, "")
    assert env == {"LD_PRELOAD": libs, **gemv_forward.SPIN_ENV}
    mine = dict.fromkeys(gemv_forward.SPIN_ENV, "7")
    assert blas.preload_env(mine, libs, "") == {"LD_PRELOAD": libs}


def test_everything_it_sets_is_restored_after_the_reexec() -> None:
    env = blas.preload_env({}, f"{KERNEL}:{OPENBLAS}", "/shim")
    assert set(env) <= set(blas.LD_VARS)
