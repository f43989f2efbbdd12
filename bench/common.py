"""What every sub-benchmark shares: machine info, statistics, tables, result files, the BLAS the
processes use, and the three ways of talking to a model (mlxd over stdio, mlx_lm.server over
HTTP, raw mlx-lm in-process). The port, TOML and mlx_lm.server launcher are tests/kit.py's,
shared with the test suite.

Every number is measured on the client side (wall clock from sending a request to the first
streamed token, and to the end), because that is what an editor user feels. mlxd's own
server-side `timings` are recorded beside them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tests import kit

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results"
CACHE = REPO / "bench" / ".cache"  # exported model directories (git-ignored by its own file)
EMBEDDED = "smollm2-135m"
TINY = "tiny"  # alias: a small random llama written by mlxd.models.tiny (fast, meaningless text)
# Forwarded-vs-direct pairs for forwarding's verdict (`overhead`, `shared`) unless --runs says
# otherwise: its median moved by +-5 ms over 5 pairs at a noisy moment, for a 2 ms target.
FORWARDING_PAIRS = 12


# --- options shared by the sub-benchmarks ------------------------------------------------------
@dataclass
class Options:
    model: str = EMBEDDED
    runs: int | None = None  # None: each benchmark's own default
    warmup: int = 1
    max_tokens: int | None = None
    plot: bool = False
    verbose: bool = False
    quick: bool = False  # a few cases, for iteration (benchmarks that have a quick mode)

    def n(self, default: int) -> int:
        return self.runs if self.runs is not None else default


# --- statistics and output ----------------------------------------------------------------------
def summary(values: Sequence[float]) -> dict[str, Any]:
    """Median, min, max (and p95 when there are enough values) of a list of numbers."""
    vals = [float(v) for v in values if v is not None]
    if not vals:
        return {"n": 0, "median": None, "min": None, "max": None, "values": []}
    out: dict[str, Any] = {
        "n": len(vals),
        "median": statistics.median(vals),
        "min": min(vals),
        "max": max(vals),
        "values": vals,
    }
    if len(vals) >= 5:
        out["p95"] = percentile(vals, 95)
    return out


def percentile(values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile (no interpolation: every reported value was observed)."""
    vals = sorted(values)
    rank = max(1, min(len(vals), round(pct / 100 * len(vals) + 0.5)))
    return vals[rank - 1]


def ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b not in (None, 0) else None


def fmt(value: Any, unit: str = "", digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}{unit}"
    return f"{value}{unit}"


def fmt_stat(s: dict[str, Any], unit: str = "", digits: int = 1, scale: float = 1.0) -> str:
    """'123.4 (110.2-140.9)': median (min-max)."""
    if not s or s.get("median") is None:
        return "-"
    m, lo, hi = (s[k] * scale for k in ("median", "min", "max"))
    if s["n"] == 1:
        return f"{m:.{digits}f}{unit}"
    return f"{m:.{digits}f}{unit} ({lo:.{digits}f}-{hi:.{digits}f})"


def print_table(title: str, headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    cells = [[str(h) for h in headers]] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    line = "  ".join("-" * w for w in widths)
    print(f"\n{title}")
    print(line)
    for i, r in enumerate(cells):
        print(
            "  ".join(
                c.ljust(w) if j == 0 else c.rjust(w)
                for j, (c, w) in enumerate(zip(r, widths, strict=True))
            )
        )
        if i == 0:
            print(line)
    print(line)


def verdict(ok: bool | None) -> str:
    return {True: "PASS", False: "MISS", None: "n/a"}[ok]


def write_result(name: str, data: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    if isinstance(data.get("machine"), dict):  # how busy the machine was by the end
        data["machine"] = {**data["machine"], "loadavg_end": _loadavg()}
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(data, indent=2, default=_json_default) + "\n")
    return path


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "__dataclass_fields__"):
        return asdict(obj)
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON-serializable: {type(obj).__name__}")


def log(msg: str) -> None:
    print(f"  .. {msg}", flush=True)


