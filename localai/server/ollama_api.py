"""The Ollama API (Ollama's clients and Open WebUI speak it): GET /api/tags, /api/ps, /api/version;
POST /api/chat, /api/generate (NDJSON streaming, the default, or one object) and /api/show.

`think` turns reasoning on or off (a level such as "high" means on); the thought comes back as
`message.thinking` (`thinking` from /api/generate), never inside the answer. `format` ("json" or a JSON
schema) constrains the answer; `tools` go to the model's template and its calls come back as
`message.tool_calls` (arguments as objects), each whole in the chunk where it completes. An invalid call
stays in `content` as the model wrote it. `tool_choice` (auto, none, required or a tool's name) is
localai's extension: Ollama's API has no way to force a call.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import Field

from localai import __version__, tools
from localai.events import ContentDelta, Event, Final, ReasoningDelta, ToolCall
from localai.options import given
from localai.package import Package
from localai.server.fields import MAX_INT, ApiError, Loose, constraint_of, parse
from localai.server.service import Service, Turn, created_at

router = APIRouter(prefix="/api")
FOREVER_S = 100 * 365 * 86400.0
NO_IMAGES = "images are not supported: localai's models read text only"


class Options(Loose):
    num_predict: int | None = Field(None, ge=-2, le=MAX_INT)  # -1: until the context is full (Ollama's)
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    min_p: float | None = None
    repeat_penalty: float | None = None
    seed: int | None = None
    stop: list[str] | None = None


class Message(Loose):
    role: Literal["system", "user", "assistant", "tool"]
    content: str = ""
    images: list[Any] | None = None
    tool_calls: list[dict[str, Any]] | None = None
    tool_name: str | None = None

    def chat_message(self) -> dict[str, Any]:
        message: dict[str, Any] = {"role": self.role, "content": self.content}
        if self.tool_calls:
            message["tool_calls"] = self.tool_calls
        if self.tool_name is not None:
            message["name"] = self.tool_name
        return message


class _Generation(Loose):
    model: str
    stream: bool = True
    think: bool | Literal["low", "medium", "high"] | None = None
    options: Options | None = None
    format: Any = None
    keep_alive: Any = None

    def changes(self, context: int) -> dict[str, Any]:
        o = self.options or Options()
        predict = context if o.num_predict is not None and o.num_predict < 0 else o.num_predict
        named = {"max_tokens": predict, "temperature": o.temperature, "top_p": o.top_p, "top_k": o.top_k,
                 "min_p": o.min_p, "repetition_penalty": o.repeat_penalty, "seed": o.seed, "stop": o.stop,
                 "think": None if self.think is None else self.think is not False, "constraint": self._constraint()}
        return given(**named)

    def _constraint(self) -> Any:
        """format: "json" (any object) or a JSON schema; "" or none: free."""
        if self.format in (None, ""):
            return None
        if self.format == "json":
            return constraint_of("json_object", None, "format")
        if isinstance(self.format, dict):
            return constraint_of("json_schema", self.format, "format")
        raise ApiError(400, 'format must be "json" or a JSON schema object', "format")


class ChatRequest(_Generation):
    messages: list[Message] = Field(min_length=1)
    tools: list[Any] | None = None
    tool_choice: str | None = None  # localai's extension (Ollama has none): auto, none, required or a tool's name


class GenerateRequest(_Generation):
    prompt: str = ""
    system: str | None = None
    raw: bool = False
    images: list[Any] | None = None


class ShowRequest(Loose):
    model: str


@router.get("/version")
async def version() -> dict[str, str]:
    return {"version": __version__}


@router.get("/tags")
async def tags(request: Request) -> dict[str, Any]:
    service: Service = request.app.state.service
    return {"models": [_describe(name, service.catalog.packages[name]) for name in service.names()]}


@router.get("/ps")
async def ps(request: Request) -> dict[str, Any]:
    service: Service = request.app.state.service
    models = []
    for name, (model, unload_at) in sorted(service.catalog.loaded().items()):
        left = min(max(0.0, unload_at - time.monotonic()), FOREVER_S)  # --keep-alive -1: "never", far ahead
        expires = datetime.now(UTC) + timedelta(seconds=left)
        models.append(_describe(name, model.package) | {
            "expires_at": expires.isoformat(), "size_vram": 0, "context_length": model.backend.n_ctx})
    return {"models": models}


@router.post("/show")
async def show(request: Request) -> dict[str, Any]:
    service: Service = request.app.state.service
    name = parse(ShowRequest, await request.body()).model
    package = service.package(name)
    manifest = package.manifest
    capabilities = ["completion", *(["tools"] if tools.detect(manifest.chat_template) else []),
                    *(["thinking"] if manifest.thinking else [])]
    return {"template": manifest.chat_template or "", "modelfile": "", "parameters": "", "license": "",
            "details": _details(package), "capabilities": capabilities,
            "model_info": {"general.architecture": manifest.architecture,
                           f"{manifest.architecture}.context_length": manifest.context_length},
            "modified_at": created_at(package).isoformat()}


@router.post("/chat", response_model=None)
async def chat(request: Request) -> JSONResponse | StreamingResponse:
    service: Service = request.app.state.service
    body = parse(ChatRequest, await request.body())
    if any(m.images for m in body.messages):
        raise ApiError(400, NO_IMAGES)
    service.check_messages(len(body.messages))
    tooling = given(tools=body.tools or None, tool_choice=body.tool_choice)
    changes = body.changes(_context(service, body.model)) | tooling
    turn = await service.turn(body.model, changes, api="ollama", messages=[m.chat_message() for m in body.messages])
    return await _respond(service, turn, request, _Reply(body.model, "message"), body.stream)


@router.post("/generate", response_model=None)
async def generate(request: Request) -> JSONResponse | StreamingResponse:
    service: Service = request.app.state.service
    body = parse(GenerateRequest, await request.body())
    if body.images:
        raise ApiError(400, NO_IMAGES)
    changes = body.changes(_context(service, body.model))
    if not body.prompt:  # Ollama's way to load a model ahead of use
        await service.turn(body.model, changes, api="ollama", text="")  # checked as any request is
        await service.load(body.model)
        return JSONResponse({"model": body.model, "created_at": _now(), "response": "", "done": True,
                             "done_reason": "load"})
    if body.raw:
        turn = await service.turn(body.model, changes, api="ollama", text=body.prompt)
    else:
        system = [{"role": "system", "content": body.system}] if body.system else []
        turn = await service.turn(body.model, changes, api="ollama",
                                  messages=[*system, {"role": "user", "content": body.prompt}])
    return await _respond(service, turn, request, _Reply(body.model, "response"), body.stream)


async def _respond(service: Service, turn: Turn, request: Request, reply: _Reply,
                   stream: bool) -> JSONResponse | StreamingResponse:
    if stream:
        return _ndjson(reply.chunks(await service.stream(turn)))
    return JSONResponse(reply.whole(await service.complete(turn, request)))


def _context(service: Service, name: str) -> int:
    package = service.catalog.packages.get(name)
    return package.manifest.context_length if package else 1


def _ndjson(chunks: AsyncIterator[dict[str, Any]]) -> StreamingResponse:
    """One JSON object a line; an error after the stream began is an `{"error": ...}` line, as Ollama's."""
    async def lines() -> AsyncIterator[str]:
        try:
            async for chunk in chunks:
                yield json.dumps(chunk, ensure_ascii=False) + "\n"
        except ApiError as exc:
            yield json.dumps({"error": exc.message}) + "\n"
    return StreamingResponse(lines(), media_type="application/x-ndjson")


