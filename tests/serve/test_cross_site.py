"""Cross-site protection: the Host check (DNS rebinding), the Origin check on state-changing
requests (form posts, ``text/plain`` fetches and multipart uploads need no CORS preflight), and
the token rules (16 characters at least, ``--token auto``).

Every refusal is asserted together with a control that the same request is accepted from the
server's own origin, so a test fails if the protection is removed (the refused request would get
200) and also if it is made so strict that the server's own UI breaks.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time

import pytest

from brushwork.errors import InvalidParameter

TOKEN = "cross-site-token-0123456789"  # 27 characters
OWN = "http://127.0.0.1:7860"
EVIL = "https://evil.example"
ALLOWED = "https://ok.example"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """No token, the UI mounted, one ``--allow-host`` name for any port and one for one port, one ``--cors``."""
    from fastapi.testclient import TestClient

    from brushwork.serve.app import create_app
    from brushwork.serve.service import ServeConfig

    app = create_app(ServeConfig(home=tmp_path_factory.mktemp("xsite"), worker=False, ui=True,
                                 allow_hosts=["mybox.lan", "proxy.lan:8080"], cors=[ALLOWED]))
    with TestClient(app, base_url=OWN) as client:
        yield app, client


@pytest.fixture(scope="module")
def tokened(tmp_path_factory):
    from fastapi.testclient import TestClient

    from brushwork.serve.app import create_app
    from brushwork.serve.service import ServeConfig

    app = create_app(ServeConfig(home=tmp_path_factory.mktemp("xsite-token"), worker=False, ui=False, token=TOKEN))
    with TestClient(app, base_url="http://gpu-box.lan:7860") as client:
        yield app, client


def _refused(r, status: int, field: str, openai: bool = False) -> None:
    assert r.status_code == status, (r.status_code, r.text[:300])
    assert r.headers["content-type"].startswith("application/json")
    assert "\n" not in r.text
    body = r.json()
    if openai:
        assert body["error"]["param"] == field and body["error"]["type"] == "invalid_request_error", body
    else:
        assert body["field"] == field and body["detail"], body


# ------------------------------------------------------------------ Host (DNS rebinding)


@pytest.mark.parametrize("host", [
    "attacker.example", "attacker.example:7860", "127.0.0.1.nip.io:7860", "192.168.1.5:7860", "0.0.0.0:7860",
    "mybox.lan.attacker.example", "proxy.lan", "proxy.lan:8081", "testserver", "[::2]:7860", "::1",
    "127.0.0.1:99999", "127.0.0.1:x", "user@127.0.0.1",
])
def test_foreign_host_is_refused_without_a_token(server, host):
    _, client = server
    for method, path in (("GET", "/api/v1/health"), ("GET", "/ui/"), ("GET", "/docs"), ("POST", "/sdapi/v1/interrupt")):
        r = client.request(method, path, headers={"Host": host})
        _refused(r, 403, "host")
        assert "--allow-host" in r.json()["detail"]
    _refused(client.post("/v1/images/generations", headers={"Host": host}), 403, "host", openai=True)


@pytest.mark.parametrize("host", [
    "127.0.0.1", "127.0.0.1:7860", "127.0.0.1:1234", "localhost:7860", "LOCALHOST", "[::1]:7860", "[::1]",
    "mybox.lan", "mybox.lan:7860", "MyBox.lan:1", "proxy.lan:8080",
])
def test_loopback_and_allowed_hosts_are_served(server, host):
    _, client = server
    r = client.get("/api/v1/health", headers={"Host": host})
    assert r.status_code == 200, (host, r.status_code, r.text[:200])
    assert client.get("/ui/", headers={"Host": host}).status_code == 200


def test_with_a_token_any_host_is_served(tokened):
    _, client = tokened
    auth = {"Authorization": f"Bearer {TOKEN}"}
    for host in ("gpu-box.lan:7860", "192.168.1.5:7860", "attacker.example"):
        assert client.get("/api/v1/health", headers={**auth, "Host": host}).status_code == 200
        assert client.get("/api/v1/health", headers={"Host": host}).status_code == 401


# ------------------------------------------------------------------ Origin on state-changing requests


def _running_job(app) -> str:
    """A job marked running, as the worker would (this app has none), so interrupt has something to stop."""
    from brushwork.engine.params import GenerationParams

    queue = app.state.service.queue
    job = queue.submit(GenerationParams.build(prompt="a red circle", steps=2).model_dump(), source="api")
    claimed = queue.claim(os.getpid())
    assert claimed is not None and claimed.id == job.id
    return job.id


def test_foreign_origin_text_plain_interrupt_is_refused(server):
    """The probe from the issue: a no-preflight ``text/plain`` POST from another site stopped the running job."""
    app, client = server
    job = _running_job(app)
    try:
        for origin in (EVIL, "null", "http://127.0.0.1:3000", "http://localhost:7860", "file://"):
            r = client.post("/sdapi/v1/interrupt", content="{}",
                            headers={"Content-Type": "text/plain", "Origin": origin})
            _refused(r, 403, "origin")
            assert "--cors" in r.json()["detail"]
            assert not app.state.service.queue.cancel_requested(job), origin
        r = client.post("/sdapi/v1/interrupt", content="{}", headers={"Content-Type": "text/plain", "Origin": OWN})
        assert r.status_code == 200, r.text
        assert app.state.service.queue.cancel_requested(job)
    finally:
        app.state.service.queue.mark_cancelled(job, "test over")


def test_foreign_origin_upload_to_the_ui_is_refused_and_writes_nothing(server):
    """A multipart POST to Gradio's upload route, the one the issue showed writing a file."""
    _, client = server
    marker = f"brushwork-cross-site-{time.time_ns()}".encode()
    r = client.post("/ui/gradio_api/upload", files={"files": ("evil.txt", marker, "text/plain")},
                    headers={"Origin": EVIL})
    _refused(r, 403, "origin")
    # the control upload (same origin) succeeds and shows where uploads land; the refused one is not there
    r = client.post("/ui/gradio_api/upload", files={"files": ("own.txt", b"own upload", "text/plain")},
                    headers={"Origin": OWN})
    assert r.status_code == 200, r.text
    from pathlib import Path

    uploaded = Path(r.json()[0])
    assert uploaded.read_bytes() == b"own upload"
    root = uploaded.parent.parent
    for path in root.rglob("*"):
        if path.is_file() and path.stat().st_size == len(marker):
            assert path.read_bytes() != marker, f"the refused upload was written to {path}"


