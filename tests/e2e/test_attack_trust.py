"""Attack round (issue #15 follow-up): inputs a hostile repository, provider or a mistaken
config could use against mlxd's two promises, through the real daemon over stdio with loopback
fake providers that count bytes. Findings are strict xfails ("attack: ..."); inputs that did
not break anything are plain tests guarding against regressions."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import pytest_asyncio
from lsprotocol import types as T
from pygls.exceptions import JsonRpcException

from tests.conftest import daemon, write_config
from tests.fakes.providers import FakeProvider, Reply

from .conftest import fresh_session

# The module's loop: the key-echo tests share a daemon (`echo`); the others each start their own
# (open excluded documents and taint are per process: one test's would make another's vacuous).
pytestmark = pytest.mark.asyncio(loop_scope="module")

KEY = "sk-attack+15/Zq9xW3vT7rK2mN8pL4=="
ENV_TEXT = "API_TOKEN=sk-live-5f2c9a8e7d6b\nDB_PASSWORD=hunter2-but-longer\n"


# No local model is asked for: not loading one in the background keeps these daemons light.
NO_PRELOAD = "[local]\npreload = false\n"


def config(tmp_path: Path, url: str, extra: str = "", local: str = NO_PRELOAD) -> Path:
    return write_config(
        tmp_path / "m.toml",
        f"""{local}
