"""A chat history bound to a model: `Conversation.send` streams one answer and keeps it in the history."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from localai.errors import LocalAIError
from localai.events import Event, Final, Notice
from localai.files import write_text_atomic
from localai.options import ChatOptions, turn_settings

if TYPE_CHECKING:
    from localai.model import Model


@dataclass
class Conversation:
    """A chat history bound to a model: `send` streams one answer and keeps it in the history.

    Assistant turns are stored with their reasoning in think markers; the model's template decides
    whether earlier reasoning is shown to the model again. Each stored answer also carries the settings it
    was made with (`settings`: thinking, budget, sampling, max tokens), so a saved chat ties every answer
    back to the controls; templates never read that key.
    """

    model: Model
    options: ChatOptions  # every turn's, unless `send` is given others; `model.defaults` to start from
    system: str | None = None
    messages: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.system and not self.messages:
            self.messages.append({"role": "system", "content": self.system})

    def send(self, text: str, options: ChatOptions | None = None, *, cancel: threading.Event | None = None,
             **changes: Any) -> Iterator[Event]:
        """Stream the answer to `text` with `options` (default: the conversation's) and `changes` to them by
        name; once the answer is final (or cancelled: the partial answer), it joins the history."""
        yield from self._answer({"role": "user", "content": text}, options, cancel, changes)

    def pending_calls(self) -> list[dict[str, Any]]:
        """The last answer's tool calls that have no result yet, oldest first."""
        last = next((i for i in range(len(self.messages) - 1, -1, -1) if self.messages[i]["role"] == "assistant"), None)
        if last is None:
            return []
        answered = {m.get("tool_call_id") for m in self.messages[last + 1 :] if m["role"] == "tool"}
        return [call for call in self.messages[last].get("tool_calls", []) if call["id"] not in answered]

    def send_tool_result(self, content: str, options: ChatOptions | None = None, *,
                         cancel: threading.Event | None = None, **changes: Any) -> Iterator[Event]:
        """`content` is the result of the oldest pending tool call; once every call of the last answer has its
        result, the model answers (streamed, as `send`)."""
        pending = self.pending_calls()
        if not pending:
            raise LocalAIError("there is no tool call waiting for a result")
        result = {"role": "tool", "tool_call_id": pending[0]["id"], "name": pending[0]["function"]["name"],
                  "content": content}
        if len(pending) > 1:
            self.messages.append(result)
            return
        yield from self._answer(result, options, cancel, changes)

    def _answer(self, message: dict[str, Any], options: ChatOptions | None, cancel: threading.Event | None,
                changes: dict[str, Any]) -> Iterator[Event]:
        """Stream the answer to the history and `message`; the final answer joins the history."""
        opts = (options or self.options).changed(**changes)
        request = [*self.messages, message]
        final: Final | None = None
        dropped = 0
        for event in self.model.stream_chat(request, opts, cancel=cancel):
            if isinstance(event, Final):
                final = event
            elif isinstance(event, Notice):
                dropped += event.dropped_messages
            yield event
        if final is not None:
            first = 1 if request[0].get("role") == "system" else 0
            del request[first : first + dropped]
            answer = {**final.message(), "content": self._stored(final), "settings": turn_settings(opts)}
            self.messages[:] = [*request, answer]

    def _stored(self, final: Final) -> str:
        markers = self.model.format.thinking
        if markers and final.reasoning:
            return f"{markers.start}\n{final.reasoning}\n{markers.end}\n\n{final.content}"
        return final.content

    def regenerate(self, options: ChatOptions | None = None, *, cancel: threading.Event | None = None,
                   **changes: Any) -> Iterator[Event]:
        """Answer the last user message again; the last answer is replaced once the new one exists."""
        if len(self.messages) < 2 or self.messages[-1]["role"] != "assistant" or self.messages[-2]["role"] != "user":
            raise LocalAIError("there is no answer to regenerate yet")
        before = list(self.messages)
        question = before[-2]["content"]
        self.messages[:] = before[:-2]
        answered = False
        try:
            for event in self.send(question, options, cancel=cancel, **changes):
                answered = answered or isinstance(event, Final)
                yield event
        finally:
            if not answered:
                self.messages[:] = before

    def reset(self) -> None:
        self.messages[:] = [{"role": "system", "content": self.system}] if self.system else []

    def save(self, path: Path) -> None:
        """Write the conversation as JSON (model name and messages)."""
        data = {"model": self.model.manifest.name, "messages": list(self.messages)}
        write_text_atomic(path, json.dumps(data, indent=2, ensure_ascii=False) + "\n")

    def to_markdown(self) -> str:
        """The conversation as a Markdown document; reasoning is kept in a collapsed details block."""
        markers = self.model.format.thinking
        lines = [f"# Chat with {self.model.manifest.name}", ""]
        for message in self.messages:
            content = str(message["content"])
            if markers and message["role"] == "assistant" and markers.end in content:
                thought, _, content = content.partition(markers.end)
                thought = thought.replace(markers.start, "", 1).strip()
                lines += ["**assistant**", "", "<details><summary>Thinking</summary>", "", thought, "", "</details>",
                          "", content.strip(), ""]
            else:
                lines += [f"**{message['role']}**", "", content.strip(), ""]
            for call in message.get("tool_calls", []):
                lines += [f"`tool call: {call['function']['name']} {call['function']['arguments']}`", ""]
            if message.get("settings"):
                lines += [f"<sub>{_describe(message['settings'])}</sub>", ""]
        return "\n".join(lines)


def _describe(settings: dict[str, Any]) -> str:
    think = {True: "on", False: "off", None: "default"}[settings.get("think")]
    budget = settings.get("reasoning_budget")
    return (f"thinking {think} · budget {'unlimited' if budget is None else budget} · temperature "
            f"{settings.get('temperature')} · top_p {settings.get('top_p')} · max tokens {settings.get('max_tokens')}")
