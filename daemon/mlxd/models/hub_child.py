"""A Hugging Face download in a child process that has one editor window's environment (the
shared daemon; issue #19 item 8, attack finding H).

huggingface_hub and the HTTP stack under it take their settings from the process environment,
several of them once, at import: HF_ENDPOINT, HF_HOME, HF_HUB_OFFLINE, HF_TOKEN, the proxy
(HTTP_PROXY, HTTPS_PROXY, ALL_PROXY, NO_PROXY), the CA bundle (SSL_CERT_FILE, SSL_CERT_DIR) and
more. In a daemon that serves many windows, that environment is the first window's: a second
window's download would go through the first window's proxy, with the second window's token.
Only a process of the window's own environment makes every one of them the window's. The
child runs this installation's code (the daemon's PYTHON* variables, not the window's).

    path = fetch_in(WindowEnv(env, cwd), "mlx-community/X-4bit", patterns, on_bytes, stop)

The child reports on stdout, one JSON object a line: {"bytes": [done, total]} as pieces arrive,
then {"path": ...} or {"error": message, "cancelled": bool}. It stops when its stdin closes
(`stop` set, or the daemon gone): huggingface_hub then deletes the partial file.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Callable, Mapping
from pathlib import Path

from ..errors import ModelError
from .hub_env import WindowEnv

STOP_POLL_S = 0.05


def child_env(window: Mapping[str, str]) -> dict[str, str]:
    """The window's environment, with the daemon's Python settings (PYTHONPATH, PYTHONHOME,
    ...) instead of the window's: the child must run the daemon's own mlxd."""
    env = {k: v for k, v in window.items() if not k.startswith("PYTHON")}
    env.update((k, v) for k, v in os.environ.items() if k.startswith("PYTHON"))
    return env


def fetch_in(
    window: WindowEnv,
    repo: str,
    patterns: list[str],
    on_bytes: Callable[[int, int], None],
    stop: threading.Event,
) -> Path:
    """download.fetch's contract, run in a child with the `window`'s environment, in its
    working directory (what no HUB_PATHS name reads relative paths as the window does too;
    the daemon's own, /, when that directory is gone)."""
    from .download import LoadCancelled

    cmd = [sys.executable, "-P", "-m", __name__, repo, json.dumps(patterns)]  # -P: host.py
    try:
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=child_env(window.env),
            cwd=window.cwd if window.cwd and os.path.isdir(window.cwd) else "/",
        )
    except OSError as exc:
        raise ModelError(f"cannot download {repo}: cannot start the download: {exc}") from exc
    assert proc.stdin is not None and proc.stdout is not None

    def stop_when_asked() -> None:
        while not stop.wait(STOP_POLL_S):
            if proc.poll() is not None:
                return
        proc.stdin.close()  # type: ignore[union-attr]

    threading.Thread(target=stop_when_asked, name="mlxd-download-stop", daemon=True).start()
    last: dict[str, object] = {}
    for line in proc.stdout:
        try:
            last = json.loads(line)
        except ValueError:
            continue
        if isinstance(done := last.get("bytes"), list):
            on_bytes(int(done[0]), int(done[1]))
    code = proc.wait()
    if isinstance(path := last.get("path"), str):
        return Path(path)
    message = last.get("error")
    if not isinstance(message, str):
        message = f"cannot download {repo}: the download process exited with {code}"
    raise (LoadCancelled if last.get("cancelled") or stop.is_set() else ModelError)(message)


def main(argv: list[str]) -> int:
    """In the child: fetch argv[0] (patterns argv[1], JSON) with this process's environment."""
    from .download import LoadCancelled, fetch

    repo, patterns = argv[0], json.loads(argv[1])
    stop = threading.Event()
    lock = threading.Lock()

    def say(msg: dict[str, object]) -> None:
        with lock:
            sys.stdout.write(json.dumps(msg) + "\n")
            sys.stdout.flush()

    def watch_stdin() -> None:
        while os.read(0, 1 << 10):
            pass
        stop.set()  # EOF: the daemon asked us to stop, or is gone
        from huggingface_hub import close_session

        close_session()  # a read blocked on a slow server fails now

    threading.Thread(target=watch_stdin, daemon=True).start()
    try:
        path = fetch(
            repo, on_bytes=lambda d, t: say({"bytes": [d, t]}), stop=stop, patterns=patterns
        )
    except LoadCancelled as exc:
        say({"error": exc.message, "cancelled": True})
        return 0
    except ModelError as exc:
        say({"error": exc.message, "cancelled": False})
        return 0
    say({"path": str(path)})
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