[backends.cloud]
protocol = "openai"
base_url = "{url}"
api_key_env = "ATTACK_KEY"
model = "gpt-test"
[routing]
cloud = true
chat = ["cloud"]
complete = ["cloud"]
max_retries = 0
{extra}
""",
    )


def msg(role: str, content: str) -> dict:
    return {"role": role, "content": content}


async def chat(s, messages: list[dict], uri: str | None = None):
    params: dict = {"messages": messages, "maxTokens": 3}
    if uri:
        params["textDocument"] = {"uri": uri}
    try:
        return await s.request("mlxd/chat", params)
    except JsonRpcException as exc:
        return exc


def did_open(s, uri: str, text: str, language: str = "python") -> None:
    s.client.text_document_did_open(
        T.DidOpenTextDocumentParams(
            T.TextDocumentItem(uri=uri, language_id=language, version=1, text=text)
        )
    )


def frames(s, *results) -> str:
    """Everything the client saw: results/errors, progress, statuses, log and show messages."""
    seen = [repr(r) for r in results]
    seen += [json.dumps(v, default=str) for v in s.progress.values()]
    seen += [json.dumps(v, default=str) for v in s.statuses]
    seen += [m.message for m in s.messages] + s.logs
    return "\n".join(seen)


# --- excluded documents: address spellings -------------------------------------------------


async def test_spellings_of_an_excluded_file_send_zero_bytes(tmp_path):
    """Percent-encoding, case, `..`, `//`, an authority, a notebook cell, a backslash path, a
    `file:` URI through a symlinked directory and a symlinked file: all stay local."""
    repo = tmp_path / "repo"
    (repo / "secrets").mkdir(parents=True)
    (repo / "secrets" / "key.txt").write_text("TOKEN=abc\n")
    (repo / "link").symlink_to(repo / "secrets")
    (repo / "readme.md").symlink_to(repo / "secrets" / "key.txt")
    uris = [
        "file:///p/%2Eenv",
        "file:///p/.en%76",
        "FILE:///P/.ENV",
        "file:///p/x/../.env",
        "file:///p//.env",
        "file://host/p/.env",
        "file:///p%2F.env",
        "file:///p/.env#frag",
        "file:///p/.env?x=1",
        "file:///C%3A/p/secrets/a.txt",
        "file:///p/%5Csecrets%5Ca.txt",
        "untitled:/p/.env",
        "vscode-notebook-cell:/p/secrets/nb.ipynb#W0",
        f"file://{repo}/link/key.txt",
        f"file://{repo}/readme.md",
        f"vscode-notebook-cell:{repo}/link/nb.ipynb#W1",
    ]
    async with FakeProvider(require_key=KEY) as fake:
        async with daemon(config(tmp_path, fake.openai_url), env={"ATTACK_KEY": KEY}) as s:
            for uri in uris:
                await chat(s, [msg("user", "Explain this file please, in detail")], uri)
                assert fake.bytes_received == 0, uri
            # inline from an excluded spelling too
            for uri in uris[:4]:
                did_open(s, uri, ENV_TEXT)
            # and the cloud really is reachable for an ordinary file
            r = await chat(s, [msg("user", "hello there, ordinary question")], "file:///p/app.py")
            assert fake.request_count == 1, r


async def test_git_scheme_uri_through_a_symlink_stays_local(tmp_path):
    repo = tmp_path / "repo"
    (repo / "secrets").mkdir(parents=True)
    (repo / "secrets" / "key.txt").write_text("TOKEN=abc\n")
    (repo / "docs").symlink_to(repo / "secrets")  # the repo ships this link
    uri = f"git:{repo}/docs/key.txt?%7B%22ref%22%3A%22HEAD%22%7D"
    async with FakeProvider(require_key=KEY) as fake:
        async with daemon(config(tmp_path, fake.openai_url), env={"ATTACK_KEY": KEY}) as s:
            await chat(s, [msg("user", "Explain this selection:\nTOKEN=abc")], uri)
    assert fake.bytes_received == 0


# --- taint / content rule -----------------------------------------------------------------


async def test_excluded_text_in_complete_prefix_and_split_messages_stays_local(tmp_path):
    async with FakeProvider(require_key=KEY) as fake:
        async with daemon(config(tmp_path, fake.openai_url), env={"ATTACK_KEY": KEY}) as s:
            did_open(s, "file:///p/.env", ENV_TEXT)
            try:
                await s.request(
                    "mlxd/complete",
                    {"prefix": "# config\nAPI_TOKEN=sk-live-5f2c9a8e7d6b\n", "maxTokens": 3},
                )
            except JsonRpcException:
                pass
            lines = ENV_TEXT.splitlines()
            await chat(s, [msg("user", lines[0]), msg("assistant", "ok"), msg("user", lines[1])])
            # leading/trailing whitespace and CRLF around a quoted line
            await chat(s, [msg("user", "look:\r\n\t  " + lines[1] + "  \r\n")])
            # a follow-up of a tainted conversation re-sent with different outer whitespace
            first = msg("user", "Explain this file:\n" + ENV_TEXT)
            await chat(s, [first], "file:///p/.env")
            await chat(s, [msg("user", "\n\n" + first["content"] + "\n\n"), msg("user", "why?")])
            assert fake.bytes_received == 0


async def test_system_message_quoting_an_open_excluded_document_stays_local(tmp_path):
    async with FakeProvider(require_key=KEY) as fake:
        async with daemon(config(tmp_path, fake.openai_url), env={"ATTACK_KEY": KEY}) as s:
            did_open(s, "file:///p/.env", ENV_TEXT)
            system = msg("system", "Project context:\n" + ENV_TEXT)
            await chat(s, [system, msg("user", "Which settings look unused?")])
    assert fake.bytes_received == 0


async def test_tainted_history_folded_into_a_system_message_stays_local(tmp_path):
    first = "Explain this file:\n" + ENV_TEXT
    async with FakeProvider(require_key=KEY) as fake:
        async with daemon(config(tmp_path, fake.openai_url), env={"ATTACK_KEY": KEY}) as s:
            await chat(s, [msg("user", first)], "file:///p/.env")  # not opened: taint only
            await chat(s, [msg("system", first), msg("user", "Summarise the conversation so far")])
    assert fake.bytes_received == 0


# --- a hostile provider echoing the key ------------------------------------------------------


# The tests of this part hold no document open and taint nothing: they share one daemon (and its
# fake provider, reset for each), whose breaker never opens (a failure of one test must not keep
# the next one's request from the provider: each checks that its request got there).
@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def echo_rig(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[tuple[Any, Any]]:
    async with FakeProvider(require_key=KEY) as fake:
        cfg = config(tmp_path_factory.mktemp("echo"), fake.openai_url, "breaker_failures = 1000")
        async with daemon(cfg, env={"ATTACK_KEY": KEY}) as s:
            yield s, fake


@pytest_asyncio.fixture(loop_scope="module")
async def echo(echo_rig: tuple[Any, FakeProvider]) -> AsyncIterator[tuple[Any, FakeProvider]]:
    s, fake = echo_rig
    await fake.quiet()
    fake.reset()
    yield fresh_session(s), fake
    await fake.quiet()


@pytest.mark.parametrize("split", [False, True], ids=["whole", "split-across-sse-chunks"])
async def test_key_echoed_as_model_output_is_redacted(echo, split):
    pieces = ["Your key: " + KEY[:9], KEY[9:] + " ok"] if split else [f"Your key: {KEY} ok"]
    s, fake = echo
    fake.enqueue(Reply.text(pieces))
    r = await chat(s, [msg("user", "hello, ordinary question here")])
    seen = frames(s, r)
    assert fake.request_count == 1
    assert KEY not in seen.replace('", "', "")


ENCODINGS = {
    "url-encoded": quote(KEY, safe=""),
    "base64": base64.b64encode(KEY.encode()).decode(),
    "json-escaped-in-broken-json": json.dumps(KEY, ensure_ascii=False).replace("sk", "\\u0073k"),
}


@pytest.mark.parametrize("enc", list(ENCODINGS))
async def test_encoded_key_echo_in_error_is_redacted(echo, enc):
    echoed = ENCODINGS[enc]
    body = f'{{"error": {{"message": "bad key {echoed}"' if "json" in enc else f"bad key {echoed}"
    s, fake = echo
    fake.enqueue(Reply.status(401, body=body))
    r = await chat(s, [msg("user", "hello, ordinary question here")])
    seen = frames(s, r)
    assert fake.request_count == 1
    assert echoed not in seen


@pytest.mark.parametrize("code", [300, 301, 304, 307, 308, 399])
async def test_odd_redirect_statuses_are_errors_not_followed(echo, code):
    s, fake = echo
    async with FakeProvider() as target:
        fake.enqueue(Reply.status(code, body=f"go to {target.openai_url}"))
        r = await chat(s, [msg("user", "hello, ordinary question here")])
        seen = frames(s, r)
    assert fake.request_count == 1  # the provider got it (the breaker stayed out of it)
    assert isinstance(r, JsonRpcException), r
    assert target.bytes_received == 0 and KEY not in seen


# --- a mistaken config: the key itself pasted where the env-var name goes ---------------------

PASTED = "sk-proj-Pasted0123456789abcdef"


def pasted_config(tmp_path: Path, url: str) -> Path:
    path = config(tmp_path, url).with_name("pasted.toml")
    path.write_text(config(tmp_path, url).read_text().replace('"ATTACK_KEY"', f'"{PASTED}"'))
    path.chmod(0o600)
    return path


async def test_key_pasted_into_api_key_env_is_not_echoed(tmp_path):
    import os
    import subprocess
    import sys

    # The file is refused, so the daemon and `mlxd doctor` fall back to the defaults and load the
    # embedded model (seconds each, beside the point here): an absent one fails at once.
    no_model = {"MLXD_EMBEDDED_GGUF": str(tmp_path / "absent.gguf")}
    async with FakeProvider() as fake:
        cfg = pasted_config(tmp_path, fake.openai_url)
        async with daemon(cfg, env=no_model) as s:
            r = await chat(s, [msg("user", "hello, ordinary question here")])
            seen = frames(s, r)
        doctor = subprocess.run(
            [sys.executable, "-m", "mlxd", "doctor", "--config", str(cfg)],
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, **no_model},
        )
    assert fake.bytes_received == 0
    assert PASTED not in seen + doctor.stdout + doctor.stderr


# --- secrets in URLs, headers and the editor's hand-over: every other frame --------------------

URL_PW = "urlPass0123456789"
QUERY_KEY = "qKey0123456789abcd"
HEADER_KEY = "hdrKey0123456789ab"
HANDED = "sk-handed-0123456789abcd"


async def test_url_header_and_handed_over_keys_stay_out_of_models_stats_status(tmp_path):
    async with FakeProvider() as fake:
        root = fake.openai_url.replace("http://", f"http://ana:{URL_PW}@")
        path = write_config(
            tmp_path / "k.toml",
            f"""