def test_foreign_origin_cannot_queue_from_the_ui(server):
    """The Generate button's route (Gradio's queue) is refused cross-site like every other POST."""
    _, client = server
    r = client.post("/ui/gradio_api/queue/join", json={"data": [], "fn_index": 0, "session_hash": "x"},
                    headers={"Origin": EVIL})
    _refused(r, 403, "origin")


@pytest.mark.parametrize("method,path", [
    ("POST", "/api/v1/jobs"), ("DELETE", "/api/v1/jobs/" + "0" * 32), ("POST", "/sdapi/v1/options"),
    ("POST", "/sdapi/v1/txt2img"), ("PUT", "/api/v1/jobs"), ("PATCH", "/api/v1/jobs"),
])
def test_every_state_changing_method_checks_the_origin(server, method, path):
    _, client = server
    _refused(client.request(method, path, json=[], headers={"Origin": EVIL}), 403, "origin")
    _refused(client.request(method, path, json=[], headers={"Origin": "null"}), 403, "origin")
    r = client.request(method, path, json=[], headers={"Origin": OWN})
    assert r.status_code not in (401, 403) and r.status_code < 500, (method, path, r.status_code, r.text[:200])


def test_openai_route_refusal_has_the_openai_shape(server):
    _, client = server
    r = client.post("/v1/images/generations", json=[], headers={"Origin": EVIL})  # [] queues nothing if let through
    _refused(r, 403, "origin", openai=True)


def test_foreign_origin_with_a_valid_token_is_refused(tokened):
    """A browser that has cached Basic credentials sends them cross-site; the Origin still stops it."""
    import base64

    app, client = tokened
    basic = "Basic " + base64.b64encode(f"webui:{TOKEN}".encode()).decode()
    for auth in (f"Bearer {TOKEN}", basic):
        for origin in (EVIL, "null", "http://gpu-box.lan:8000"):
            r = client.post("/sdapi/v1/interrupt", content="{}",
                            headers={"Authorization": auth, "Origin": origin, "Content-Type": "text/plain"})
            _refused(r, 403, "origin")
        r = client.post("/sdapi/v1/interrupt", content="{}",
                        headers={"Authorization": auth, "Origin": "http://gpu-box.lan:7860"})
        assert r.status_code == 200, r.text
    assert client.post("/sdapi/v1/interrupt", headers={"Origin": "http://gpu-box.lan:7860"}).status_code == 401


