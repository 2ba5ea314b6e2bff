"""The ASGI app of `localai serve` (FastAPI on Starlette): the two API routers, and around them what keeps
a server on a workstation safe: an API key checked in constant time, request bodies bounded before they
are read, CORS only for named origins, and every error a JSON body in the calling API's own shape (a
4xx for a bad request; nothing about the machine, no traceback, in any response)."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException

from localai import __version__
from localai.server import ollama_api, openai_api
from localai.server.fields import ApiError, error_body
from localai.server.service import Service

log = logging.getLogger("localai.server")
Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
OPEN_PATHS = ("/health",)  # answered without the API key: they say nothing but "up"


@dataclass(frozen=True)
class Security:
    api_key: str | None = None
    cors_origins: tuple[str, ...] = ()


def create_app(service: Service, security: Security, reap_seconds: float = 5.0) -> FastAPI:
    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        reaper = asyncio.create_task(_reap(service, reap_seconds))
        try:
            yield
        finally:
            reaper.cancel()
            await service.catalog.close()

    app = FastAPI(title="localai", version=__version__, lifespan=lifespan, docs_url=None, redoc_url=None,
                  openapi_url=None)
    app.state.service = service
    app.include_router(openai_api.router)
    app.include_router(ollama_api.router)
    app.add_exception_handler(ApiError, _api_error)  # type: ignore[arg-type]
    app.add_exception_handler(HTTPException, _http_error)  # type: ignore[arg-type]
    app.add_exception_handler(Exception, _internal_error)

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/metrics")
    async def metrics() -> Response:
        return Response(service.metrics.text(), media_type="text/plain; version=0.0.4")

    app.add_middleware(_Guard, api_key=security.api_key, max_body=service.limits.max_body_bytes)
    if security.cors_origins:  # added last, so outermost: the guard's refusals carry CORS headers too
        app.add_middleware(CORSMiddleware, allow_origins=list(security.cors_origins), allow_methods=["GET", "POST"],
                           allow_headers=["Authorization", "Content-Type"])
    return app


async def _reap(service: Service, every: float) -> None:
    while True:
        await asyncio.sleep(every)
        try:
            await service.catalog.reap()
        except Exception:  # keep-alive must outlive one failed unload
            log.exception("unloading idle models failed")


async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
    return JSONResponse(error_body(request.url.path, exc.status, exc.message, exc.param), status_code=exc.status)


async def _http_error(request: Request, exc: HTTPException) -> JSONResponse:
    message = {404: f"no such endpoint: {request.method} {request.url.path}",
               405: f"{request.method} is not allowed on {request.url.path}"}.get(exc.status_code, str(exc.detail))
    return JSONResponse(error_body(request.url.path, exc.status_code, message), status_code=exc.status_code)


async def _internal_error(request: Request, exc: Exception) -> JSONResponse:
    log.exception("error answering %s %s", request.method, request.url.path)
    return JSONResponse(error_body(request.url.path, 500, "internal error; the server's log has the details"),
                        status_code=500)


class _Guard:
    """The API key (Authorization: Bearer, compared in constant time), JSON bodies only, and the body-size
    bound, before any endpoint reads a byte of the request."""

    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]], *, api_key: str | None,
                 max_body: int) -> None:
        self.app, self.api_key, self.max_body = app, api_key, max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path = scope["path"]
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        if self.api_key is not None and path not in OPEN_PATHS and scope["method"] != "OPTIONS":
            scheme, _, given = headers.get("authorization", "").partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), self.api_key.encode()):
                return await _reject(send, path, 401, "a valid API key is needed (Authorization: Bearer KEY)")
        kind = headers.get("content-type", "").split(";")[0].strip().lower()
        if scope["method"] == "POST" and kind != "application/json":
            # the content types a web page may send without asking first (CORS "simple" requests), and none:
            # refused, so that a page open in a browser cannot make this server work for it
            return await _reject(send, path, 415, "a request body must be sent as Content-Type: application/json")
        declared = headers.get("content-length", "0")
        if not declared.isdigit():
            return await _reject(send, path, 400, "Content-Length is not a number of bytes")
        if int(declared) > self.max_body:
            return await _reject(send, path, 413, f"the request body is over {self.max_body} bytes")
        await self.app(scope, self._bounded(receive, path), send)

    def _bounded(self, receive: Receive, path: str) -> Receive:
        seen = 0

        async def bounded() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.max_body:
                raise ApiError(413, f"the request body is over {self.max_body} bytes")
            return message
        return bounded


async def _reject(send: Send, path: str, status: int, message: str) -> None:
    response = JSONResponse(error_body(path, status, message), status_code=status)
    await send({"type": "http.response.start", "status": status, "headers": response.raw_headers})
    await send({"type": "http.response.body", "body": response.body})