# --- machine ------------------------------------------------------------------------------------
def machine_info() -> dict[str, Any]:
    """What the numbers were measured on. Load average tells how shared the machine was."""
    import importlib.metadata as md

    def version(dist: str) -> str | None:
        try:
            return md.version(dist)
        except md.PackageNotFoundError:
            return None

    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem_gb = None
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_gb = round(int(line.split()[1]) / 1024 / 1024, 1)
    if mem_gb is None and sys.platform == "darwin":
        with contextlib.suppress(Exception):
            out = subprocess.run(["sysctl", "-n", "hw.memsize"], capture_output=True, text=True)
            mem_gb = round(int(out.stdout) / 2**30, 1)
    try:
        import mlx.core as mx

        device = str(mx.default_device())
    except Exception:  # pragma: no cover - MLX missing is reported, not fatal here
        device = None
    commit = None
    with contextlib.suppress(Exception):
        out = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
        )
        commit = out.stdout.strip() or None
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "mem_gb": mem_gb,
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "mlx": version("mlx"),
        "mlx_lm": version("mlx-lm"),
        "mlxd": version("mlxd"),
        "llama_cpp_python": version("llama_cpp_python"),
        "device": device,
        "blas": process_blas(os.getpid()),
        "loadavg": _loadavg(),
        "git": commit,
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def _loadavg() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def print_machine(info: dict[str, Any]) -> None:
    print(
        f"machine: {info['cpu']}, {info['cores']} cores, {info['mem_gb']} GiB, {info['os']}, "
        f"Python {info['python']}, mlx {info['mlx']} ({info['device']}), mlx-lm {info['mlx_lm']}"
    )
    print(f"bench BLAS: {info['blas']}; load average at start: {info['loadavg']}")
    load, cores = (info["loadavg"] or [0.0])[0], info["cores"] or 1
    if load > 0.75 * cores:
        print(
            f"WARNING: the machine is busy (load {load} on {cores} cores): expect noisy numbers; "
            "compare the ratios, or rerun when it is quiet"
        )


# --- BLAS ---------------------------------------------------------------------------------------
_BLAS_LIBS = re.compile(r"lib(openblas|mkl_rt|mkl_core|blis|flexiblas)[^/]*\.so", re.I)
_REF_BLAS = re.compile(r"/libblas[^/]*\.so", re.I)


def process_blas(pid: int) -> str:
    """Which BLAS a running process has mapped: an optimized one (OpenBLAS, MKL, ...), or the
    reference BLAS the Linux mlx[cpu] wheel bundles. Read from /proc/PID/maps, so it is what
    the process really uses, not what it was asked to use."""
    if sys.platform == "darwin":
        return "Accelerate (macOS)"
    try:
        maps = Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return "unknown"
    paths = {line.split()[-1] for line in maps.splitlines() if ".so" in line}
    fast = sorted(p for p in paths if _BLAS_LIBS.search(p))
    if fast:
        forward = any("libmlxd_gemv_forward" in p for p in paths)  # mlxd/gemv_forward.py
        return f"optimized ({Path(fast[0]).name}" + (", mlxd few-row kernel)" if forward else ")")
    if any(_REF_BLAS.search(p) for p in paths):
        return "reference (mlx[cpu] bundled libblas: slow)"
    return "none mapped yet"


ORIGINAL_LD_ENV = "MLXD_BENCH_ORIGINAL_LD"  # blas.LD_VARS's values before reexec_with_blas (JSON)


def env_without_blas() -> dict[str, str]:
    """This process's environment as it was before the OpenBLAS preload (for a child that
    must run on the reference BLAS)."""
    from mlxd.blas import LD_VARS

    env = dict(os.environ)
    original = json.loads(env.pop(ORIGINAL_LD_ENV, "null") or "null")
    for key in LD_VARS:
        value = original.get(key) if original else None
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    env[NO_PRELOAD_ENV] = "1"  # and mlxd code in it must not re-exec with OpenBLAS either
    return env


NO_PRELOAD_ENV = "MLXD_NO_BLAS_PRELOAD"


def reexec_with_blas(argv: list[str], module: str = "bench") -> None:
    """Run this benchmark process under the same optimized BLAS `mlxd serve` preloads, so the
    raw mlx-lm baseline and mlx_lm.server (a child: it inherits the variables) compare like
    with like. Does nothing off Linux, when already done, or when mlxd finds no OpenBLAS."""
    if not sys.platform.startswith("linux") or os.environ.get("MLXD_BENCH_BLAS_DONE"):
        return
    try:
        from mlxd import blas
    except ImportError:
        print("bench: mlxd.blas not available; running with the default BLAS", file=sys.stderr)
        return
    if os.environ.get(blas.NO_PRELOAD_ENV):
        return  # the user turned the fast path off: measure both sides without it
    found = blas.preload()  # the libraries (and libgfortran shim) `mlxd serve` runs with
    if found is None:
        return
    env = {**os.environ, **blas.preload_env(os.environ, *found), "MLXD_BENCH_BLAS_DONE": "1"}
    env[ORIGINAL_LD_ENV] = json.dumps({k: os.environ.get(k) for k in blas.LD_VARS})
    sys.stdout.flush()
    os.execve(sys.executable, [sys.executable, "-m", module, *argv], env)


