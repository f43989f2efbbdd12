"""The human commands report the daemon's refusal in one line, never a Python traceback
(new-user pass: `mlxd chat "hi" --backend nope` printed a traceback ending in RpcError)."""

import subprocess
import sys

import pytest

from tests.kit import daemon_env


@pytest.mark.timeout(120)
def test_chat_with_an_unknown_backend_is_one_line_and_exit_1(tiny_config):
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "mlxd",
            "chat",
            "hi",
            "--backend",
            "nope",
            "--config",
            str(tiny_config),
        ],
        capture_output=True,
        text=True,
        timeout=110,
        env=daemon_env(),
    )
    assert r.returncode == 1, r.stderr
    assert "Traceback" not in r.stderr, r.stderr
    line = [ln for ln in r.stderr.splitlines() if ln.startswith("mlxd chat:")]
    assert len(line) == 1 and "unknown backend 'nope'" in line[0] and "local" in line[0], r.stderr
