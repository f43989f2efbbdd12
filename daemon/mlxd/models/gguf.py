"""Import a llama-architecture GGUF file (the embedded SmolLM2) into mlx-lm, in-process.

`mx.load` reads GGUF natively: Q4_0/Q4_1/Q8_0 tensors come back as MLX-quantized triplets
(`.weight` uint32, `.scales`, `.biases`, group size 32), other tensors as float arrays, plus the
metadata (hyper-parameters, BPE vocabulary and merges, chat template). What is left to do here is
naming: GGUF tensor names -> mlx-lm's llama module names, metadata -> `ModelArgs`, and metadata ->
a `tokenizers` BPE tokenizer wrapped the way `mlx_lm.load` wraps one.

Scope: llama architecture with a GPT-2-style byte-level BPE vocabulary (SmolLM, Llama 3 and the
like). Other architectures or sentencepiece vocabularies raise `ModelError` naming what they are.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import mlx.core as mx
import mlx.nn as nn
from mlx_lm.models import llama
from mlx_lm.tokenizer_utils import BPEStreamingDetokenizer, TokenizerWrapper
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers, processors
from transformers import PreTrainedTokenizerFast

from mlxd.errors import ModelError

log = logging.getLogger(__name__)

GROUP_SIZE = 32  # every block quantization MLX keeps packed (Q4_0, Q4_1, Q8_0) uses 32-blocks

# Per-layer tensors: GGUF name -> mlx-lm llama module path (under model.layers.N).
_LAYER_NAMES = {
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "attn_norm": "input_layernorm",
    "ffn_norm": "post_attention_layernorm",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
}
_TOP_NAMES = {"token_embd": "model.embed_tokens", "output_norm": "model.norm", "output": "lm_head"}
# Tensors llama.cpp stores that the mlx-lm module computes itself.
_IGNORED = {"rope_freqs"}

# llama.cpp's pre-tokenizer names -> the split regex the merges were learned with
# (llama-vocab.cpp). "digits" marks vocabularies that split every digit on its own first.
_GPT2_SPLIT = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"
_LLAMA3_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
PRE_TOKENIZERS: dict[str, tuple[str, bool]] = {
    "default": (_GPT2_SPLIT, False),
    "gpt2": (_GPT2_SPLIT, False),
    "smollm": (_GPT2_SPLIT, True),
    "starcoder": (_GPT2_SPLIT, True),
    "refact": (_GPT2_SPLIT, True),
    "llama3": (_LLAMA3_SPLIT, False),
    "llama-v3": (_LLAMA3_SPLIT, False),
    "llama-bpe": (_LLAMA3_SPLIT, False),
}


def read(path: Path) -> tuple[dict[str, mx.array], dict[str, Any]]:
    """Tensors and metadata of a GGUF file; ModelError if it cannot be read."""
    try:
        return mx.load(str(path), return_metadata=True)
    except Exception as e:  # mlx raises RuntimeError/ValueError with a terse reason
        raise ModelError(f"cannot read GGUF file {path}: {e}") from e


def meta(md: dict[str, Any], key: str, default: Any = None) -> Any:
    """A metadata value as a plain Python value (scalars come back as 0-d mx.arrays)."""
    v = md.get(key, default)
    if isinstance(v, mx.array):
        return v.item() if v.ndim == 0 else v.tolist()
    return v


def model_args(md: dict[str, Any], tensors: dict[str, mx.array], source: Path) -> llama.ModelArgs:
    arch = meta(md, "general.architecture")
    if arch != "llama":
        raise ModelError(
            f"unsupported GGUF architecture {arch!r} in {source}: only 'llama' can be imported"
        )

    def get(key: str, default: Any = None) -> Any:
        return meta(md, f"llama.{key}", default)

    hidden = int(get("embedding_length"))
    heads = int(get("attention.head_count"))
    scaling = get("rope.scaling.type")
    rope_scaling = None
    if scaling == "linear":
        rope_scaling = {"type": "linear", "factor": float(get("rope.scaling.factor"))}
    elif scaling not in (None, "none"):
        raise ModelError(f"unsupported rope scaling {scaling!r} in {source}")
    vocab = get("vocab_size") or len(md.get("tokenizer.ggml.tokens", ()))
    return llama.ModelArgs(
        model_type="llama",
        hidden_size=hidden,
        num_hidden_layers=int(get("block_count")),
        intermediate_size=int(get("feed_forward_length")),
        num_attention_heads=heads,
        num_key_value_heads=int(get("attention.head_count_kv", heads)),
        head_dim=int(get("attention.key_length", hidden // heads)),
        rms_norm_eps=float(get("attention.layer_norm_rms_epsilon", 1e-5)),
        vocab_size=int(vocab),
        rope_theta=float(get("rope.freq_base", 10000.0)),
        # convert_hf_to_gguf permutes Q/K rows for llama.cpp's interleaved ("traditional") RoPE.
        rope_traditional=True,
        rope_scaling=rope_scaling,
        max_position_embeddings=get("context_length"),
        tie_word_embeddings="output.weight" not in tensors,
    )


def rename(tensors: dict[str, mx.array], source: Path) -> dict[str, mx.array]:
    """GGUF tensor names -> mlx-lm llama parameter names (suffix .weight/.scales/.biases kept)."""
    out: dict[str, mx.array] = {}
    for name, value in tensors.items():
        base, _, suffix = name.rpartition(".")
        if m := re.fullmatch(r"blk\.(\d+)\.(\w+)", base):
            module = _LAYER_NAMES.get(m.group(2))
            module = module and f"model.layers.{m.group(1)}.{module}"
        else:
            module = _TOP_NAMES.get(base)
        if module is None:
            if base in _IGNORED:  # Llama 3.1+ rope scaling: close enough below 8k tokens
                log.warning("ignoring GGUF tensor %s (%s)", name, source.name)
                continue
            raise ModelError(f"unexpected tensor {name!r} in {source}: not a llama weight")
        out[f"{module}.{suffix}"] = value
    return out


def quantization(weights: dict[str, mx.array]) -> dict[str, dict[str, int]]:
    """Module path -> {group_size, bits} for every packed triplet.

    Bits differ per tensor (Q4_1 files keep token_embd at 8 bits): read them off the shapes, as
    `in_dims = scales.shape[-1] * group_size` and `bits = weight.shape[-1] * 32 / in_dims`.
    """
    out = {}
    for key, scales in weights.items():
        if not key.endswith(".scales"):
            continue
        path = key.removesuffix(".scales")
        in_dims = scales.shape[-1] * GROUP_SIZE
        out[path] = {
            "group_size": GROUP_SIZE,
            "bits": weights[f"{path}.weight"].shape[-1] * 32 // in_dims,
        }
    return out


def build_model(args: llama.ModelArgs, weights: dict[str, mx.array], source: Path) -> nn.Module:
    model = llama.Model(args)
    quant = quantization(weights)
    nn.quantize(model, class_predicate=lambda path, _m: quant.get(path, False))
    try:
        model.load_weights(list(weights.items()), strict=True)
    except ValueError as e:
        raise ModelError(f"weights in {source} do not fit a llama model: {e}") from e
    model.eval()
    return model


def tokenizer_json(md: dict[str, Any], source: Path) -> Tokenizer:
    """A `tokenizers` byte-level BPE tokenizer from GGUF metadata (vocab, merges, specials)."""
    kind = meta(md, "tokenizer.ggml.model")
    if kind != "gpt2":
        raise ModelError(
            f"unsupported GGUF tokenizer {kind!r} in {source}: only byte-level BPE ('gpt2') "
            "vocabularies can be imported"
        )
    tokens: list[str] = md["tokenizer.ggml.tokens"]
    pre = meta(md, "tokenizer.ggml.pre", "default")
    if pre not in PRE_TOKENIZERS:
        log.warning("unknown GGUF pre-tokenizer %r in %s: using GPT-2's split", pre, source)
    types = meta(md, "tokenizer.ggml.token_type") or [1] * len(tokens)
    bos_id = meta(md, "tokenizer.ggml.bos_token_id")
    add_bos = meta(md, "tokenizer.ggml.add_bos_token", False) and bos_id is not None
    return byte_level_bpe(
        tokens,
        merges(md),
        special=[t for t, k in zip(tokens, types, strict=False) if k == 3],
        user_defined=[t for t, k in zip(tokens, types, strict=False) if k == 4],
        pre=pre,
        bos=tokens[bos_id] if add_bos else None,
    )


def merges(md: dict[str, Any]) -> list[tuple[str, str]]:
    return [tuple(m.split(" ", 1)) for m in md["tokenizer.ggml.merges"]]


def byte_level_bpe(
    tokens: list[str],
    merges: list[tuple[str, str]],
    *,
    special: list[str],
    user_defined: Sequence[str] = (),
    pre: str = "default",
    bos: str | None = None,
) -> Tokenizer:
    """A GPT-2-style byte-level BPE tokenizer; token i of `tokens` gets id i."""
    tok = Tokenizer(models.BPE({t: i for i, t in enumerate(tokens)}, merges, fuse_unk=False))
    split, digits = PRE_TOKENIZERS.get(pre, PRE_TOKENIZERS["default"])
    steps = [pre_tokenizers.Digits(individual_digits=True)] if digits else []
    steps += [
        pre_tokenizers.Split(Regex(split), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ]
    tok.pre_tokenizer = pre_tokenizers.Sequence(steps)
    tok.decoder = decoders.ByteLevel()
    # Control tokens must match whole: the pre-tokenizer would otherwise split "<|im_end|>".
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in special])
    if user_defined:
        tok.add_tokens([AddedToken(t, special=False, normalized=False) for t in user_defined])
    if bos is not None:
        tok.post_processor = processors.TemplateProcessing(
            single=f"{bos}:0 $A:0",
            pair=f"{bos}:0 $A:0 $B:1",
            special_tokens=[(bos, tokens.index(bos))],
        )
    return tok


def special_tokens(md: dict[str, Any]) -> dict[str, str]:
    """bos/eos/unk/pad token strings named by the GGUF metadata (for tokenizer_config)."""
    tokens = md["tokenizer.ggml.tokens"]
    out = {}
    for name, key in (("bos", "bos"), ("eos", "eos"), ("unk", "unknown"), ("pad", "padding")):
        token_id = meta(md, f"tokenizer.ggml.{key}_token_id")
        if token_id is not None and 0 <= token_id < len(tokens):
            out[f"{name}_token"] = tokens[token_id]
    return out


def wrap_tokenizer(tok: Tokenizer, md: dict[str, Any]) -> TokenizerWrapper:
    """The HF fast tokenizer + mlx-lm wrapper, as `mlx_lm.load` would build from tokenizer.json."""
    hf = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        chat_template=meta(md, "tokenizer.chat_template"),
        clean_up_tokenization_spaces=False,
        **special_tokens(md),
    )
    # End of turn can differ from end of text (Llama 3: <|eot_id|> vs <|end_of_text|>).
    ends = [meta(md, f"tokenizer.ggml.{k}_token_id") for k in ("eos", "eot")]
    return TokenizerWrapper(
        hf, BPEStreamingDetokenizer, eos_token_ids=[t for t in ends if t is not None] or None
    )