@pytest.mark.parametrize("origin,host", [
    (OWN, "127.0.0.1:7860"), ("https://127.0.0.1:7860", "127.0.0.1:7860"), ("http://LOCALHOST:7860", "localhost:7860"),
    ("http://localhost", "localhost"), ("http://localhost:80", "localhost"), ("https://localhost", "localhost"),
    ("http://[::1]:7860", "[::1]:7860"), ("http://mybox.lan:7860", "mybox.lan:7860"), (OWN + "/", "127.0.0.1:7860"),
])
def test_same_origin_is_accepted(server, origin, host):
    _, client = server
    r = client.post("/sdapi/v1/interrupt", headers={"Origin": origin, "Host": host})
    assert r.status_code == 200, (origin, host, r.text)


@pytest.mark.parametrize("origin,host", [
    ("http://127.0.0.1:7861", "127.0.0.1:7860"), ("http://localhost:7860", "127.0.0.1:7860"),
    ("http://localhost:8080", "localhost"), ("ws://127.0.0.1:7860", "127.0.0.1:7860"),
    ("http://127.0.0.1:7860@evil.example", "127.0.0.1:7860"), ("http://mybox.lan:7860", "127.0.0.1:7860"),
    ("", "127.0.0.1:7860"), ("null", "127.0.0.1:7860"),
])
def test_other_ports_names_and_schemes_are_foreign(server, origin, host):
    _, client = server
    _refused(client.post("/sdapi/v1/interrupt", headers={"Origin": origin, "Host": host}), 403, "origin")


def test_an_origin_listed_in_cors_is_accepted(server):
    _, client = server
    for origin in (ALLOWED, ALLOWED.upper(), ALLOWED + "/"):
        r = client.post("/sdapi/v1/interrupt", content="{}", headers={"Origin": origin, "Content-Type": "text/plain"})
        assert r.status_code == 200, (origin, r.text)
    _refused(client.post("/sdapi/v1/interrupt", headers={"Origin": "https://ok.example:8443"}), 403, "origin")


def test_reads_and_requests_without_origin_are_not_affected(server):
    """Only state-changing requests are checked: reads stay protected by CORS (no allow-origin header),
    and clients that are not browsers send no Origin at all."""
    _, client = server
    r = client.get("/api/v1/health", headers={"Origin": EVIL})
    assert r.status_code == 200 and "access-control-allow-origin" not in r.headers
    assert client.post("/sdapi/v1/interrupt").status_code == 200


# ------------------------------------------------------------------ the Guard alone: missing Host, WebSockets


def _ws_app(token=None, **kw):
    from starlette.applications import Starlette
    from starlette.routing import Route, WebSocketRoute
    from starlette.responses import PlainTextResponse

    from brushwork.serve.auth import Guard

    async def echo(ws):
        await ws.accept()
        await ws.send_text("hello")
        await ws.close()

    async def hello(request):
        return PlainTextResponse("hello")

    inner = Starlette(routes=[WebSocketRoute("/ws", echo), Route("/", hello, methods=["GET", "POST"])])
    return Guard(inner, token=token, max_body=1024, **kw)


def test_missing_host_is_refused_without_a_token():
    """HTTP/1.1 requires Host; a request without one gets a one-line 400 (httpx always sends one, so
    this calls the middleware directly)."""
    sent = []

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "method": "GET", "path": "/", "headers": [], "query_string": b""}
    asyncio.run(_ws_app()(scope, receive, send))
    assert sent[0]["status"] == 400
    body = json.loads(sent[1]["body"])
    assert body["field"] == "host" and "Host header" in body["detail"]
    sent.clear()
    scope["headers"] = [(b"host", b"127.0.0.1:7860")]
    asyncio.run(_ws_app()(scope, receive, send))
    assert sent[0]["status"] == 200


def test_websocket_handshakes_check_host_origin_and_token():
    """The app serves no WebSocket today (Gradio 5+ streams over SSE), but the Guard covers the
    handshake anyway: a cross-site page may open a WebSocket without any CORS check."""
    from starlette.testclient import TestClient
    from starlette.websockets import WebSocketDisconnect

    def connect(app, headers, base="http://127.0.0.1:7860"):
        with TestClient(app) as client:  # websocket_connect ignores base_url: the Host comes from this URL
            with client.websocket_connect(base.replace("http://", "ws://") + "/ws", headers=headers) as ws:
                return ws.receive_text()

    open_app, locked = _ws_app(), _ws_app(token=TOKEN)
    assert connect(open_app, {"Origin": OWN}) == "hello"
    assert connect(open_app, {}) == "hello"
    assert connect(locked, {"Authorization": f"Bearer {TOKEN}", "Origin": OWN}) == "hello"
    for app, headers, base in (
        (open_app, {"Origin": EVIL}, "http://127.0.0.1:7860"),
        (open_app, {"Origin": "null"}, "http://127.0.0.1:7860"),
        (open_app, {}, "http://attacker.example:7860"),
        (locked, {"Origin": OWN}, "http://127.0.0.1:7860"),
        (locked, {"Authorization": "Bearer wrong-token-wrong-token"}, "http://127.0.0.1:7860"),
        (locked, {"Authorization": f"Bearer {TOKEN}", "Origin": EVIL}, "http://127.0.0.1:7860"),
    ):
        with pytest.raises(WebSocketDisconnect) as refused:
            connect(app, headers, base)
        assert refused.value.code == 1008, (headers, base)