[backends.cloud]
protocol = "openai"
base_url = "{root}?api_key={QUERY_KEY}"
model = "gpt-test"
api_key_env = "ATTACK_KEY"
headers = {{ "X-Api-Key" = "{HEADER_KEY}" }}
[backends.other]
protocol = "anthropic"
base_url = "{fake.anthropic_url}"
model = "claude-test"
[routing]
cloud = true
chat = ["cloud", "other"]
max_retries = 0
""",
        )
        path.chmod(0o600)
        # the query-string base_url 404s at the fake (documented: unsupported); `other` echoes
        fake.enqueue(Reply.status(401, body=f"{URL_PW} {QUERY_KEY} {HEADER_KEY} {KEY} {HANDED}"))
        async with daemon(path, env={"ATTACK_KEY": KEY}) as s:
            results = []
            for params in (
                {"backend": "other", "apiKey": HANDED},
                {"backend": "nope", "apiKey": HANDED},
                {"backend": "other", "apiKey": HANDED, "persist": "yes"},
                {"backend": 1, "apiKey": HANDED},
            ):
                try:
                    results.append(await s.request("mlxd/setApiKey", params))
                except JsonRpcException as exc:
                    results.append(exc)
            results.append(await chat(s, [msg("user", "hello, ordinary question here")]))
            results.append(await s.request("mlxd/models", {}))
            results.append(await s.request("mlxd/stats", {}))
            seen = frames(s, *results)
    assert fake.request_count == 1
    for secret in (URL_PW, QUERY_KEY, HEADER_KEY, KEY, HANDED):
        assert secret not in seen, secret


# --- timing: the workspace layer tightens between a 429 and its retry --------------------------


@pytest.mark.parametrize(
    "layer",
    [{"routing": {"exclude": ["**/notes/**"]}}, {"routing": {"cloud": False}}],
    ids=["exclude-added", "cloud-off"],
)
async def test_workspace_tightening_between_429_and_retry_holds(tmp_path, layer):
    import asyncio

    async with FakeProvider() as fake:
        user = {
            "backends": {"a": {"protocol": "openai", "base_url": fake.openai_url, "model": "m"}},
            "routing": {"cloud": True, "chat": ["a"], "max_retries": 2},
        }
        fake.enqueue(Reply.status(429, retry_after=1.5))
        async with daemon(init_options=user) as s:
            params = {
                "messages": [msg("user", "a private question here")],
                "maxTokens": 2,
                "textDocument": {"uri": "file:///p/Notes/today.md"},
            }
            _, answer = s.start("mlxd/chat", params)
            while fake.request_count < 1:
                await asyncio.sleep(0.01)
            s.client.workspace_did_change_configuration(
                T.DidChangeConfigurationParams(settings={**user, "workspace": layer})
            )
            try:
                await answer
            except JsonRpcException:
                pass
    assert fake.request_count == 1


# --- limits of the content and taint rules -----------------------------------------------------


async def test_quote_from_deep_in_an_open_excluded_document_stays_local(tmp_path):
    text = "".join(f"# padding line number {n:05d}\n" for n in range(5001))
    text += "PRIVATE_SIGNING_KEY=deep-secret-0123456789\n"
    async with FakeProvider(require_key=KEY) as fake:
        async with daemon(config(tmp_path, fake.openai_url), env={"ATTACK_KEY": KEY}) as s:
            did_open(s, "file:///p/secrets/big.env", text)
            await chat(s, [msg("user", "Is this ok?\nPRIVATE_SIGNING_KEY=deep-secret-0123456789")])
    assert fake.bytes_received == 0


async def test_tainted_message_resent_with_crlf_stays_local(tmp_path):
    first = "Explain this file:\n" + ENV_TEXT
    async with FakeProvider(require_key=KEY) as fake:
        async with daemon(config(tmp_path, fake.openai_url), env={"ATTACK_KEY": KEY}) as s:
            await chat(s, [msg("user", first)], "file:///p/.env")
            resent = first.replace("\n", "\r\n")
            await chat(s, [msg("user", resent), msg("user", "and the DB one?")])
    assert fake.bytes_received == 0


# --- inline: the excluded document itself and as neighbour context -----------------------------


async def _inline(s, uri: str, line: int, character: int):
    try:
        return await s.client.text_document_inline_completion_async(
            T.InlineCompletionParams(
                text_document=T.TextDocumentIdentifier(uri),
                position=T.Position(line, character),
                context=T.InlineCompletionContext(trigger_kind=T.InlineCompletionTriggerKind(1)),
            )
        )
    except JsonRpcException as exc:
        return exc


async def test_inline_never_sends_excluded_text_under_any_spelling(tmp_path):
    repo = tmp_path / "repo"
    (repo / "secrets").mkdir(parents=True)
    (repo / "link").symlink_to(repo / "secrets")
    extra = "[inline]\nneighbor_snippets = true\nmax_ms = 20000\n"
    cfg = config(tmp_path, "URL", extra)
    async with FakeProvider(require_key=KEY) as fake:
        cfg.write_text(
            cfg.read_text()
            .replace("URL", fake.openai_url)
            .replace('complete = ["cloud"]', 'complete = ["cloud"]\ninline = ["cloud"]')
        )
        async with daemon(cfg, env={"ATTACK_KEY": KEY}) as s:
            secret_doc = "def signing_key():\n    return 'PRIVATE-0123456789abcdef'\n"
            spellings = [
                "file:///p/%2Eenv",
                "FILE:///P/.ENV",
                "file:///p/x/../secrets/a.py",
                f"file://{repo}/link/key.py",
            ]
            for uri in spellings:
                did_open(s, uri, secret_doc)
                await _inline(s, uri, 1, 11)
            assert fake.bytes_received == 0
            # A neighbour that may travel: sharing no line with the open excluded documents
            # (a quoted line would keep the request local, taint.inline_quotes).
            public = "def signing_key(kid):\n    return 'PUBLIC-MARKER-0123'\n"
            did_open(s, "file:///p/public_keys.py", public)
            did_open(s, "file:///p/app.py", "from keys import signing_key\n\nsig = sign")
            await _inline(s, "file:///p/app.py", 2, 10)
    assert fake.request_count >= 1  # the ordinary file did go to the cloud
    bodies = json.dumps([r.body for r in fake.requests])
    assert "PUBLIC-MARKER-0123" in bodies  # neighbour context does travel: the check can fail
    assert "PRIVATE-0123456789" not in bodies


# --- secrets in headers: the part a hostile server echoes back --------------------------------

BASIC_PW = "basicPw-0123456789"
HEADER_CASES = {
    # header name, configured value, what the hostile server echoes
    "basic-decoded": (
        "Authorization",
        "Basic " + base64.b64encode(f"ana:{BASIC_PW}".encode()).decode(),
        f"user ana password {BASIC_PW} rejected",
    ),
    "cookie-value": ("Cookie", "session=ckv-0123456789abcdef", "session ckv-0123456789abcdef"),
    "jwt-assertion": (
        "X-JWT-Assertion",
        "eyJhbGciOi.jwt-0123456789",
        "bad eyJhbGciOi.jwt-0123456789",
    ),
}


@pytest.mark.parametrize("case", list(HEADER_CASES))
async def test_header_secret_echoed_in_another_form_is_redacted(tmp_path, case):
    name, value, echo = HEADER_CASES[case]
    async with FakeProvider() as fake:
        path = write_config(
            tmp_path / "h.toml",
            f"""{NO_PRELOAD}
[backends.cloud]
protocol = "openai"
base_url = "{fake.openai_url}"
model = "gpt-test"
headers = {{ "{name}" = "{value}" }}
[routing]
cloud = true
chat = ["cloud"]
max_retries = 0
""",
        )
        path.chmod(0o600)
        fake.enqueue(Reply.status(401, body=echo))
        async with daemon(path) as s:
            r = await chat(s, [msg("user", "hello, ordinary question here")])
            seen = frames(s, r)
    assert fake.request_count == 1
    assert echo.split()[-2 if case == "basic-decoded" else -1] not in seen