# --- models -------------------------------------------------------------------------------------
def _ensure_cache_dir() -> None:
    CACHE.mkdir(parents=True, exist_ok=True)
    ignore = CACHE / ".gitignore"
    if not ignore.exists():
        ignore.write_text("*\n")


def resolve_model(spec: str) -> str:
    """The model spec mlxd and the baselines load: `tiny` becomes a generated directory."""
    if spec != TINY:
        return spec
    _ensure_cache_dir()
    path = CACHE / "tiny"
    if not (path / "config.json").is_file():
        from mlxd.models.tiny import make_tiny_model

        log(f"writing the tiny random model to {path}")
        make_tiny_model(path)
    return str(path)


def model_label(spec: str) -> str:
    return "smollm2-135m (embedded GGUF)" if spec == EMBEDDED else spec


def export_mlx_dir(spec: str) -> Path:
    """An mlx-lm model directory for tools that need one (mlx_lm.server).

    A directory is used as is. Anything else (the embedded GGUF) is loaded exactly as mlxd
    loads it — `dequantize = "auto"`, decided under the same BLAS, since this process runs with
    the daemon's preload — and written out once under bench/.cache, so both sides run the same
    weights in the same dtype. The directory name says which form it holds.
    """
    path = Path(spec).expanduser()
    if path.is_dir():
        return path
    import dataclasses

    import mlx.nn as nn
    from mlx_lm.utils import save_config, save_model

    from mlxd.models import load_model

    lm = load_model(spec)  # the daemon's default: dequantize "auto"
    slug = re.sub(r"[^\w.-]+", "_", spec).strip("_")
    out = CACHE / f"{slug}-{'quantized' if lm.quantized else 'float'}-mlx"
    if (out / "config.json").is_file() and (out / ".complete").is_file():
        return out
    _ensure_cache_dir()
    log(f"exporting {spec} (as mlxd loads it) to {out} for mlx_lm.server; once")
    out.mkdir(parents=True, exist_ok=True)
    save_model(out, lm.model, donate_model=False)
    config = dataclasses.asdict(lm.model.args)
    eos = list(getattr(lm.tokenizer, "eos_token_ids", []) or [])
    if eos:
        config["eos_token_id"] = eos[0] if len(eos) == 1 else eos
    if lm.quantized:  # per-layer bits (GGUF Q4_1 keeps the embedding at 8 bits)
        layers = {
            name: {"group_size": m.group_size, "bits": m.bits, "mode": m.mode}
            for name, m in lm.model.named_modules()
            if isinstance(m, (nn.QuantizedLinear, nn.QuantizedEmbedding))
        }
        first = next(iter(layers.values()))
        config["quantization"] = {**first, **layers}
    save_config(config, out / "config.json")
    lm.tokenizer.save_pretrained(str(out))
    (out / ".complete").write_text(lm.source + "\n")
    return out


# --- timings of one streamed generation ---------------------------------------------------------
@dataclass
class Gen:
    """One streamed generation as the client saw it (seconds from sending the request)."""

    first_token_s: float | None
    total_s: float
    completion_tokens: int
    prompt_tokens: int | None = None
    text: str = ""
    backend: str | None = None
    server: dict[str, Any] = field(default_factory=dict)  # mlxd's own timings/attempts
    error: str | None = None

    @property
    def decode_tps(self) -> float | None:
        """Tokens after the first, over the time after the first (prefill excluded)."""
        if self.first_token_s is None or self.completion_tokens < 2:
            return None
        span = self.total_s - self.first_token_s
        return (self.completion_tokens - 1) / span if span > 0 else None

    @property
    def first_token_ms(self) -> float | None:
        return None if self.first_token_s is None else self.first_token_s * 1000


SETTLE_S = 0.3


async def settle() -> None:
    """A pause before each measured request. OpenBLAS threads spin for a while after their
    last call; on a few cores the spinning of the side that just ran slows the next one."""
    await asyncio.sleep(SETTLE_S)


def nonce() -> str:
    return uuid.uuid4().hex[:8]