# ------------------------------------------------------------------ tokens


@pytest.mark.parametrize("token", ["abc", "s3cret", "fifteen-chars-x", " " * 3])
def test_short_tokens_are_refused_in_one_line(token):
    from brushwork.serve.auth import check_token

    with pytest.raises(InvalidParameter) as err:
        check_token(token)
    message = str(err.value)
    assert "--token" in message and "BRUSHWORK_TOKEN" in message and "\n" not in message
    assert token.strip() == "" or token not in message  # never echoes the token
    check_token("sixteen-chars-ok")
    check_token(None)


def test_create_app_refuses_a_short_token_and_a_bad_allow_host(tmp_path):
    from brushwork.serve.app import create_app
    from brushwork.serve.service import ServeConfig

    with pytest.raises(InvalidParameter, match="at least 16 characters"):
        create_app(ServeConfig(home=tmp_path, token="short", worker=False, ui=False))
    with pytest.raises(InvalidParameter, match="--allow-host"):
        create_app(ServeConfig(home=tmp_path, allow_hosts=["http://mybox.lan"], worker=False, ui=False))


def test_auto_token_is_long_and_fresh():
    from brushwork.serve.commands import resolve_token

    a, b = resolve_token("auto"), resolve_token("auto")
    assert len(a) >= 32 and a != b


def _cli(*args, env_extra=None):
    env = {k: v for k, v in os.environ.items() if k != "BRUSHWORK_TOKEN"}
    env.update(env_extra or {})
    return subprocess.run([sys.executable, "-m", "brushwork", "serve", *args], env=env, capture_output=True,
                          text=True, timeout=120)


@pytest.mark.parametrize("args,env,expected", [
    (["--token", "short"], {}, "at least 16 characters"),
    ([], {"BRUSHWORK_TOKEN": "fifteen-chars-x"}, "at least 16 characters"),
    (["--allow-host", "http://mybox.lan"], {}, "--allow-host takes a host name"),
    (["--allow-host", "*.lan"], {}, "--allow-host takes a host name"),
])
def test_cli_refuses_bad_tokens_and_hosts_in_one_line(tmp_path, args, env, expected):
    # --port 0 is refused after these checks, so the command ends at once even without them
    r = _cli("--port", "0", *args, env_extra={"BRUSHWORK_HOME": str(tmp_path), **env})
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], r.stderr
    assert "short" not in lines[0] and "fifteen" not in lines[0]


def test_token_auto_prints_a_working_token_once(tmp_path, tiny_model_dir, tools):
    """``serve --token auto``: the generated token is printed once on stderr and is the one required."""
    import httpx

    home = tools.make_home(tmp_path / "home", tiny_model_dir)
    port = tools.free_port()
    log = tmp_path / "server.log"
    env = {k: v for k, v in os.environ.items() if k != "BRUSHWORK_TOKEN"}
    env.update(BRUSHWORK_HOME=str(home), HF_HUB_OFFLINE="1", GRADIO_ANALYTICS_ENABLED="False")
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "brushwork", "serve", "--port", str(port), "--model", "tiny",
                                 "--threads", "1", "--no-ui", "--token", "auto"], env=env, stdout=out,
                                stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}/api/v1/health"

        def listening():
            if proc.poll() is not None:
                raise AssertionError(f"server exited with {proc.returncode}: {log.read_text()[-2000:]}")
            try:
                return httpx.get(url, timeout=5)
            except httpx.HTTPError:
                return None

        assert tools.wait_for(listening, timeout=180, interval=0.3, what="the server").status_code == 401
        lines = [ln for ln in log.read_text().splitlines() if ln.startswith("token (generated")]
        assert len(lines) == 1, log.read_text()[-2000:]  # printed before the server listens, once
        generated = lines[0].rsplit(" ", 1)[1]
        assert len(generated) >= 32
        assert httpx.get(url, headers={"Authorization": f"Bearer {generated}"}, timeout=5).status_code == 200
        assert httpx.get(url, headers={"Authorization": "Bearer auto"}, timeout=5).status_code == 401
        assert log.read_text().count(generated) == 1
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
