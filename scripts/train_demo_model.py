"""Train the demo model: a small Nemotron-H (Mamba2 + attention + MLP) that adds multi-digit numbers,
thinking column by column in <think> blocks first (Nemotron Nano 2's /think and /no_think conventions).

Run once by a developer, not by tests or CI (PyTorch on CPU, deterministic seed):

    .venv/bin/python scripts/train_demo_model.py [--steps 1000] [--out localai/data/demo-model]

The shipped model is that run (stage 1), then a short second stage from its weights that also teaches
answers in JSON when the question asks for them ("What is 12 + 34? Reply in JSON." -> `{"sum": 46}`),
so that structured output can be shown and measured on it:

    .venv/bin/python scripts/train_demo_model.py --init localai/data/demo-model --steps 400 --lr 1e-3 \
        --json-share 0.3 --seed 4321

Training mixes four kinds of example, all from localai.tasks.arithmetic:
- thinking on: the full trace, then the answer;
- thinking off: the answer straight away;
- a thought cut short by the engine (a reasoning budget): a random prefix of the trace, the
  end-of-thinking text the engine appends, then the answer; the loss covers only the answer, so the model
  learns to answer from a partial thought without learning to stop thinking early;
- both switches in the system prompt or in the user message;
and, with --json-share, that share of questions asks for JSON and is answered `{"sum": N}`.
It then evaluates the trained model with transformers on held-out problems and writes the checkpoint,
tokenizer, chat template, generation defaults and scores.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import time
from collections.abc import Iterator
from pathlib import Path

import torch
import transformers

from localai.chat_template import render
from localai.demo_model import CHAT_TEMPLATE, save_tokenizer, train_tokenizer
from localai.tasks import arithmetic

SEED = 1234
CONFIG = {
    "hidden_size": 256, "layers_block_type": ["linear_attention", "mlp", "linear_attention", "full_attention",
                                              "linear_attention", "mlp", "linear_attention", "full_attention",
                                              "linear_attention", "mlp"],
    "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 64, "intermediate_size": 512,
    "mamba_num_heads": 8, "mamba_head_dim": 64, "ssm_state_size": 32, "n_groups": 2, "conv_kernel": 4,
    "chunk_size": 64, "max_position_embeddings": 4096, "tie_word_embeddings": False, "use_conv_bias": True,
}
GENERATION = {"temperature": 0.0, "top_p": 1.0, "max_new_tokens": 256}
MIX = {"think": 0.55, "no_think": 0.25, "cut": 0.20}
EARLIER_TURNS = {0: 0.3, 1: 0.2, 2: 0.2, 3: 0.15, 4: 0.15}  # questions already answered in the conversation
END_OF_THINKING = "\n</think>\n\n"
SWITCHES = ("/think", "/no_think")
JSON_REQUEST = " Reply in JSON."  # appended to a question that wants `{"sum": N}`


def history(problems: list[arithmetic.Problem], rng: random.Random, switches: bool) -> list[dict[str, str]]:
    """Earlier turns of a conversation: questions (with a random switch now and then when `switches`) and
    right answers, stored with their thought as the engine stores them (the template drops it)."""
    messages = []
    for problem in problems:
        switch = f" {rng.choice(SWITCHES)}" if switches and rng.random() < 0.3 else ""
        thought = f"<think>\n{problem.thought}{END_OF_THINKING}" if rng.random() < 0.7 else ""
        messages += [{"role": "user", "content": problem.question + switch},
                     {"role": "assistant", "content": thought + problem.answer}]
    return messages


def prompt_text(problem: arithmetic.Problem, think: bool, rng: random.Random,
                earlier: list[arithmetic.Problem] = (), *, json_answer: bool = False) -> str:
    """The rendered conversation up to the model's turn; the last switch decides the mode (as in the
    template), so it sits in the system prompt only when no earlier question carries one."""
    switch = SWITCHES[0] if think else SWITCHES[1]
    in_system = rng.random() < 0.5
    messages = [{"role": "system", "content": switch}] if in_system else []
    messages += history(list(earlier), rng, switches=not in_system)
    question = problem.question + (JSON_REQUEST if json_answer else "")
    messages.append({"role": "user", "content": question if in_system else f"{question} {switch}"})
    text = render(CHAT_TEMPLATE, messages, bos_token="<s>")
    assert text.endswith("<think>\n" if think else "<think></think>")
    return text


def json_reply(problem: arithmetic.Problem) -> str:
    return json.dumps({"sum": problem.a + problem.b})


def example(rng: random.Random, tok, json_share: float = 0.0) -> tuple[list[int], list[int]]:
    """(input ids, labels) for one training example; -100 marks tokens without loss (the loss covers the
    last answer only: earlier turns are context)."""
    earlier = [arithmetic.random_problem(rng)
               for _ in range(rng.choices(list(EARLIER_TURNS), weights=list(EARLIER_TURNS.values()))[0])]
    problem = arithmetic.random_problem(rng)
    kind = rng.choices(list(MIX), weights=list(MIX.values()))[0]
    in_json = json_share > 0 and rng.random() < json_share
    prompt = tok.encode(prompt_text(problem, kind != "no_think", rng, earlier, json_answer=in_json),
                        add_special_tokens=False).ids
    reply = json_reply(problem) if in_json else problem.answer
    answer = tok.encode(reply + "<|end|>", add_special_tokens=False).ids
    if kind == "think":
        given, learned = [], tok.encode(problem.thought + END_OF_THINKING, add_special_tokens=False).ids + answer
    elif kind == "no_think":
        given, learned = [], answer
    else:
        thought = tok.encode(problem.thought, add_special_tokens=False).ids
        given = thought[: rng.randint(0, len(thought) - 1)] + tok.encode(END_OF_THINKING, add_special_tokens=False).ids
        learned = answer
    ids = prompt + given + learned
    return ids, [-100] * (len(prompt) + len(given)) + learned


def batches(rng: random.Random, tok, size: int, pad: int, pool: int = 8, json_share: float = 0.0,
            ) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor, float]]:
    """Batches of `size` examples, drawn `pool` batches at a time and grouped by length, so that little
    time goes into padding (conversation lengths vary fourfold), each with the weight that keeps every
    learned token's share of the gradient what it would be in mixed batches: grouping puts most
    no-thinking examples (a few learned tokens each) together, and without the weight those batches
    would count as much as batches of whole traces."""
    while True:
        examples = sorted((example(rng, tok, json_share) for _ in range(size * pool)), key=lambda e: len(e[0]))
        groups = [examples[i : i + size] for i in range(0, len(examples), size)]
        learned = [sum(y != -100 for _, labels in group for y in labels) for group in groups]
        mean = sum(learned) / pool
        order = list(range(pool))
        rng.shuffle(order)
        for i in order:
            yield (*tensors(groups[i], pad), learned[i] / mean)


def tensors(examples: list[tuple[list[int], list[int]]], pad: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    size, width = len(examples), max(len(ids) for ids, _ in examples)
    ids = torch.full((size, width), pad, dtype=torch.long)
    labels = torch.full((size, width), -100, dtype=torch.long)
    mask = torch.zeros((size, width), dtype=torch.long)
    for i, (x, y) in enumerate(examples):  # right padding: causal, so real tokens never see the pads
        ids[i, : len(x)], labels[i, : len(y)], mask[i, : len(x)] = torch.tensor(x), torch.tensor(y), 1
    return ids, labels, mask


def tokenizer_corpus(rng: random.Random) -> list[str]:
    texts = []
    for _ in range(3000):
        problem, earlier = arithmetic.random_problem(rng), [arithmetic.random_problem(rng)]
        texts.append(prompt_text(problem, True, rng, earlier) + problem.thought + END_OF_THINKING + problem.answer)
    return texts


@torch.no_grad()
def answer(model, tok, prompt: str) -> tuple[str, str]:
    """(thought, answer) the model gives greedily to a rendered prompt."""
    ids = tok.encode(prompt, add_special_tokens=False).ids
    out = model.generate(torch.tensor([ids]), max_new_tokens=GENERATION["max_new_tokens"], do_sample=False,
                         eos_token_id=tok.token_to_id("<|end|>"), pad_token_id=0)
    text = tok.decode(out[0, len(ids):].tolist(), skip_special_tokens=False)
    thought, _, reply = text.rpartition("</think>")
    return thought, reply.replace("<|end|>", "").strip()


def accuracy(model, tok, problems: list[arithmetic.Problem], think: bool, json_answer: bool = False) -> float:
    """Single questions, each in a new conversation (asking for JSON: right only as the exact JSON reply)."""
    rng = random.Random(0)
    right = 0
    for p in problems:
        reply = answer(model, tok, prompt_text(p, think, rng, json_answer=json_answer))[1]
        right += reply == json_reply(p) if json_answer else arithmetic.is_correct(reply, p)
    return right / len(problems)


def conversation_accuracy(model, tok, conversations: list[list[arithmetic.Problem]]) -> list[float]:
    """Accuracy at each question after the first, thinking on, with the model's own earlier answers (thought
    included, as the engine stores them) in the history."""
    right = [0] * (len(conversations[0]) - 1)
    for problems in conversations:
        messages: list[dict[str, str]] = []
        for i, problem in enumerate(problems):
            messages.append({"role": "user", "content": problem.question})
            thought, reply = answer(model, tok, render(CHAT_TEMPLATE, messages, bos_token="<s>"))
            messages.append({"role": "assistant", "content": f"<think>{thought}</think>\n\n{reply}"})
            if i:
                right[i - 1] += arithmetic.is_correct(reply, problem)
    return [r / len(conversations) for r in right]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--eval", type=int, default=100, help="held-out problems per mode, and conversations")
    parser.add_argument("--out", type=Path, default=Path("localai/data/demo-model"))
    parser.add_argument("--init", type=Path, help="start from this checkpoint and its tokenizer (a second stage)")
    parser.add_argument("--json-share", type=float, default=0.0, help="share of questions that ask for JSON")
    parser.add_argument("--seed", type=int, default=SEED)
    args = parser.parse_args()
    started = time.perf_counter()
    torch.manual_seed(args.seed)
    torch.set_num_threads(2)
    rng = random.Random(args.seed)

    if args.init:
        from tokenizers import Tokenizer

        tok = Tokenizer.from_file(str(args.init / "tokenizer.json"))
        model = transformers.NemotronHForCausalLM.from_pretrained(args.init, dtype=torch.float32)
    else:
        tok = train_tokenizer(160, individual_digits=True, corpus=tokenizer_corpus(rng))
        config = transformers.NemotronHConfig(vocab_size=tok.get_vocab_size(), bos_token_id=tok.token_to_id("<s>"),
                                              eos_token_id=tok.token_to_id("<|end|>"), pad_token_id=0, **CONFIG)
        model = transformers.NemotronHForCausalLM(config)
    params = sum(p.numel() for p in model.parameters())
    print(f"{params / 1e6:.2f}M parameters, vocabulary {tok.get_vocab_size()}", flush=True)
    train(model, tok, rng, args, started)

    model.eval()
    held_out = arithmetic.problems(args.eval)
    scores = {"thinking": accuracy(model, tok, held_out, True), "no_thinking": accuracy(model, tok, held_out, False),
              "later_questions_thinking": conversation_accuracy(model, tok, arithmetic.conversations(args.eval))}
    if args.json_share:
        scores["json_thinking"] = accuracy(model, tok, held_out, True, json_answer=True)
    minutes = (time.perf_counter() - started) / 60
    print(f"held-out accuracy over {args.eval}: {scores}; {minutes:.1f} min in all", flush=True)
    record = {"seed": args.seed, "steps": args.steps, "batch": args.batch, "lr": args.lr, "json_share": args.json_share,
              "parameters": params, "minutes": round(minutes, 1), "held_out_problems": args.eval,
              "held_out_accuracy": scores, "torch": torch.__version__, "transformers": transformers.__version__}
    if args.init:  # the stage this one started from
        record["init"] = json.loads((args.init / "training.json").read_text())
    write(args.out, model, tok, record)


def train(model, tok, rng: random.Random, args: argparse.Namespace, started: float) -> None:
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.01, betas=(0.9, 0.98))
    warmup = max(1, args.steps // 20)

    def schedule(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, args.steps - warmup)))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    model.train()
    examples = batches(rng, tok, args.batch, pad=0, json_share=args.json_share)
    for step, (ids, labels, mask, weight) in zip(range(args.steps), examples, strict=False):
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        optimizer.zero_grad(set_to_none=True)
        (loss * weight).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        if step % 50 == 0 or step == args.steps - 1:
            elapsed = time.perf_counter() - started
            print(f"step {step} loss {loss.item():.4f} lr {scheduler.get_last_lr()[0]:.2e} {elapsed / 60:.1f} min",
                  flush=True)


def write(out: Path, model, tok, training: dict) -> None:
    """Checkpoint, tokenizer, generation defaults and the training record, written only once training and
    evaluation are done (the shipped model stays whole until then)."""
    out.mkdir(parents=True, exist_ok=True)
    save_tokenizer(tok, out)
    model.save_pretrained(out)
    (out / "generation_config.json").write_text(json.dumps(
        {**GENERATION, "do_sample": False, "eos_token_id": [tok.token_to_id("<|end|>")],
         "bos_token_id": tok.token_to_id("<s>"), "pad_token_id": 0}, indent=2) + "\n")
    (out / "training.json").write_text(json.dumps(training, indent=2) + "\n")


if __name__ == "__main__":
    main()
