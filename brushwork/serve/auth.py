"""The guard in front of every route: Host and Origin checks, the token, a request-size cap, nosniff.

It is plain ASGI middleware wrapped around the whole app, so nothing mounted later (the Gradio
UI, ``/docs``, ``/openapi.json``) can slip past it. In order, for every HTTP request and
WebSocket handshake:

1. **Host** (only without a token). The ``Host`` header must name loopback (``127.0.0.1`` or any
   127/8 address, ``localhost``, ``[::1]``), with any port, or a name given with ``--allow-host``
   (``NAME`` for any port, ``NAME:PORT`` for one). Anything else gets 403 (field ``host``), a
   missing or malformed ``Host`` 400: a web page that rebinds its own DNS name to 127.0.0.1 still
   sends its own name, so DNS rebinding cannot reach the server. The port is not checked: the
   browser always sends the port it connected to, and the Origin check below compares it. With a
   token any Host is served (the server may be reached by any name), since the token is the guard.
2. **Origin** (always). A state-changing request (POST, PUT, PATCH, DELETE) or a WebSocket
   handshake that carries an ``Origin`` header is refused with 403 (field ``origin``) unless the
   origin is the server's own (``http://`` or ``https://`` + the request's own ``Host``, same name
   and port; a Host without a port matches the scheme's default port) or is listed in ``--cors``.
   ``Origin: null`` (sandboxed frames, ``file://`` pages) is foreign. Browsers send ``Origin`` on
   every cross-site POST, including the "simple" ones (form posts, ``text/plain`` fetches) that
   need no CORS preflight; clients that are not browsers send none and are not affected. This is
   also what stops a browser that has cached Basic credentials from using them cross-site.
3. **Token** (when set). ``Authorization: Bearer <token>``, or HTTP Basic with any user name and
   the token as password (A1111 clients send Basic); 401 otherwise. Tokens are at least
   ``MIN_TOKEN_LENGTH`` characters (``check_token``).
4. **Body size**: 413 beyond ``max_body`` bytes, chunked bodies included.

Refusals are one-line JSON bodies in the shape of the route's API: ``/v1/…`` gets OpenAI's error
object, everything else ``{"error": kind, "detail": message, "field": field}``. Without a token
the server also binds only to loopback (see ``commands.py``).
"""

from __future__ import annotations

import base64
import binascii
import hmac
import ipaddress
import json

from brushwork.errors import InvalidParameter

