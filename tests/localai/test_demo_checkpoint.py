"""The bundled demo model: its conversions answer as well as the original, and thinking pays."""

from __future__ import annotations

import pytest
import torch
import transformers
from tokenizers import Tokenizer

import localai
from localai.chat import _render
from localai.cli.demo import checkpoint
from localai.tasks import arithmetic
from localai.tasks.runner import score

SAMPLE = arithmetic.problems(50)  # the first 50 held-out problems: 1 problem = 2 points


CONVERSIONS = [("gguf", "f16"), ("gguf", "q8_0"), ("gguf", "q4_k_m"), ("onnx", "fp32"), ("onnx", "int4")]


@pytest.fixture(scope="module")
def packages(demo_package):
    return {quant: demo_package(to, quant) for to, quant in CONVERSIONS}


@pytest.fixture(scope="module")
def reference_accuracy(packages) -> float:
    """Accuracy of the checkpoint itself (transformers, float32) with thinking on, prompted exactly as the
    engine prompts it."""
    model = localai.load(packages["f16"])
    tok = Tokenizer.from_file(str(checkpoint() / "tokenizer.json"))
    hf = transformers.AutoModelForCausalLM.from_pretrained(checkpoint(), dtype=torch.float32).eval()
    end = tok.token_to_id("<|end|>")
    right = 0
    with torch.no_grad():
        for problem in SAMPLE:
            prompt, _, _ = _render(model, [{"role": "user", "content": problem.question}], True)
            ids = model.tokenize_prompt(prompt)
            out = hf.generate(torch.tensor([ids]), max_new_tokens=400, do_sample=False, eos_token_id=end,
                              pad_token_id=0)
            text = tok.decode(out[0, len(ids):].tolist(), skip_special_tokens=False)
            right += arithmetic.is_correct(text.split("</think>")[-1].replace("<|end|>", ""), problem)
    model.close()
    return right / len(SAMPLE)


def test_the_checkpoint_is_accurate_with_thinking(reference_accuracy):
    assert reference_accuracy >= 0.9


@pytest.mark.parametrize("quant", [quant for _, quant in CONVERSIONS])
def test_conversions_keep_accuracy_within_two_points(quant, packages, reference_accuracy):
    model = localai.load(packages[quant])
    result = score(model, arithmetic, SAMPLE, think=True, max_tokens=400)
    model.close()
    assert abs(result.accuracy - reference_accuracy) <= 0.02


def test_thinking_off_is_much_worse(packages):
    model = localai.load(packages["q8_0"])
    on = score(model, arithmetic, SAMPLE, think=True, max_tokens=400)
    off = score(model, arithmetic, SAMPLE, think=False, max_tokens=400)
    model.close()
    assert off.mean_reasoning_tokens == 0 and on.mean_reasoning_tokens > 20
    assert off.accuracy <= on.accuracy - 0.2