# --- mlxd over stdio ----------------------------------------------------------------------------
def shared_env(runtime_dir: Path) -> dict[str, str]:
    """A Daemon's environment for forwarding to the shared daemon of `runtime_dir` (the
    benchmark's own: tests.kit.private_runtime, which stops it)."""
    return {"MLXD_SHARED": "1", "MLXD_RUNTIME_DIR": str(runtime_dir)}


class Daemon:
    """`mlxd serve` as a child process, spoken to over stdio exactly as an editor does."""

    def __init__(self, config: dict[str, Any], *, env: dict[str, str] | None = None) -> None:
        self.config = config
        # In-process unless `env` asks for the shared daemon (shared_env): a benchmark never
        # measures, or leaves running, the user's own daemon (issue #19 item 7).
        self.env = {"MLXD_LOG_LEVEL": "WARNING", "MLXD_SHARED": "0", **(env or {})}
        if self.env["MLXD_SHARED"] != "0" and not self.env.get("MLXD_RUNTIME_DIR"):
            raise ValueError("a shared-mode Daemon names its own MLXD_RUNTIME_DIR (shared_env)")
        self.client: Any = None
        self.statuses: list[dict[str, Any]] = []
        self.notes: list[tuple[str, Any]] = []
        self._ready = asyncio.Event()
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self.load_s: float | None = None

    async def __aenter__(self) -> Daemon:
        from mlxd.client import Client

        self._tmp = tempfile.TemporaryDirectory(prefix="mlxd-bench-")
        path = Path(self._tmp.name) / "mlxd.toml"
        kit.write_config(path, self.config)
        t0 = time.perf_counter()
        self.client = await Client.spawn(["--config", str(path)], env=self.env)
        self.client.on_notification = self._on_note
        await self.client.initialize()
        self._t0 = t0
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.client is not None:
            try:
                await asyncio.wait_for(self.client.shutdown(), 30)
            except Exception:
                with contextlib.suppress(ProcessLookupError):
                    self.client.proc.kill()
                await self.client.proc.wait()
        if self._tmp is not None:
            self._tmp.cleanup()

    @property
    def pid(self) -> int:
        return self.client.proc.pid

    def blas(self) -> str:
        return process_blas(self.pid)

    def _on_note(self, method: str, params: Any) -> None:
        self.notes.append((method, params))
        if method == "window/logMessage" and self.env.get("MLXD_LOG_LEVEL") == "DEBUG":
            print(f"{time.monotonic():.3f} {params.get('message')}", file=sys.stderr)  # asked for
        if method == "mlxd/status":
            self.statuses.append(params)
            if params.get("state") in ("ready", "degraded", "error"):
                self._ready.set()

    async def wait_ready(self, timeout: float = 600) -> None:
        await asyncio.wait_for(self._ready.wait(), timeout)
        state = self.statuses[-1]
        if state["state"] == "error":
            raise RuntimeError(f"mlxd could not load the model: {state.get('message')}")
        self.load_s = time.perf_counter() - self._t0

    async def reconfigure(self, settings: dict[str, Any]) -> None:
        """workspace/didChangeConfiguration with a full settings object (replaces the overlay)."""
        self.client.notify("workspace/didChangeConfiguration", {"settings": {"mlxd": settings}})
        await self.request("mlxd/models", {})  # a round trip: the notification has been applied

    async def request(self, method: str, params: Any) -> Any:
        return await self.client.request(method, params)

    async def stats(self) -> dict[str, Any] | None:
        """mlxd/stats counters, flattened: inline.* and local.* (summed over models), or None
        when this daemon does not have the method."""
        from mlxd.client import RpcError

        try:
            r = await self.client.request("mlxd/stats", {})
        except RpcError:
            return None
        out = {f"inline.{k}": v for k, v in (r.get("inline") or {}).items()}
        for model in (r.get("local") or {}).values():
            for k, v in model.items():
                out[f"local.{k}"] = out.get(f"local.{k}", 0) + v
        out["upstreamRequests"] = r.get("upstreamRequests", 0)
        return out

    async def chat(
        self,
        messages: list[dict[str, str]],
        max_tokens: int,
        *,
        temperature: float = 0.0,
        backend: str | None = None,
        on_delta: Callable[[float, str], None] | None = None,
    ) -> Gen:
        """mlxd/chat, streamed; first token = first $/progress delta, as an editor sees it."""
        params: dict[str, Any] = {
            "messages": messages,
            "maxTokens": max_tokens,
            "temperature": temperature,
        }
        if backend:
            params["backend"] = backend
        first: list[float] = []
        t0 = time.perf_counter()

        def progress(value: dict[str, Any]) -> None:
            now = time.perf_counter() - t0
            if value.get("delta") and not first:
                first.append(now)
            if on_delta is not None:
                on_delta(now, value.get("delta", ""))

        from mlxd.client import RpcError

        try:
            r = await self.client.request("mlxd/chat", params, on_progress=progress)
        except RpcError as exc:
            return Gen(None, time.perf_counter() - t0, 0, error=str(exc))
        total = time.perf_counter() - t0
        return Gen(
            first_token_s=first[0] if first else None,
            total_s=total,
            completion_tokens=r["usage"]["completionTokens"],
            prompt_tokens=r["usage"]["promptTokens"],
            text=r["text"],
            backend=r["backend"],
            server={"timings": r["timings"], "attempts": r["attempts"]},
        )


