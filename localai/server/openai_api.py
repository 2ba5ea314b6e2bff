"""The OpenAI API: GET /v1/models, POST /v1/chat/completions and /v1/completions (stream or not).

The thought comes back as `reasoning_content`, never inside `content`. Thinking follows
`chat_template_kwargs.enable_thinking` or `reasoning_effort` ("none" is off); the budget takes any of the
names clients use (`reasoning_budget`, vLLM's `thinking_token_budget`, NIM's `nvext.max_thinking_tokens`,
llama.cpp's `thinking_budget_tokens`), with the same grace as `localai run --reasoning-budget`.

`tools`, `tool_choice` and `parallel_tool_calls` as OpenAI defines them; calls come back as `tool_calls`
(streamed whole, one delta each, once complete), with `finish_reason` "tool_calls". A call the model wrote
that is not valid stays in `content` as the model wrote it and is described in the message's
`invalid_tool_calls` (an extension), never passed on as a call. `response_format` `json_object` and
`json_schema` constrain the answer (localai/structured.py).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any, Literal

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import Field

from localai.events import ContentDelta, Event, Final, ReasoningDelta, ToolCall
from localai.options import given
from localai.server.fields import MAX_INT, ApiError, Loose, constraint_of, error_body, one_budget, parse, text_of
from localai.server.service import Service, created_at
from localai.units import shown

router = APIRouter(prefix="/v1")
EFFORTS = ("none", "minimal", "low", "medium", "high")


class Message(Loose):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[dict[str, Any]] | None = None
    tool_calls: list[dict[str, Any]] | None = None
    tool_call_id: str | None = None


class StreamOptions(Loose):
    include_usage: bool = False


class NvExt(Loose):
    max_thinking_tokens: int | None = Field(None, ge=0, le=MAX_INT)


class Sampling(Loose):
    """The fields both endpoints take."""

    model: str
    max_tokens: int | None = Field(None, ge=1, le=MAX_INT)
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    min_p: float | None = None
    repetition_penalty: float | None = None
    seed: int | None = None
    stop: str | list[str] | None = None
    n: int | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None

    def changes(self) -> dict[str, Any]:
        if self.n not in (None, 1):
            raise ApiError(400, "n must be 1: this server makes one answer per request", "n")
        named = {"max_tokens": self.max_tokens, "temperature": self.temperature, "top_p": self.top_p,
                 "top_k": self.top_k, "min_p": self.min_p, "repetition_penalty": self.repetition_penalty,
                 "seed": self.seed, "stop": [self.stop] if isinstance(self.stop, str) else self.stop}
        return given(**named)


class ChatRequest(Sampling):
    messages: list[Message] = Field(min_length=1)
    max_completion_tokens: int | None = Field(None, ge=1, le=MAX_INT)
    reasoning_effort: Literal[EFFORTS] | None = None  # type: ignore[valid-type]
    chat_template_kwargs: dict[str, Any] | None = None
    reasoning_budget: int | None = Field(None, ge=0, le=MAX_INT)
    thinking_token_budget: int | None = Field(None, ge=0, le=MAX_INT)
    thinking_budget_tokens: int | None = Field(None, ge=0, le=MAX_INT)
    nvext: NvExt | None = None
    tools: list[Any] | None = None
    tool_choice: Literal["auto", "none", "required"] | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    response_format: dict[str, Any] | None = None

    def changes(self) -> dict[str, Any]:
        changes = super().changes() | given(tools=self.tools or None, tool_choice=self._tool_choice(),
                                           parallel_tool_calls=self.parallel_tool_calls,
                                           constraint=self._constraint())
        if self.max_completion_tokens is not None:
            changes["max_tokens"] = self.max_completion_tokens
        think = (self.chat_template_kwargs or {}).get("enable_thinking")
        if think is not None and not isinstance(think, bool):
            raise ApiError(400, "chat_template_kwargs.enable_thinking must be true or false",
                           "chat_template_kwargs.enable_thinking")
        if think is None and self.reasoning_effort is not None:
            think = self.reasoning_effort != "none"
        if think is not None:
            changes["think"] = think
        return changes | one_budget({
            "reasoning_budget": self.reasoning_budget, "thinking_token_budget": self.thinking_token_budget,
            "thinking_budget_tokens": self.thinking_budget_tokens,
            "nvext.max_thinking_tokens": self.nvext.max_thinking_tokens if self.nvext else None})

    def _tool_choice(self) -> str | None:
        """"auto", "none", "required", or the name in {"type": "function", "function": {"name": ...}}."""
        if isinstance(self.tool_choice, dict):
            function = self.tool_choice.get("function")
            if self.tool_choice.get("type") != "function" or not isinstance(function, dict) or not isinstance(
                    function.get("name"), str):
                raise ApiError(400, 'tool_choice must be auto, none, required or {"type": "function", "function": '
                                    '{"name": ...}}', "tool_choice")
            return function["name"]
        return self.tool_choice

    def _constraint(self) -> Any:
        """response_format: text (none), json_object, or json_schema {"name", "schema", "strict"}."""
        kind = (self.response_format or {}).get("type", "text")
        if kind == "json_schema":
            spec = self.response_format.get("json_schema")  # type: ignore[union-attr]
            if not isinstance(spec, dict) or not isinstance(spec.get("schema"), dict):
                raise ApiError(400, "response_format.json_schema.schema must be a JSON schema object",
                               "response_format.json_schema.schema")
            return constraint_of("json_schema", spec["schema"], "response_format.json_schema.schema")
        if kind not in ("text", "json_object"):
            raise ApiError(400, f"response_format.type must be text, json_object or json_schema, got {shown(kind)}",
                           "response_format.type")
        return constraint_of("json_object", None, "response_format") if kind == "json_object" else None

    def chat_messages(self) -> list[dict[str, Any]]:
        messages = []
        for i, m in enumerate(self.messages):
            message: dict[str, Any] = {"role": "system" if m.role == "developer" else m.role,
                                       "content": text_of(m.content, f"messages.{i}.content")}
            if m.tool_calls:
                message["tool_calls"] = m.tool_calls
            if m.tool_call_id is not None:
                message["tool_call_id"] = m.tool_call_id
            messages.append(message)
        return messages


class CompletionRequest(Sampling):
    prompt: str | list[str]

    def text(self) -> str:
        if isinstance(self.prompt, str):
            return self.prompt
        if len(self.prompt) != 1:
            raise ApiError(400, "prompt must be one string: this server makes one answer per request", "prompt")
        return self.prompt[0]


@router.get("/models")
async def models(request: Request) -> dict[str, Any]:
    service: Service = request.app.state.service
    return {"object": "list", "data": [_model(service, name) for name in service.names()]}


@router.get("/models/{name:path}")
async def model(request: Request, name: str) -> dict[str, Any]:
    service: Service = request.app.state.service
    service.package(name)
    return _model(service, name)


def _model(service: Service, name: str) -> dict[str, Any]:
    created = int(created_at(service.catalog.packages[name]).timestamp())
    return {"id": name, "object": "model", "created": created, "owned_by": "localai"}


@router.post("/chat/completions", response_model=None)
async def chat_completions(request: Request) -> JSONResponse | StreamingResponse:
    service: Service = request.app.state.service
    body = parse(ChatRequest, await request.body())
    service.check_messages(len(body.messages))
    turn = await service.turn(body.model, body.changes(), api="openai", messages=body.chat_messages())
    reply = _Reply("chat.completion", body.model)
    if body.stream:
        return _sse(reply.chat_chunks(await service.stream(turn), _usage_wanted(body)))
    return JSONResponse(reply.chat(await service.complete(turn, request)))


@router.post("/completions", response_model=None)
async def completions(request: Request) -> JSONResponse | StreamingResponse:
    service: Service = request.app.state.service
    body = parse(CompletionRequest, await request.body())
    turn = await service.turn(body.model, body.changes(), api="openai", text=body.text())
    reply = _Reply("text_completion", body.model)
    if body.stream:
        return _sse(reply.text_chunks(await service.stream(turn), _usage_wanted(body)))
    return JSONResponse(reply.text(await service.complete(turn, request)))


def _usage_wanted(body: Sampling) -> bool:
    return bool(body.stream_options and body.stream_options.include_usage)


def _sse(chunks: AsyncIterator[dict[str, Any]]) -> StreamingResponse:
    """Server-sent events; an error after the stream began is an `error` event, as OpenAI sends one."""
    async def lines() -> AsyncIterator[str]:
        try:
            async for chunk in chunks:
                yield f"data: {json.dumps(chunk, ensure_ascii=False)}\n\n"
        except ApiError as exc:
            yield f"data: {json.dumps(error_body('/v1', exc.status, exc.message, exc.param))}\n\n"
            return
        yield "data: [DONE]\n\n"
    return StreamingResponse(lines(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})


def usage(final: Final) -> dict[str, Any]:
    u = final.usage
    return {"prompt_tokens": u.prompt_tokens, "completion_tokens": u.completion_tokens,
            "total_tokens": u.prompt_tokens + u.completion_tokens,
            "completion_tokens_details": {"reasoning_tokens": u.reasoning_tokens},
            "prompt_tokens_details": {"cached_tokens": final.cached_tokens}}


def _finish(final: Final) -> str:
    return final.finish_reason if final.finish_reason in ("length", "tool_calls") else "stop"


def _invalid(call: ToolCall) -> dict[str, Any]:
    """What an invalid call is and why (localai's extension)."""
    return {"id": call.id, "name": call.name, "arguments": call.arguments, "error": call.error}


def _message(final: Final) -> dict[str, Any]:
    """The answer as OpenAI's assistant message: valid calls in `tool_calls`; an invalid call's text stays in
    `content`, and `invalid_tool_calls` says why each is invalid."""
    valid = [c for c in final.tool_calls if c.valid]
    invalid = [c for c in final.tool_calls if not c.valid]
    content = "".join([final.content, *(c.text for c in invalid)])
    message: dict[str, Any] = {"role": "assistant", "content": content or (None if valid else ""),
                               "reasoning_content": final.reasoning or None}
    if valid:
        message["tool_calls"] = [c.openai() for c in valid]
    if invalid:
        message["invalid_tool_calls"] = [_invalid(c) for c in invalid]
    return message


class _Reply:
    """One response's id, time and model, and how its events become this API's objects."""

    def __init__(self, kind: str, model: str) -> None:
        prefix = "chatcmpl" if kind == "chat.completion" else "cmpl"
        self.kind, self.model = kind, model
        self.id, self.created = f"{prefix}-{uuid.uuid4().hex}", int(time.time())

    def _object(self, kind: str, choices: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
        return {"id": self.id, "object": kind, "created": self.created, "model": self.model, "choices": choices,
                **extra}

    def chat(self, final: Final) -> dict[str, Any]:
        return self._object(self.kind, [{"index": 0, "message": _message(final), "finish_reason": _finish(final),
                                         "logprobs": None}], usage=usage(final))

    def text(self, final: Final) -> dict[str, Any]:
        return self._object(self.kind, [{"index": 0, "text": final.content, "finish_reason": _finish(final),
                                         "logprobs": None}], usage=usage(final))

    async def chat_chunks(self, events: AsyncIterator[Event], with_usage: bool) -> AsyncIterator[dict[str, Any]]:
        kind = "chat.completion.chunk"
        yield self._object(kind, [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}])
        calls = 0
        async for event in events:
            for delta, finish in _chat_deltas(event, calls):
                calls += "tool_calls" in delta
                yield self._object(kind, [{"index": 0, "delta": delta, "finish_reason": finish}])
            if isinstance(event, Final) and with_usage:
                yield self._object(kind, [], usage=usage(event))

    async def text_chunks(self, events: AsyncIterator[Event], with_usage: bool) -> AsyncIterator[dict[str, Any]]:
        async for event in events:
            if isinstance(event, ContentDelta | Final):
                text, finish = (event.text, None) if isinstance(event, ContentDelta) else ("", _finish(event))
                yield self._object(self.kind, [{"index": 0, "text": text, "finish_reason": finish, "logprobs": None}])
            if isinstance(event, Final) and with_usage:
                yield self._object(self.kind, [], usage=usage(event))


def _chat_deltas(event: Event, calls: int) -> Iterator[tuple[dict[str, Any], str | None]]:
    """The chunks of one event; `calls`: the valid calls sent so far (a call's index)."""
    if isinstance(event, ReasoningDelta):
        yield {"reasoning_content": event.text}, None
    elif isinstance(event, ContentDelta):
        yield {"content": event.text}, None
    elif isinstance(event, ToolCall) and event.valid:
        yield {"tool_calls": [{"index": calls, **event.openai()}]}, None
    elif isinstance(event, ToolCall):
        yield {"content": event.text, "invalid_tool_calls": [_invalid(event)]}, None
    elif isinstance(event, Final):
        yield {}, _finish(event)