LOOPBACK_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"}
MIN_TOKEN_LENGTH = 16
STATE_CHANGING = ("POST", "PUT", "PATCH", "DELETE")


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and localhost; any other name or address is not loopback."""
    host = host.strip().strip("[]")
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def split_host(value: str) -> tuple[str, int | None] | None:
    """``(name, port)`` from a ``Host`` header or an origin's authority, lower-cased; IPv6 keeps
    its brackets. ``None`` when it is not a valid ``host[:port]`` (bare IPv6, user info, paths)."""
    value = value.strip().lower()
    if value.startswith("["):
        name, bracket, rest = value.partition("]")
        name += bracket
        if not bracket or (rest and not rest.startswith(":")):
            return None
        port = rest[1:] if rest else None
    else:
        name, colon, port = value.partition(":")
        port = port if colon else None
    if not name or any(c in name for c in "/\\@?#%*, \t") or (port is not None and ":" in port):
        return None
    if port is None:
        return name, None
    if not (port.isascii() and port.isdigit()) or not 0 < int(port) < 65536:
        return None
    return name, int(port)


def parse_allow_hosts(names) -> list[tuple[str, int | None]]:
    """``--allow-host`` values as ``(name, port or None)``; one-line error for anything else."""
    out = []
    for raw in names or ():
        parsed = split_host(raw)
        if parsed is None:
            raise InvalidParameter(f"--allow-host takes a host name like mybox.lan or mybox.lan:7860 "
                                   f"(no scheme, path or wildcard), not {raw!r}", field="allow_host")
        out.append(parsed)
    return out


def check_token(token: str | None) -> None:
    """Refuse an empty token, or one shorter than ``MIN_TOKEN_LENGTH``, in one line (never echoing it)."""
    if token is None:
        return
    if not token.strip():
        raise InvalidParameter("--token (or BRUSHWORK_TOKEN) is set but empty", field="token")
    if len(token) < MIN_TOKEN_LENGTH:
        raise InvalidParameter(f"--token (or BRUSHWORK_TOKEN) must be at least {MIN_TOKEN_LENGTH} characters, "
                               f"not {len(token)}; pass --token auto to generate one", field="token")


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
    """ASGI middleware: Host (no token), Origin, token, body size, nosniff; see the module docstring."""

    def __init__(self, app, *, token: str | None, max_body: int, allow_hosts=(), cors=()):
        self.app, self.token, self.max_body = app, token, max_body
        self.allow_hosts = parse_allow_hosts(allow_hosts)
        self.cors = {o.strip().lower().rstrip("/") for o in cors or ()}

    def host_ok(self, host: str | None) -> bool:
        """Without a token: is this ``Host`` header loopback or an ``--allow-host`` name?"""
        parsed = split_host(host) if host else None
        if parsed is None:
            return False
        name, port = parsed
        return is_loopback(name) or any(n == name and p in (None, port) for n, p in self.allow_hosts)

    def origin_ok(self, origin: str, host: str | None) -> bool:
        """Is ``origin`` the server's own (same name and port as the request's ``Host``) or in ``--cors``?"""
        origin = origin.strip().lower().rstrip("/")
        if origin in self.cors:
            return True
        scheme, sep, authority = origin.partition("://")
        if not sep or scheme not in ("http", "https"):
            return False  # "null", file://, extensions: foreign
        own, asked = split_host(authority), split_host(host or "")
        if own is None or asked is None or own[0] != asked[0]:
            return False
        default = 80 if scheme == "http" else 443
        return (own[1] or default) == (asked[1] or default)

    async def __call__(self, scope, receive, send):
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        path, host, ws = scope["path"], headers.get("host"), scope["type"] == "websocket"
        if self.token is None and not self.host_ok(host):
            if ws:
                return await send({"type": "websocket.close", "code": 1008})
            if not host:
                return await _json(send, 400, _error_body(path, "host", "a request needs a Host header",
                                                          "MissingHost"))
            return await _json(send, 403, _error_body(path, "host", (
                f"Host {host[:100]!r} is not served without a token: open http://127.0.0.1:<port> or "
                f"http://localhost:<port>, or start the server with --allow-host NAME (or --token)"), "ForbiddenHost"))
        origin = headers.get("origin")
        if origin is not None and (ws or scope["method"] in STATE_CHANGING) and not self.origin_ok(origin, host):
            if ws:
                return await send({"type": "websocket.close", "code": 1008})
            return await _json(send, 403, _error_body(path, "origin", (
                f"cross-site request refused: Origin {origin[:100]!r} is not this server's own; "
                f"to allow that site, start the server with --cors ORIGIN"), "ForbiddenOrigin"))
        if self.token is not None and not token_ok(headers.get("authorization"), self.token):
            if ws:
                return await send({"type": "websocket.close", "code": 1008})
            return await _json(send, 401, _unauthorized_body(path), extra=[
                (b"www-authenticate", b'Basic realm="brushwork", charset="UTF-8"'),
                (b"www-authenticate", b'Bearer realm="brushwork"'),
            ])
        if not ws and scope["method"] in STATE_CHANGING:
            too_large = _error_body(path, "body", f"request body larger than {self.max_body} bytes")
            length = headers.get("content-length")
            if length is not None and (not (length.isascii() and length.isdigit()) or int(length) > self.max_body):
                return await _json(send, 413, too_large)
            body, more, chunks = 0, True, []
            while more:  # read it all (bounded) so an oversized chunked body gets a clean 413
                message = await receive()
                if message["type"] == "http.disconnect":
                    return
                chunk = message.get("body", b"")
                body += len(chunk)
                if body > self.max_body:
                    return await _json(send, 413, too_large)
                chunks.append(chunk)
                more = message.get("more_body", False)
            receive = _replay(b"".join(chunks), receive)

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                hdrs = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"x-content-type-options"]
                hdrs.append((b"x-content-type-options", b"nosniff"))
                message = {**message, "headers": hdrs}
            await send(message)

        await self.app(scope, receive, send_with_headers if not ws else send)


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


def _error_body(path: str, field: str, message: str, kind: str = "RequestTooLarge") -> dict:
    if path.startswith("/v1/"):
        return {"error": {"message": message, "type": "invalid_request_error", "param": field, "code": None}}
    return {"error": kind, "detail": message, "field": field}


async def _json(send, status: int, body: dict, extra: list | None = None) -> None:
    data = json.dumps(body).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode()),
               (b"x-content-type-options", b"nosniff")] + (extra or [])
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": data})
