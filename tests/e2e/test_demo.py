"""`mlxd demo` (what `make demo` runs) ends quietly: no "the model is still busy" warning at
its exit. The demo's inline completion used to start the work ahead (the next suggestion, in the
background), which was still decoding when the demo shut the daemon down. Real daemon, a slow
tiny model (a decode step long enough to be caught at exit).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.kit import daemon_env, write_config

pytestmark = [pytest.mark.timeout(300), pytest.mark.slow]


def test_the_demo_exits_without_a_busy_warning(tmp_path: Path, slow_tiny_model: Path) -> None:
    # The random model never ends a line: whole_lines off, so the completion is not empty.
    cfg = write_config(
        tmp_path / "demo.toml",
        f'[local]\nmodel = "{slow_tiny_model}"\n[inline]\nwhole_lines = false\n',
    )
    r = subprocess.run(
        [sys.executable, "-m", "mlxd", "demo", "--config", str(cfg)],
        env=daemon_env({"MLXD_LOG_LEVEL": "WARNING"}),
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert "--- inline completion" in r.stdout, r.stdout
    assert "still busy" not in r.stderr, r.stderr
    assert r.stderr.strip() == "", r.stderr
