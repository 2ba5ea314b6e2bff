"""`localai run`: greedy output equals transformers' greedy generate, token for token."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from tokenizers import Tokenizer

PROMPT = "the model reads a short note about rivers and 42 apples"


@pytest.mark.parametrize("fmt", ["gguf", "onnx"])
@pytest.mark.parametrize("name", ["nemotron_h", "nemotron_h_legacy", "llama", "qwen3", "nemotron3_moe",
                                  "nemotron3_latent", "nemotron3_mtp", "nemotron3_nano"])
def test_greedy_raw_run_matches_transformers_generate(name, fmt, cli, package, onnx_package, checkpoint, reference):
    folder = package(name, "f32") if fmt == "gguf" else onnx_package(name, "fp32")
    result = cli("run", str(folder), "--prompt", PROMPT, "--raw", "--temperature", "0",
                 "--max-tokens", "32", "--json")
    assert result.code == 0, result.err
    report = json.loads(result.out)

    source = checkpoint(name)
    tok = Tokenizer.from_file(str(source / "tokenizer.json"))
    prompt_ids = [tok.token_to_id("<s>"), *tok.encode(PROMPT, add_special_tokens=False).ids]
    manifest = json.loads((folder / "manifest.json").read_text())
    eos = manifest["tokenizer"]["eos_token_ids"]
    with torch.no_grad():
        out = reference(source).generate(torch.tensor([prompt_ids]), max_new_tokens=32, do_sample=False,
                                         eos_token_id=eos, pad_token_id=0)
    expected = out[0, len(prompt_ids):].tolist()

    assert report["usage"]["prompt_tokens"] == len(prompt_ids)
    assert report["usage"]["completion_tokens"] == 32 == len(expected)
    assert report["tokens"] == expected
    assert report["finish_reason"] == "length"


def test_chat_run_applies_template_and_streams_text(cli, package):
    import localai

    result = cli("run", str(package("nemotron_h", "f32")), "--prompt", "hi there", "--no-think", "--max-tokens", "8",
                 "--seed", "3")
    assert result.code == 0, result.err
    assert result.err == ""
    again = cli("run", str(package("nemotron_h", "f32")), "--prompt", "hi there", "--no-think", "--max-tokens", "8",
                "--seed", "3", "--json")
    report = json.loads(again.out)
    assert report["content"] + "\n" == result.out  # same seed, same text
    model = localai.load(package("nemotron_h", "f32"))
    rendered = model.render([{"role": "system", "content": "/no_think"}, {"role": "user", "content": "hi there"}])
    assert rendered.endswith("<|user|>hi there<|end|>\n<|assistant|><think></think>")
    assert report["usage"]["prompt_tokens"] == len(model.tokenize_prompt(rendered))
    model.close()


def test_run_reports_bad_model_in_one_line(cli, tmp_path):
    bogus = tmp_path / "model.gguf"
    bogus.write_bytes(b"GGUF but not really")
    result = cli("run", str(bogus), "--prompt", "hi")
    assert result.code == 1
    assert result.err.count("\n") == 1 and result.err.startswith("error: ")
    missing = cli("run", "no-such-model", "--prompt", "hi")
    assert missing.code == 1 and "no model 'no-such-model'" in missing.err


@pytest.mark.parametrize(("args", "fragment"), [
    (("run", "x" * 300, "--prompt", "hi"), "File name too long"),
    (("info", "x" * 300), "File name too long"),
    (("run", "MODEL", "--prompt", "hi", "--temperature", "nan"), "temperature must be >= 0, got nan"),
    (("run", "MODEL", "--prompt", "hi", "--repeat-penalty", "nan"), "repetition_penalty must be > 0, got nan"),
    (("run", "MODEL", "--prompt", "hi", "--seed", "-1"), "seed must be a whole number from 0"),
    (("run", "MODEL", "--prompt", "hi", "--threads", "100000"), "threads must be at most"),
])
def test_hostile_options_are_one_line(cli, package, args, fragment):
    args = tuple(str(package("nemotron_h", "q8_0")) if a == "MODEL" else a for a in args)
    result = cli(*args)
    assert result.code == 1, result.err
    assert result.err.count("\n") == 1 and result.err.startswith("error: ") and fragment in result.err, result.err


def test_a_prompt_that_is_not_utf8_is_a_usage_error(package):
    """Bytes that are not UTF-8 in argv, as a shell passes them."""
    result = subprocess.run([sys.executable, "-m", "localai.cli", "run", str(package("nemotron_h", "q8_0")),
                             "--prompt", b"caf\xe9"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.startswith("error: argument --prompt: not valid UTF-8 text"), result.stderr


@pytest.mark.parametrize("verb", ["run", "chat"])
def test_help_states_the_defaults_that_are_used(cli, verb):
    from localai.options import package_options

    text = " ".join(cli(verb, "--help").out.split())
    fallback = package_options({})
    assert f"(default: the model's, else {fallback.max_tokens})" in text
    assert f"(default: the model's, else {fallback.sampling.temperature})" in text
    assert f"(default: the model's, else {fallback.sampling.top_p})" in text
    assert package_options({"max_new_tokens": 256}).max_tokens == 256  # "the model's" wins when it has one


@pytest.mark.parametrize("typo, suggestion", [("rnu", "did you mean run?"), ("chta", "did you mean chat?"),
                                              ("zzzz", "the commands are convert, run,")])
def test_a_misspelled_command_gets_a_suggestion(cli, typo, suggestion):
    result = cli(typo, "model")
    assert result.code == 2 and result.out == ""
    assert result.err.startswith(f"error: unknown command '{typo}': {suggestion}")
    assert len(result.err.strip().splitlines()) == 1
