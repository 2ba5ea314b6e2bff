"""What both APIs' request bodies share: reading them (bounded), checking them (pydantic, one message per
bad field), and turning their text, thinking and budget fields into the chat engine's terms."""

from __future__ import annotations

import json
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from localai import structured
from localai.errors import SettingError
from localai.options import given
from localai.units import shown

M = TypeVar("M", bound=BaseModel)
MAX_INT = 2**31 - 1


class Loose(BaseModel):
    """A request model that keeps the fields it does not name: clients send many this server does not use."""

    model_config = ConfigDict(extra="allow")


class ApiError(Exception):
    """A request the server refuses: HTTP `status`, a message for the client, the field it is about."""

    def __init__(self, status: int, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.param = status, message, param


def parse(model: type[M], body: bytes) -> M:
    """`body` as `model`, or a 400 naming the first field that is wrong."""
    try:
        data = json.loads(body)
        _check_text(data, "body")
    except RecursionError:
        raise ApiError(400, "the request body nests too deeply") from None
    except ValueError as exc:  # not UTF-8, not JSON, or an integer of more digits than Python converts
        raise ApiError(400, f"the request body is not JSON: {shown(str(exc))}") from None
    if not isinstance(data, dict):
        raise ApiError(400, "the request body must be a JSON object")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        error = exc.errors(include_url=False)[0]
        where = ".".join(str(part) for part in error["loc"]) or None
        value = f" (got {shown(error['input'])})" if "input" in error and where else ""
        raise ApiError(400, f"{where or 'body'}: {error['msg']}{value}", where) from None


def _check_text(value: Any, where: str) -> None:
    """Every string encodes as UTF-8: JSON can spell lone surrogates ("\\ud800"), which no tokenizer takes."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise ApiError(400, f"{where}: not valid Unicode text (a lone surrogate)", where) from None
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_text(key, where)
            _check_text(item, f"{where}.{key}" if where != "body" else str(key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _check_text(item, f"{where}.{i}")


def text_of(content: str | list[dict[str, Any]] | None, where: str) -> str:
    """A message's text: a string, or the text parts of a list of content parts (no images here)."""
    if content is None or isinstance(content, str):
        return content or ""
    parts = []
    for part in content:
        if part.get("type") != "text" or not isinstance(part.get("text"), str):
            raise ApiError(400, f"{where}: only text content parts are supported, got type {shown(part.get('type'))}",
                           where)
        parts.append(part["text"])
    return "".join(parts)


def one_budget(candidates: dict[str, int | None]) -> dict[str, int]:
    """The reasoning budget from whichever of its names a client used (all that are given must agree)."""
    named = given(**candidates)
    if len(set(named.values())) > 1:
        raise ApiError(400, f"the reasoning budget is given differently as {', '.join(sorted(named))}",
                       sorted(named)[0])
    return {"reasoning_budget": next(iter(named.values()))} if named else {}


def error_body(path: str, status: int, message: str, param: str | None = None) -> dict[str, Any]:
    """An error as the API at `path` writes it: OpenAI's object under /v1, Ollama's string elsewhere."""
    if not path.startswith("/v1"):
        return {"error": message}
    kind = "authentication_error" if status == 401 else "server_error" if status >= 500 else "invalid_request_error"
    code = "model_not_found" if status == 404 and param == "model" else None
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def constraint_of(kind: str, schema: Any, param: str) -> structured.Constraint:
    """A response format's constraint (json_object, or json_schema with `schema`), or a 400 naming `param`."""
    try:
        return structured.json_schema(schema) if kind == "json_schema" else structured.json_object()
    except SettingError as exc:
        raise ApiError(400, str(exc), param) from None
