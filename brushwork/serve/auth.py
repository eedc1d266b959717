"""The guard in front of every route: token check, request-size cap, and safe response headers.

It is plain ASGI middleware wrapped around the whole app, so nothing mounted later (the Gradio
UI, ``/docs``, ``/openapi.json``) can slip past it. With a token set, a request needs either
``Authorization: Bearer <token>`` or HTTP Basic with any user name and the token as password
(A1111 clients send Basic). Without a token the server only binds to loopback (see
``commands.py``), so the guard lets everything through.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import ipaddress
import json

LOOPBACK_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"}


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and localhost; any other name or address is not loopback."""
    host = host.strip().strip("[]")
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def token_ok(authorization: str | None, token: str) -> bool:
    """Does an ``Authorization`` header carry ``token`` (Bearer, or Basic with any user)?"""
    if not authorization:
        return False
    scheme, _, value = authorization.strip().partition(" ")
    value = value.strip()
    expected = token.encode()
    if scheme.lower() == "bearer":
        return hmac.compare_digest(value.encode(), expected)
    if scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            return False
        _user, sep, password = decoded.partition(b":")
        return bool(sep) and hmac.compare_digest(password, expected)
    return False


class Guard:
    """ASGI middleware: 401 without the token, 413 for oversized bodies, nosniff everywhere."""

    def __init__(self, app, *, token: str | None, max_body: int):
        self.app, self.token, self.max_body = app, token, max_body

    async def __call__(self, scope, receive, send):
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        if self.token is not None and not token_ok(headers.get("authorization"), self.token):
            if scope["type"] == "websocket":
                return await send({"type": "websocket.close", "code": 1008})
            return await _json(send, 401, _unauthorized_body(scope["path"]), extra=[
                (b"www-authenticate", b'Basic realm="brushwork", charset="UTF-8"'),
                (b"www-authenticate", b'Bearer realm="brushwork"'),
            ])
        if scope["type"] == "http" and scope["method"] in ("POST", "PUT", "PATCH", "DELETE"):
            length = headers.get("content-length")
            if length is not None and (not length.isdigit() or int(length) > self.max_body):
                return await _json(send, 413, _error_body(scope["path"], "body",
                                                          f"request body larger than {self.max_body} bytes"))
            body, more, chunks = 0, True, []
            while more:  # read it all (bounded) so an oversized chunked body gets a clean 413
                message = await receive()
                if message["type"] == "http.disconnect":
                    return
                chunk = message.get("body", b"")
                body += len(chunk)
                if body > self.max_body:
                    return await _json(send, 413, _error_body(scope["path"], "body",
                                                              f"request body larger than {self.max_body} bytes"))
                chunks.append(chunk)
                more = message.get("more_body", False)
            receive = _replay(b"".join(chunks), receive)

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                hdrs = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"x-content-type-options"]
                hdrs.append((b"x-content-type-options", b"nosniff"))
                message = {**message, "headers": hdrs}
            await send(message)

        await self.app(scope, receive, send_with_headers if scope["type"] == "http" else send)


def _replay(body: bytes, receive):
    """A ``receive`` that hands the app the already-read body, then the real messages."""
    sent = False

    async def replay():
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


def _unauthorized_body(path: str) -> dict:
    message = ("this server needs its token: send 'Authorization: Bearer <token>', "
               "or HTTP Basic auth with any user name and the token as password")
    if path.startswith("/v1/"):
        return {"error": {"message": message, "type": "invalid_request_error", "param": None,
                          "code": "invalid_api_key"}}
    return {"error": "Unauthorized", "detail": message, "field": "authorization"}


def _error_body(path: str, field: str, message: str) -> dict:
    if path.startswith("/v1/"):
        return {"error": {"message": message, "type": "invalid_request_error", "param": field, "code": None}}
    return {"error": "RequestTooLarge", "detail": message, "field": field}


async def _json(send, status: int, body: dict, extra: list | None = None) -> None:
    data = json.dumps(body).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode()),
               (b"x-content-type-options", b"nosniff")] + (extra or [])
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": data})
