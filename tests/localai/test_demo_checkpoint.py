"""The bundled demo model: its conversions answer as well as the original, and thinking pays."""

from __future__ import annotations

import json

import pytest
import torch
import transformers
from tokenizers import Tokenizer

import localai
from localai import schemas
from localai.cli.demo import checkpoint
from localai.prompt import render
from localai.tasks import arithmetic
from localai.tasks.runner import greedy, score, score_conversations

SAMPLE = arithmetic.problems(50)  # the first 50 held-out problems: 1 problem = 2 points
CONVERSATIONS = arithmetic.conversations(20)  # 20 held-out chats of 4 questions: 60 follow-up questions


CONVERSIONS = [("gguf", "f16"), ("gguf", "q8_0"), ("gguf", "q4_k_m"), ("onnx", "fp32"), ("onnx", "int4")]


@pytest.fixture(scope="module")
def packages(demo_package):
    return {quant: demo_package(to, quant) for to, quant in CONVERSIONS}


@pytest.fixture(scope="module")
def reference_correct(packages) -> int:
    """How many problems of SAMPLE the checkpoint itself (transformers, float32) answers right with thinking
    on, prompted exactly as the engine prompts it."""
    model = localai.load(packages["f16"])
    tok = Tokenizer.from_file(str(checkpoint() / "tokenizer.json"))
    hf = transformers.AutoModelForCausalLM.from_pretrained(checkpoint(), dtype=torch.float32).eval()
    end = tok.token_to_id("<|end|>")
    right = 0
    with torch.no_grad():
        for problem in SAMPLE:
            prompt, _, _ = render(model.format, [{"role": "user", "content": problem.question}], True)
            ids = model.tokenize_prompt(prompt)
            out = hf.generate(torch.tensor([ids]), max_new_tokens=400, do_sample=False, eos_token_id=end,
                              pad_token_id=0)
            text = tok.decode(out[0, len(ids):].tolist(), skip_special_tokens=False)
            right += arithmetic.is_correct(text.split("</think>")[-1].replace("<|end|>", ""), problem)
    model.close()
    return right


def test_the_checkpoint_is_accurate_with_thinking(reference_correct):
    assert reference_correct >= 0.9 * len(SAMPLE)


@pytest.mark.parametrize("quant", [quant for _, quant in CONVERSIONS])
def test_conversions_keep_accuracy_within_two_points(quant, packages, reference_correct):
    model = localai.load(packages[quant])
    result = score(model, arithmetic, SAMPLE, greedy(model, think=True, max_tokens=400))
    model.close()
    assert abs(result.correct - reference_correct) <= 1  # 1 problem in 50 = 2 points (counts: no float rounding)


def test_thinking_off_is_much_worse(packages):
    model = localai.load(packages["q8_0"])
    on = score(model, arithmetic, SAMPLE, greedy(model, think=True, max_tokens=400))
    off = score(model, arithmetic, SAMPLE, greedy(model, think=False, max_tokens=400))
    model.close()
    assert off.mean_reasoning_tokens == 0 and on.mean_reasoning_tokens > 20
    assert off.accuracy <= on.accuracy - 0.2


def test_follow_up_questions_are_answered_as_well_as_the_first(packages):
    """In one chat, with the model's own earlier answers in the history (the template drops their thought),
    the 2nd to 4th questions are answered as well as a first one; without thinking they are not."""
    model = localai.load(packages["q8_0"])
    on = score_conversations(model, arithmetic, CONVERSATIONS, greedy(model, think=True, max_tokens=400))
    off = score_conversations(model, arithmetic, CONVERSATIONS[:10], greedy(model, think=False, max_tokens=400))
    model.close()
    later = sum(s.correct for s in on[1:]) / sum(s.problems for s in on[1:])
    assert later >= 0.95 and min(s.accuracy for s in on[1:]) >= 0.9
    assert sum(s.correct for s in off[1:]) / sum(s.problems for s in off[1:]) <= later - 0.2


def test_short_operands_are_in_the_task(packages):
    """1- and 2-digit sums are part of what the model learned (the task draws 1 to 6 digits)."""
    model = localai.load(packages["q8_0"])
    problems = [arithmetic.Problem(12, 34), arithmetic.Problem(7, 5), arithmetic.Problem(999, 1),
                arithmetic.Problem(5, 123456)]
    result = score(model, arithmetic, problems, greedy(model, think=True, max_tokens=400))
    model.close()
    assert result.correct == len(problems)


def test_answers_constrained_to_json_are_valid_and_as_right_as_free_ones(packages):
    """`{"sum": integer}` on 100 held-out problems: every constrained answer is valid JSON for the schema, and
    right as often as the free answer (within 2 points), asked for JSON or not (the thought stays free)."""
    schema = {"type": "object", "properties": {"sum": {"type": "integer"}}, "required": ["sum"],
              "additionalProperties": False}
    model = localai.load(packages["q8_0"])
    settings = {"temperature": 0, "think": True, "max_tokens": 400}
    free, right = 0, {"asked for JSON": 0, "bare question": 0}
    for problem in arithmetic.problems(100):
        free += arithmetic.is_correct(model.chat([{"role": "user", "content": problem.question}],
                                                 **settings).content, problem)
        for way, question in zip(right, (problem.question + " Reply in JSON.", problem.question), strict=True):
            final = model.chat([{"role": "user", "content": question}], constraint=schema, **settings)
            answer = json.loads(final.content)
            assert final.finish_reason == "stop" and schemas.problem(answer, schema) is None, final.content
            right[way] += answer["sum"] == problem.a + problem.b
    model.close()
    assert free >= 90 and all(abs(count - free) <= 2 for count in right.values()), (free, right)
