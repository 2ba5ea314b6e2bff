"""How much a conversion changes a model's predictions: what `localai eval --reference` measures.

The text is cut into chunks of `ctx` tokens, as llama.cpp's `llama-perplexity` does: each chunk is
scored from a fresh state, and only the predictions in its second half count, so that every scored token
has at least ctx/2 tokens of context. Perplexity is exp(mean negative log-likelihood of the next token).
Against a reference on the same positions: KL(reference || model) of the next-token distributions,
top-1 agreement (same most likely token) and absolute logit differences.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from localai.errors import LocalAIError

DEFAULT_TEXT = "eval-text.txt"  # public-domain passages, in localai/data
DEFAULT_CONTEXT = 512

Scorer = Callable[[Sequence[int]], np.ndarray]  # tokens -> logits [len(tokens), n_vocab]


def default_text() -> str:
    return resources.files("localai").joinpath("data", DEFAULT_TEXT).read_text(encoding="utf-8")


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """Log-probabilities along the last axis, in float64."""
    x = logits.astype(np.float64)
    x = x - x.max(axis=-1, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=-1, keepdims=True))


def kl_divergence(reference_logits: np.ndarray, logits: np.ndarray) -> np.ndarray:
    """KL(reference || model) of the next-token distributions, one value per position."""
    return _kl(log_softmax(reference_logits), log_softmax(logits))


def _kl(p_log: np.ndarray, q_log: np.ndarray) -> np.ndarray:
    return np.maximum((np.exp(p_log) * (p_log - q_log)).sum(axis=-1), 0.0)  # rounding can dip below 0


def chunks(tokens: Sequence[int], ctx: int, bos: int | None) -> list[list[int]]:
    """Consecutive chunks of `ctx` tokens (with `bos` first in each, when the model wants one); the tail
    that does not fill a chunk is left out, unless the whole text is shorter than one chunk."""
    body = ctx - 1 if bos is not None else ctx
    if body < 2:
        raise LocalAIError(f"a context of {ctx} tokens is too small to score anything")
    if len(tokens) < 4:
        raise LocalAIError(f"the text has {len(tokens)} tokens; at least 4 are needed")
    size = min(body, len(tokens))
    starts = range(0, len(tokens) - size + 1, size)
    return [([bos] if bos is not None else []) + list(tokens[s : s + size]) for s in starts]


@dataclass
class QualityReport:
    """Scores over the scored positions of every chunk. Reference figures are None without a reference."""

    tokens: int
    ctx: int
    chunks: int
    scored: int
    perplexity: float
    reference_perplexity: float | None = None
    kl_mean: float | None = None
    kl_p99: float | None = None
    kl_max: float | None = None
    top1_agreement: float | None = None
    max_abs_logit_diff: float | None = None
    mean_abs_logit_diff: float | None = None
    model: str = ""
    reference: str | None = None
    text: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class _Totals:
    nll: list[np.ndarray] = field(default_factory=list)
    reference_nll: list[np.ndarray] = field(default_factory=list)
    kl: list[np.ndarray] = field(default_factory=list)
    agree: int = 0
    max_diff: float = 0.0
    sum_diff: float = 0.0
    n_diff: int = 0


def evaluate(model: Scorer, tokens: Sequence[int], *, ctx: int, bos: int | None, reference: Scorer | None = None,
             on_chunk: Callable[[], None] = lambda: None) -> QualityReport:
    """Perplexity of `model` on `tokens`, and its distance from `reference` when given (same vocabulary)."""
    pieces = chunks(tokens, ctx, bos)
    totals = _Totals()
    for chunk in pieces:
        first = len(chunk) // 2
        targets = np.asarray(chunk[first + 1 :])
        logits = _checked(model(chunk), len(chunk), "the model")[first:-1]
        log_p = log_softmax(logits)
        totals.nll.append(-log_p[np.arange(len(targets)), targets])
        if reference is not None:
            expected = _checked(reference(chunk), len(chunk), "the reference")[first:-1]
            if expected.shape != logits.shape:
                raise LocalAIError(f"the model and the reference have different vocabularies "
                                   f"({logits.shape[-1]} and {expected.shape[-1]} tokens)")
            ref_log_p = log_softmax(expected)
            totals.reference_nll.append(-ref_log_p[np.arange(len(targets)), targets])
            totals.kl.append(_kl(ref_log_p, log_p))
            totals.agree += int((expected.argmax(-1) == logits.argmax(-1)).sum())
            diff = np.abs(logits.astype(np.float64) - expected)
            totals.max_diff = max(totals.max_diff, float(diff.max()))
            totals.sum_diff += float(diff.sum())
            totals.n_diff += diff.size
        on_chunk()
    nll = np.concatenate(totals.nll)
    report = QualityReport(tokens=len(tokens), ctx=ctx, chunks=len(pieces), scored=len(nll),
                           perplexity=float(np.exp(nll.mean())))
    if reference is not None:
        kl = np.concatenate(totals.kl)
        report.reference_perplexity = float(np.exp(np.concatenate(totals.reference_nll).mean()))
        report.kl_mean, report.kl_p99, report.kl_max = float(kl.mean()), float(np.percentile(kl, 99)), float(kl.max())
        report.top1_agreement = totals.agree / len(nll)
        report.max_abs_logit_diff, report.mean_abs_logit_diff = totals.max_diff, totals.sum_diff / totals.n_diff
    return report


def _checked(logits: np.ndarray, n: int, who: str) -> np.ndarray:
    if logits.ndim != 2 or logits.shape[0] != n:
        raise LocalAIError(f"{who} returned logits of shape {logits.shape} for {n} tokens")
    if not np.isfinite(logits).all():
        raise LocalAIError(f"{who} produced non-finite logits (NaN or inf)")
    return logits


def is_checkpoint(path: Path) -> bool:
    """A Hugging Face checkpoint folder (config.json, no localai manifest)."""
    return path.is_dir() and (path / "config.json").is_file() and not (path / "manifest.json").is_file()


@dataclass
class TransformersReference:
    """A Hugging Face checkpoint run by transformers in float32: the numerical reference of a conversion."""

    folder: Path
    threads: int | None = None
    _model: Any = None

    def __post_init__(self) -> None:
        try:
            import torch
            import transformers
        except ImportError:
            raise LocalAIError(f"{self.folder} is a Hugging Face checkpoint: comparing against it needs "
                               "torch and transformers (pip install torch transformers)") from None
        if self.threads:
            torch.set_num_threads(self.threads)
        transformers.utils.logging.set_verbosity_error()  # its notices would break the one-line contract
        transformers.utils.logging.disable_progress_bar()
        if not any(self.folder.glob("*.safetensors")):
            raise LocalAIError(f"{self.folder} has no .safetensors weights (pickled weights are never loaded)")
        try:
            self._model = transformers.AutoModelForCausalLM.from_pretrained(
                self.folder, dtype=torch.float32, use_safetensors=True, trust_remote_code=False).eval()
        except (OSError, ValueError, KeyError) as exc:
            raise LocalAIError(f"transformers cannot load {self.folder}: {exc}") from exc

    def __call__(self, tokens: Sequence[int]) -> np.ndarray:
        import torch

        with torch.no_grad():
            out = self._model(torch.tensor([list(tokens)]), use_cache=False)
        return out.logits[0].float().numpy()

    def tokenize(self, text: str) -> list[int] | None:
        """The checkpoint's own tokenization of `text` (no special tokens), or None without a tokenizer.json."""
        path = self.folder / "tokenizer.json"
        if not path.is_file():
            return None
        from tokenizers import Tokenizer

        return Tokenizer.from_file(str(path)).encode(text, add_special_tokens=False).ids