class Direct(Daemon):
    """A session of the shared daemon that `env` (shared_env) names, spoken to over its Unix
    socket directly, without the forwarder (`mlxd serve`) an editor starts: the same daemon
    process, model, OpenBLAS threads and KV cache as a forwarded window of it, so a paired
    comparison with one measures what the forwarder adds and nothing else (issue #19). The
    daemon must be up (a forwarded window started it)."""

    async def __aenter__(self) -> Direct:
        from mlxd import runtime
        from mlxd.client import Client

        self._tmp = tempfile.TemporaryDirectory(prefix="mlxd-bench-")
        path = Path(self._tmp.name) / "mlxd.toml"
        kit.write_config(path, self.config)
        socket_path = runtime.Paths.at(Path(self.env["MLXD_RUNTIME_DIR"])).socket
        t0 = time.perf_counter()
        reader, writer = await asyncio.open_unix_connection(str(socket_path), limit=1 << 24)
        window = {"env": {**os.environ, **self.env}, "cwd": os.getcwd(), "config": str(path)}
        writer.write(runtime.hello(window))
        self.client = Client(_SocketProcess(reader, writer))  # type: ignore[arg-type]
        self.client.on_notification = self._on_note
        await self.client.initialize()
        self._t0 = t0
        return self


class _SocketProcess:
    """What Client needs of a child process, for a Unix socket's streams."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.stdout, self.stdin = reader, writer
        self.pid = os.getpid()

    async def wait(self) -> int:
        while not self.stdout.at_eof():  # the daemon closes the session after `exit`
            await asyncio.sleep(0.01)
        self.stdin.close()
        return 0

    def kill(self) -> None:
        self.stdin.close()


def stats_delta(before: dict[str, Any] | None, after: dict[str, Any] | None) -> dict[str, Any]:
    """Counter increments between two Daemon.stats() snapshots ({} without mlxd/stats)."""
    if not before or not after:
        return {}
    return {k: v - before.get(k, 0) for k, v in after.items() if isinstance(v, (int, float))}


def local_config(model: str, **sections: dict[str, Any]) -> dict[str, Any]:
    """A config for the local model only (preloaded), with extra sections merged in."""
    cfg: dict[str, Any] = {"local": {"model": model, "preload": True}}
    for key, value in sections.items():
        cfg[key] = {**cfg.get(key, {}), **value}
    return cfg


# --- mlx_lm.server over HTTP --------------------------------------------------------------------
class MlxLmServer(kit.MlxLmServer):
    """`python -m mlx_lm.server` on loopback (tests/kit.py), with the same BLAS as this process,
    and a client session for its chat endpoint."""

    async def __aenter__(self) -> MlxLmServer:
        import aiohttp

        await super().__aenter__()
        self.session = aiohttp.ClientSession()
        return self

    async def __aexit__(self, *exc: object) -> None:
        with contextlib.suppress(Exception):
            await self.session.close()
        await super().__aexit__(*exc)

    def blas(self) -> str:
        return process_blas(self.proc.pid) if self.proc else "unknown"

    async def chat(self, messages: list[dict[str, str]], max_tokens: int) -> Gen:
        """/v1/chat/completions with stream=true; first token = first SSE chunk with content."""
        body = {
            "model": "default_model",
            "messages": messages,
            "max_tokens": max_tokens,
            "temperature": 0.0,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        t0 = time.perf_counter()
        first: float | None = None
        chunks = 0
        parts: list[str] = []
        usage: dict[str, Any] = {}
        async for event in sse_events(self.session, self.url + "/v1/chat/completions", body):
            if event.get("usage"):
                usage = event["usage"]
            for choice in event.get("choices") or []:
                text = (choice.get("delta") or {}).get("content")
                if text:
                    if first is None:
                        first = time.perf_counter() - t0
                    chunks += 1
                    parts.append(text)
        total = time.perf_counter() - t0
        return Gen(
            first_token_s=first,
            total_s=total,
            completion_tokens=int(usage.get("completion_tokens") or chunks),
            prompt_tokens=usage.get("prompt_tokens"),
            text="".join(parts),
            backend="mlx_lm.server",
        )


async def sse_events(session: Any, url: str, body: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
    """The JSON `data:` events of an OpenAI-style SSE stream, until [DONE]."""
    async with session.post(url, json=body) as r:
        if r.status != 200:
            raise RuntimeError(f"{url}: HTTP {r.status}: {(await r.text())[:300]}")
        buf = b""
        async for chunk in r.content.iter_any():
            buf += chunk
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                line = line.strip()
                if not line.startswith(b"data:"):
                    continue
                data = line[5:].strip()
                if data == b"[DONE]":
                    return
                yield json.loads(data)


# --- raw mlx-lm in-process ----------------------------------------------------------------------
class RawModel:
    """The baseline: the same model loaded the way mlxd loads it, generated with
    `mlx_lm.stream_generate` in this process, with nothing in between."""

    def __init__(self, spec: str) -> None:
        from mlx_lm.models.cache import LRUPromptCache

        from mlxd.models import load_model

        t0 = time.perf_counter()
        self.lm = load_model(spec)
        self.load_s = time.perf_counter() - t0
        # Same reuse policy as mlxd's local backend (see RawModel.chat).
        self.cache = LRUPromptCache(max_size=16)

    def chat_tokens(self, messages: list[dict[str, str]]) -> list[int]:
        tok = self.lm.tokenizer
        text = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        return list(tok.encode(text, add_special_tokens=False))

    def chat(self, messages: list[dict[str, str]], max_tokens: int, *, reuse: bool = True) -> Gen:
        """Greedy stream_generate. With `reuse`, the KV cache of earlier prompts is reused the
        way mlxd (and mlx_lm.server) reuse it, so both sides prefill the same tokens."""
        import mlx.core as mx
        from mlx_lm import stream_generate
        from mlx_lm.models.cache import make_prompt_cache, trim_prompt_cache
        from mlx_lm.sample_utils import make_sampler

        t0 = time.perf_counter()
        tokens = self.chat_tokens(messages)
        cache, rest = (None, tokens)
        if reuse:
            cache, rest = self.cache.fetch_nearest_cache("raw", tokens)
        if cache is None:
            cache = make_prompt_cache(self.lm.model)
        if not rest:
            trim_prompt_cache(cache, 1)
            rest = tokens[-1:]
        first = None
        generated: list[int] = []
        parts: list[str] = []
        for resp in stream_generate(
            self.lm.model,
            self.lm.tokenizer,
            mx.array(rest),
            max_tokens=max_tokens,
            sampler=make_sampler(temp=0.0),
            prompt_cache=cache,
        ):
            if first is None and resp.text:
                first = time.perf_counter() - t0
            generated.append(resp.token)
            parts.append(resp.text)
        total = time.perf_counter() - t0
        if reuse:
            held = cache[0].offset
            seq = tokens + generated
            if held > len(seq):
                trim_prompt_cache(cache, held - len(seq))
            self.cache.insert_cache("raw", seq[: min(held, len(seq))], cache)
        return Gen(
            first_token_s=first,
            total_s=total,
            completion_tokens=len(generated),
            prompt_tokens=len(tokens),
            text="".join(parts),
            backend="mlx-lm",
        )


# --- prompts ------------------------------------------------------------------------------------
def source_text(rel: str = "daemon/mlxd/router/core.py") -> str:
    return (REPO / rel).read_text()


def decode_prompt(tag: str) -> list[dict[str, str]]:
    """A short chat whose greedy answer runs long (so decode speed can be measured). `tag` at
    the very start makes each run's prompt new to every prompt cache but a few tokens."""
    return [
        {"role": "system", "content": f"[{tag}] You are a helpful assistant."},
        {
            "role": "user",
            "content": "Write a detailed, step-by-step guide to baking bread at home, "
            "with at least ten numbered steps.",
        },
    ]
