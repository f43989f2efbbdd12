"""One notion of "this line opens a block" for the request (starts_block) and the cut
(postprocess.cut_at_dedent), Lua's and Ruby's words included.

Seen cutting holes into Neovim's runtime/lua/vim/lsp/buf.lua (`request_with_opts`, nvim 0.11):
the cut knew only `:`, `{`, `(`, `[`, so below `  if opts then` a suggestion ran on past the
block's `end` into the statements after it; and at the end of
`local function request_with_opts(name, params, opts)` no body of several lines was asked for.
"""

from __future__ import annotations

from mlxd.inline.postprocess import clean, cut_at_dedent
from mlxd.prompts import context_at, opens_block, starts_block

HEAD = (
    "local function request_with_opts(name, params, opts)\n"
    "  local req_handler --- @type function?\n"
    "  if opts then"
)
AFTER = "\n  lsp.buf_request(0, name, params, req_handler)\nend\n"


def test_lua_and_ruby_headers_open_blocks() -> None:
    for line in (
        "  if opts then",
        "  for _, client in ipairs(clients) do",
        "local function request_with_opts(name, params, opts)",
        "M.format = function(opts)",
        "function M:attach(bufnr)",
        "  else",
        "repeat",
        "def f():",
        "const f = (a) =>",
    ):
        assert opens_block(line), line


def test_calls_do_not_open_blocks() -> None:
    for line in ("  handler(err, result)", "foo(function(x) return x end)", "  x = y"):
        assert not opens_block(line), line


def test_a_lua_function_header_asks_for_its_body() -> None:
    text = "local function request_with_opts(name, params, opts)\nend\n"
    ctx = context_at(text, text.index("\n"), language="lua")
    assert starts_block(ctx)


def test_a_lua_block_ends_with_its_end() -> None:
    ctx = context_at(HEAD + AFTER, len(HEAD), language="lua")
    out = "\n    req_handler = nil\n  end\n  return req_handler"
    assert cut_at_dedent(out, ctx) == "\n    req_handler = nil\n  end"
    assert clean(out, ctx) == "\n    req_handler = nil\n  end"


def test_an_else_at_the_header_level_ends_the_body() -> None:
    ctx = context_at(HEAD + AFTER, len(HEAD), language="lua")
    out = "\n    req_handler = nil\n  else\n    req_handler = print"
    assert cut_at_dedent(out, ctx) == "\n    req_handler = nil"