def _now() -> str:
    return datetime.now(UTC).isoformat()


class _Reply:
    """How events become /api/chat objects (`shape` "message") or /api/generate ones ("response")."""

    def __init__(self, model: str, shape: str) -> None:
        self.model, self.shape = model, shape

    def _text(self, content: str, thinking: str | None, calls: tuple[ToolCall, ...] = ()) -> dict[str, Any]:
        """The text (an invalid call's own text included) and the valid calls, arguments as objects."""
        content += "".join(call.text for call in calls if not call.valid)
        if self.shape == "message":
            message = {"role": "assistant", "content": content, "thinking": thinking}
            valid = [{"id": c.id, "function": {"name": c.name, "arguments": c.parsed_arguments()}}
                     for c in calls if c.valid]
            return {"message": message | ({"tool_calls": valid} if valid else {})}
        return {"response": content, "thinking": thinking}

    def _done(self, final: Final) -> dict[str, Any]:
        t, u = final.timings, final.usage
        total_ns = int(t.total_ms * 1e6)
        prefill_ns = int((t.ttft_ms or t.total_ms) * 1e6)
        return {"done": True, "done_reason": "length" if final.finish_reason == "length" else "stop",
                "total_duration": total_ns, "load_duration": 0,
                "prompt_eval_count": u.prompt_tokens - final.cached_tokens, "prompt_eval_duration": prefill_ns,
                "eval_count": u.completion_tokens, "eval_duration": max(0, total_ns - prefill_ns)}

    def whole(self, final: Final) -> dict[str, Any]:
        return {"model": self.model, "created_at": _now(),
                **self._text(final.content, final.reasoning or None, final.tool_calls), **self._done(final)}

    async def chunks(self, events: AsyncIterator[Event]) -> AsyncIterator[dict[str, Any]]:
        async for event in events:
            if isinstance(event, ReasoningDelta):
                yield {"model": self.model, "created_at": _now(), **self._text("", event.text), "done": False}
            elif isinstance(event, ContentDelta):
                yield {"model": self.model, "created_at": _now(), **self._text(event.text, None), "done": False}
            elif isinstance(event, ToolCall):
                yield {"model": self.model, "created_at": _now(), **self._text("", None, (event,)), "done": False}
            elif isinstance(event, Final):
                yield {"model": self.model, "created_at": _now(), **self._text("", None), **self._done(event)}


def _details(package: Package) -> dict[str, Any]:
    manifest = package.manifest
    artifact = manifest.artifacts[0]
    total = manifest.parameters.get("total")
    return {"format": artifact.format, "family": manifest.architecture, "families": [manifest.architecture],
            "parameter_size": f"{total / 1e6:.0f}M" if isinstance(total, int) else "",
            "quantization_level": artifact.quant, "parent_model": ""}


def _describe(name: str, package: Package) -> dict[str, Any]:
    manifest = package.manifest
    return {"name": name, "model": name, "modified_at": created_at(package).isoformat(),
            "size": sum(a.bytes for a in manifest.artifacts), "digest": manifest.artifacts[0].sha256,
            "details": _details(package)}
