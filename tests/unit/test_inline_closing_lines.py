"""A closing line is not a duplicate of the closing line below it at another depth.

Seen cutting holes into Neovim's runtime/lua/vim/lsp/buf.lua (`request_with_opts`, nvim 0.11):
at `    en┃` the model's `d` makes `    end`, and the next line is `  end` (the outer `if`).
Comparing the lines without their indentation dropped the right answer; JS's `}` and `})`
and Python's `return` at two depths are the same kind.
"""

from __future__ import annotations

from mlxd.inline.postprocess import clean, drop_duplicate_of_next_line
from mlxd.prompts import context_at

BUF_LUA = (
    "local function request_with_opts(name, params, opts)\n"
    "  local req_handler --- @type function?\n"
    "  if opts then\n"
    "    req_handler = function(err, result, ctx, config)\n"
    "      local client = assert(lsp.get_client_by_id(ctx.client_id))\n"
    "      local handler = client.handlers[name] or lsp.handlers[name]\n"
    "      handler(err, result, ctx, vim.tbl_extend('force', config or {}, opts))\n"
    "    en"
)
BUF_LUA_AFTER = "\n  end\n  lsp.buf_request(0, name, params, req_handler)\nend\n"


def _ctx(before: str, after: str, language: str):  # noqa: ANN202
    return context_at(before + after, len(before), language=language)


def test_an_inner_end_above_an_outer_end_is_kept() -> None:
    ctx = _ctx(BUF_LUA, BUF_LUA_AFTER, "lua")
    assert clean("d", ctx) == "d"


def test_a_closing_brace_at_another_depth_is_kept() -> None:
    ctx = _ctx("function f(a) {\n  if (a) {\n    return 1;\n  ", "\n}\n", "javascript")
    assert drop_duplicate_of_next_line("}", ctx) == "}"


def test_the_same_line_at_the_same_depth_is_still_dropped() -> None:
    ctx = _ctx("  if opts then\n    x = 1\n  en", "\n  end\n", "lua")
    assert drop_duplicate_of_next_line("d", ctx) == ""
