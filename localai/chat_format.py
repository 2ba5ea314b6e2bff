"""How one loaded model writes conversations as tokens: `ChatFormat`, built once per loaded model.

The chat engine (localai/chat.py) works from a backend and a ChatFormat, never from `Model`: the template,
BOS/EOS texts, reasoning markers, end-of-turn ids and tokenization all come from here, so the engine can
serve any caller (the CLI, the chat app, a server holding many models) and `Model` only composes the two.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from localai import chat_template
from localai.backends.base import Backend
from localai.package import KNOWN_THINK_TOKENS, Manifest, ThinkTokens
from localai.tools.spec import for_template


@dataclass(frozen=True)
class ChatFormat:
    """One loaded model's conversation format. `notices_shown` is the one mutable part: a notice about the
    model (no template, no reasoning markers) is shown once per loaded model."""

    name: str
    template: str | None  # None: the model ships none (FALLBACK_TEMPLATE renders)
    bos_token: str
    eos_token: str
    add_bos: bool
    thinking: ThinkTokens | None
    end_of_turn_ids: frozenset[int]  # besides the backend's own end-of-generation tokens
    backend: Backend  # tokenizes
    notices_shown: set[str] = field(default_factory=set, compare=False, repr=False)

    @classmethod
    def of(cls, manifest: Manifest, backend: Backend) -> ChatFormat:
        """The format of `manifest` on `backend`; reasoning markers the manifest lacks (a bare GGUF) are
        looked for in the vocabulary."""
        tok = manifest.tokenizer
        return cls(name=manifest.name, template=manifest.chat_template, bos_token=tok.get("bos_token") or "",
                   eos_token=tok.get("eos_token") or "", add_bos=bool(tok.get("add_bos", False)),
                   thinking=manifest.thinking or _think_tokens_in(backend),
                   end_of_turn_ids=frozenset(int(t) for t in tok.get("eos_token_ids", [])), backend=backend)

    def first_time(self, notice: str) -> bool:
        """True the first time `notice` is asked about for this loaded model."""
        new = notice not in self.notices_shown
        self.notices_shown.add(notice)
        return new

    def render(self, messages: list[dict[str, Any]], *, add_generation_prompt: bool = True, **variables: Any) -> str:
        """The conversation as the model's chat template writes it (the fallback template if it has none);
        past tool calls are given to the template as transformers gives them (localai/tools/spec.py)."""
        return chat_template.render(self.template or chat_template.FALLBACK_TEMPLATE, for_template(messages),
                                    add_generation_prompt=add_generation_prompt, bos_token=self.bos_token,
                                    eos_token=self.eos_token, **variables)

    def tokenize_prompt(self, text: str) -> list[int]:
        """Token ids of a rendered prompt: special-token texts map to their ids, BOS added once (the template
        may write the BOS text itself)."""
        add_bos = self.add_bos and not (self.bos_token and text.startswith(self.bos_token))
        return self.backend.tokenize(text, add_bos=add_bos, special=True)

    def tokenize_raw(self, text: str) -> list[int]:
        """Token ids of plain text: special-token texts stay text."""
        return self.backend.tokenize(text, add_bos=self.add_bos, special=False)

    @property
    def bos_id(self) -> int | None:
        """The token that starts every sequence, if the model wants one."""
        tokens = self.backend.tokenize("", add_bos=True, special=False) if self.add_bos else []
        return tokens[0] if tokens else None


def _think_tokens_in(backend: Backend) -> ThinkTokens | None:
    """Reasoning markers that the vocabulary holds as single tokens."""
    for pair in KNOWN_THINK_TOKENS:
        if all(len(backend.tokenize(text, add_bos=False, special=True)) == 1 for text in (pair.start, pair.end)):
            return pair
    return None
