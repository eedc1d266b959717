"""The FastAPI app: routes, error shapes, the guard, CORS, and the Gradio UI at ``/ui``.

    app = create_app(ServeConfig(home=brushwork_home(), token="a-token-of-16-chars-or-more"))

Errors never leak as 500 for bad input: request validation, malformed JSON and every
``BrushworkError`` become a 4xx JSON body that names the field, in the shape each API's clients
expect:

- native and A1111 routes: ``{"error": "<kind>", "detail": "<field>: <message>", "field": "<field>"}``
  (A1111 clients read ``detail``; ``body`` and ``errors`` are there as A1111 sends them);
- ``/v1/…`` (OpenAI): ``{"error": {"message", "type", "param", "code"}}``.
"""

from __future__ import annotations

import contextlib
import sys
import traceback

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse, RedirectResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from brushwork import __version__
from brushwork.errors import BrushworkError
from brushwork.serve.auth import Guard, check_token, parse_allow_hosts
from brushwork.serve.queue import QueueFull
from brushwork.serve.service import ServeConfig, Service


def create_app(config: ServeConfig) -> FastAPI:
    check_token(config.token)  # one-line errors for a short token or a bad --allow-host, before anything starts
    parse_allow_hosts(config.allow_hosts)
    service = Service(config)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        service.start()
        try:
            yield
        finally:
            service.stop()

    app = FastAPI(title="brushwork", version=__version__, lifespan=lifespan,
                  description="Text-to-image server: a native job API, A1111- and OpenAI-compatible routes, "
                              "and a web UI, all in one persistent queue.")
    app.state.service = service

    from brushwork.serve import routes_a1111, routes_native, routes_openai

    app.include_router(routes_native.router)
    app.include_router(routes_a1111.router)
    app.include_router(routes_openai.router)

    @app.get("/", include_in_schema=False)
    async def root():
        return RedirectResponse("/ui/" if config.ui else "/docs")

    install_error_handlers(app)
    if config.ui:
        from brushwork.serve.ui import mount_ui

        mount_ui(app, service)
    # Host (without a token) and Origin checks, token, body cap: see auth.py. It also wraps the Gradio UI.
    app.add_middleware(Guard, token=config.token, max_body=config.max_body, allow_hosts=config.allow_hosts,
                       cors=config.cors)
    # Always present, so Gradio does not add its own permissive CORS; no origins = no CORS headers.
    app.add_middleware(CORSMiddleware, allow_origins=list(config.cors), allow_methods=["*"],
                       allow_headers=["*"], allow_credentials=bool(config.cors))
    return app


# ---------------------------------------------------------------------------- errors


def error_response(request: Request, status: int, kind: str, message: str, field: str | None,
                   headers: dict | None = None) -> JSONResponse:
    if request.url.path.startswith("/v1/"):
        otype = {401: "invalid_request_error", 404: "invalid_request_error", 429: "rate_limit_exceeded",
                 500: "server_error"}.get(status, "invalid_request_error")
        code = "model_not_found" if field == "model" and status == 404 else None
        body = {"error": {"message": message, "type": otype, "param": field, "code": code}}
    else:
        body = {"error": kind, "detail": message, "field": field, "body": "", "errors": message}
    return JSONResponse(body, status_code=status, headers=headers)


def _field(loc) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or "body"


def public_message(request: Request, message: str) -> str:
    """``message`` with server paths reduced to file names; the full message goes to the server log."""
    from brushwork.paths import hide_paths, server_roots

    config = request.app.state.service.config
    shown = hide_paths(message, server_roots(config.home, config.outputs))
    if shown != message:
        print(f"[brushwork] {request.method} {request.url.path}: {message}", file=sys.stderr, flush=True)
    return shown


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def validation(request: Request, exc: RequestValidationError):
        errors = exc.errors()
        err = errors[0] if errors else {}
        field = _field(err.get("loc", ()))
        if err.get("type") == "json_invalid":
            message = f"body: malformed JSON ({err.get('ctx', {}).get('error', 'cannot parse')})"
            field = "body"
        else:
            got = err.get("input")
            shown = "" if isinstance(got, (dict, list)) or got is None else f" (got {got!r:.80})"
            message = f"{field}: {err.get('msg', 'invalid value')}{shown}"
        status = 400 if request.url.path.startswith("/v1/") else 422
        return error_response(request, status, "ValidationError", message, field)

    @app.exception_handler(QueueFull)
    async def queue_full(request: Request, exc: QueueFull):
        return error_response(request, 429, "QueueFull", str(exc), None,
                              headers={"Retry-After": str(exc.retry_after)})

    @app.exception_handler(BrushworkError)
    async def brushwork_error(request: Request, exc: BrushworkError):
        message = public_message(request, str(exc))
        if exc.field and not message.startswith(f"{exc.field}:") and exc.field != "job":
            message = f"{exc.field}: {message}"  # the detail always starts with the field it names
        return error_response(request, exc.http_status, type(exc).__name__, message, exc.field)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        kind = {404: "NotFound", 405: "MethodNotAllowed"}.get(exc.status_code, "HTTPException")
        return error_response(request, exc.status_code, kind, str(exc.detail), None,
                              headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def internal(request: Request, exc: Exception):
        traceback.print_exception(exc, file=sys.stderr)
        return error_response(request, 500, "InternalError",
                              f"internal error ({type(exc).__name__}); see the server log", None)
