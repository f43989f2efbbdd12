"""A fake Hugging Face Hub on 127.0.0.1 that serves one model repo from a local directory, slowly.

It answers just what `huggingface_hub.snapshot_download` (2.x, plain HTTP, no Xet) asks for:
  GET  /api/models/{repo}/revision/{rev}   repo info: `sha` (the commit) and `siblings`
  GET  /api/models/{repo}/tree/{rev}       the file list (path, size, oid, lfs for weights)
  HEAD /{repo}/resolve/{rev}/{file}        metadata: ETag, X-Repo-Commit, Content-Length
  GET  /{repo}/resolve/{rev}/{file}        the bytes, `chunk` at a time with `delay_s` between
                                           (Range: bytes=N- resumes, as after a cancel)
Any other repo id is a 404 with the Hub's `X-Error-Code: RepoNotFound`.

    async with FakeHub("mlx-community/tiny-4bit", tiny_model, delay_s=0.05) as hub:
        env = {"HF_ENDPOINT": hub.url, "HF_HOME": str(tmp_path / "hf")}
        ...
        hub.bytes_sent          # body bytes written so far (all files)
        hub.requests            # ("GET" | "HEAD", path) in arrival order
        hub.ranges              # (file, first byte) of every GET with a Range header (a resume)
        await hub.aborted.wait()  # a client went away mid-file (handler cancelled)

The daemon reads HF_ENDPOINT when it imports huggingface_hub, so pass it in the daemon's env.

By hand (to watch an editor's progress and cancel): `python -m tests.fakes.hf_hub [DIR]
[--repo R] [--delay S] [--port P]` serves DIR (default: a fresh tiny model) and prints
`READY <url>`; start the editor with HF_ENDPOINT=<url>, a throwaway HF_HOME and
`local.model = "R"`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import sys
import tempfile
from pathlib import Path

from aiohttp import web

COMMIT = "0123456789abcdef0123456789abcdef01234567"  # 40 hex digits, like a git commit


class FakeHub:
    def __init__(
        self,
        repo: str,
        directory: Path,
        *,
        chunk: int = 16 * 1024,
        delay_s: float = 0.0,
        api_delay_s: float = 0.0,
    ) -> None:
        self.repo = repo
        self.files = {p.name: p.read_bytes() for p in sorted(directory.iterdir()) if p.is_file()}
        self.chunk = chunk
        self.delay_s = delay_s
        self.api_delay_s = api_delay_s  # before answering repo info (a slow "resolving" phase)
        self.bytes_sent = 0
        self.requests: list[tuple[str, str]] = []
        self.ranges: list[tuple[str, int]] = []
        self.aborted_files: list[str] = []
        self.aborted = asyncio.Event()
        self.port = 0
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def total_bytes(self) -> int:
        return sum(len(b) for b in self.files.values())

    async def __aenter__(self) -> FakeHub:
        app = web.Application(middlewares=[self._record])
        app.router.add_get("/api/models/{org}/{name}/revision/{rev}", self._info)
        app.router.add_get("/api/models/{org}/{name}/tree/{rev}", self._tree)
        app.router.add_route("*", "/{org}/{name}/resolve/{rev}/{file}", self._resolve)
        self._runner = web.AppRunner(app, handler_cancellation=True, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port)
        await site.start()
        assert site._server is not None and site._server.sockets
        self.port = site._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    @web.middleware
    async def _record(self, request: web.Request, handler):  # type: ignore[no-untyped-def]
        self.requests.append((request.method, request.path))
        repo = f"{request.match_info.get('org')}/{request.match_info.get('name')}"
        if repo != self.repo:
            raise web.HTTPNotFound(
                headers={"X-Error-Code": "RepoNotFound"},
                text='{"error": "Repository not found"}',
                content_type="application/json",
            )
        return await handler(request)

    # --- endpoints ------------------------------------------------------------------------
    async def _info(self, request: web.Request) -> web.Response:
        await asyncio.sleep(self.api_delay_s)
        return web.json_response(
            {
                "_id": "0" * 24,
                "id": self.repo,
                "modelId": self.repo,
                "sha": COMMIT,
                "private": False,
                "siblings": [{"rfilename": name} for name in self.files],
            }
        )

    async def _tree(self, request: web.Request) -> web.Response:
        entries = []
        for name, data in self.files.items():
            entry = {"type": "file", "oid": _git_oid(data), "size": len(data), "path": name}
            if name.endswith(".safetensors"):
                entry["lfs"] = {"oid": _sha256(data), "size": len(data), "pointerSize": 134}
            entries.append(entry)
        return web.json_response(entries)

    async def _resolve(self, request: web.Request) -> web.StreamResponse:
        data = self.files.get(request.match_info["file"])
        if data is None:
            raise web.HTTPNotFound(headers={"X-Error-Code": "EntryNotFound"})
        name = request.match_info["file"]
        etag = _sha256(data) if name.endswith(".safetensors") else _git_oid(data)
        headers = {
            "ETag": f'"{etag}"',
            "X-Repo-Commit": COMMIT,
            "Accept-Ranges": "bytes",
            "Content-Type": "application/octet-stream",
        }
        start = _range_start(request.headers.get("Range"))
        if start and request.method == "GET":
            self.ranges.append((name, start))
        if request.method == "HEAD":
            headers["Content-Length"] = str(len(data))
            return web.Response(status=200, headers=headers)
        body = data[start:]
        headers["Content-Length"] = str(len(body))
        status = 200
        if start:
            status = 206
            headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
        response = web.StreamResponse(status=status, headers=headers)
        await response.prepare(request)
        try:
            for i in range(0, len(body), self.chunk):
                if self.delay_s:
                    await asyncio.sleep(self.delay_s)
                piece = body[i : i + self.chunk]
                await response.write(piece)
                self.bytes_sent += len(piece)
        except (asyncio.CancelledError, ConnectionResetError):
            self.aborted_files.append(name)
            self.aborted.set()
            raise
        await response.write_eof()
        return response


def _range_start(header: str | None) -> int:
    if not header or not header.startswith("bytes="):
        return 0
    first = header[len("bytes=") :].split("-", 1)[0]
    return int(first) if first.isdigit() else 0


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _git_oid(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


async def _main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.fakes.hf_hub")
    parser.add_argument("dir", nargs="?", type=Path, help="an mlx-lm model directory")
    parser.add_argument("--repo", default="mlx-community/tiny-mlxd-test-4bit")
    parser.add_argument("--delay", type=float, default=0.05, help="seconds per 16 kB piece")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    directory = args.dir
    if directory is None:
        from mlxd.models.tiny import make_tiny_model

        directory = make_tiny_model(Path(tempfile.mkdtemp()) / "model")
    hub = FakeHub(args.repo, directory, delay_s=args.delay)
    hub.port = args.port
    async with hub:
        print(f"READY {hub.url}", flush=True)
        await asyncio.Event().wait()


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_main(sys.argv[1:]))
