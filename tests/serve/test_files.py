"""The image route: only PNG/JPEG/WebP from the outputs folder, through safe_join, with nosniff."""

from __future__ import annotations

import io
import os

import pytest
from PIL import Image


def _image(fmt: str) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (4, 4), (200, 10, 10)).save(buf, format=fmt)
    return buf.getvalue()


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    from fastapi.testclient import TestClient

    from brushwork.serve.app import create_app
    from brushwork.serve.service import ServeConfig

    root = tmp_path_factory.mktemp("files")
    outputs = root / "home" / "outputs"
    outputs.mkdir(parents=True)
    (outputs / "00000-1.png").write_bytes(_image("PNG"))
    (outputs / "photo.jpg").write_bytes(_image("JPEG"))
    (outputs / "photo.webp").write_bytes(_image("WEBP"))
    (outputs / "sub").mkdir()
    (outputs / "sub" / "inner.png").write_bytes(_image("PNG"))
    (outputs / "page.html").write_text("<script>alert(1)</script>")
    (outputs / "pic.svg").write_text('<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"/>')
    (outputs / "fake.png").write_text("<html><script>alert(1)</script></html>")  # HTML named .png
    (outputs / ".00001-2.png.abc.tmp").write_bytes(_image("PNG"))  # a write in progress
    (outputs / ".hidden.png").write_bytes(_image("PNG"))
    secret = root / "secret.png"
    secret.write_bytes(_image("PNG"))
    os.symlink(secret, outputs / "link-out.png")
    os.symlink(outputs / "00000-1.png", outputs / "link-in.png")
    app = create_app(ServeConfig(home=root / "home", worker=False, ui=False))
    with TestClient(app, base_url="http://127.0.0.1") as c:  # a loopback Host, as a browser sends
        yield c


@pytest.mark.parametrize("name,media", [
    ("00000-1.png", "image/png"), ("photo.jpg", "image/jpeg"), ("photo.webp", "image/webp"),
    ("sub/inner.png", "image/png"), ("link-in.png", "image/png"),
])
def test_serves_images_with_their_type_and_nosniff(client, name, media):
    r = client.get(f"/api/v1/images/{name}")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == media
    assert r.headers["x-content-type-options"] == "nosniff"
    assert "default-src 'none'" in r.headers["content-security-policy"]
    Image.open(io.BytesIO(r.content)).verify()


@pytest.mark.parametrize("name", [
    "page.html", "pic.svg", "fake.png", ".00001-2.png.abc.tmp", ".hidden.png", "link-out.png", "missing.png",
    "../secret.png", "sub/../../secret.png", "%2e%2e/secret.png", "..%2fsecret.png", "%2fetc%2fpasswd",
    "/etc/passwd", "sub", "sub/", "..", "%00.png", "00000-1.png%00.html",
])
def test_refuses_everything_else(client, name):
    r = client.get(f"/api/v1/images/{name}")
    assert 400 <= r.status_code < 500, (name, r.status_code)
    assert r.headers["content-type"].startswith("application/json")
    assert b"alert" not in r.content and b"PNG" not in r.content[:8]
    assert r.headers["x-content-type-options"] == "nosniff"


def test_the_ui_does_not_serve_the_outputs_folder(tmp_path):
    """Gradio serves files under its ``allowed_paths`` inline, whatever they are; the UI gives it none."""
    from fastapi.testclient import TestClient

    from brushwork.serve.app import create_app
    from brushwork.serve.service import ServeConfig

    outputs = tmp_path / "home" / "outputs"
    outputs.mkdir(parents=True)
    (outputs / "page.html").write_text("<script>alert(1)</script>")
    (outputs / "00000-1.png").write_bytes(_image("PNG"))
    app = create_app(ServeConfig(home=tmp_path / "home", worker=False, ui=True))
    with TestClient(app, base_url="http://127.0.0.1") as c:  # a loopback Host, as a browser sends
        for target in (outputs / "page.html", outputs / "00000-1.png", "/etc/passwd"):
            r = c.get(f"/ui/gradio_api/file={target}")
            assert r.status_code in (403, 404), (target, r.status_code)
            assert b"alert" not in r.content


def _raw_get(app, raw_path: bytes) -> tuple[int, dict]:
    """GET ``raw_path`` exactly as sent on the wire (HTTP clients normalise ``..`` away before sending)."""
    import asyncio
    import json

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET", "scheme": "http",
             "path": raw_path.decode("latin-1"), "raw_path": raw_path, "query_string": b"", "root_path": "",
             "headers": [(b"host", b"127.0.0.1")], "client": ("127.0.0.1", 5), "server": ("127.0.0.1", 80)}
    sent = []

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return sent[0]["status"], json.loads(body)


@pytest.mark.parametrize("raw", [b"/api/v1/images/../secret.png", b"/api/v1/images/sub/../../secret.png",
                                 b"/api/v1/images/.."])
def test_traversal_sent_raw_reaches_safe_join_and_is_refused(client, raw):
    status, body = _raw_get(client.app, raw)
    assert status == 400 and body["field"] == "name", body
    assert "'..' not allowed" in body["detail"], body


def test_the_gallery_shows_no_symlinks(client):
    names = {p.name for p in client.app.state.service.gallery()}
    assert "00000-1.png" in names
    assert not names & {"link-out.png", "link-in.png"}, names


def test_the_ui_cache_is_private_to_the_user_and_inside_the_home(tmp_path):
    from brushwork.serve.app import create_app
    from brushwork.serve.service import ServeConfig

    from brushwork.serve.ui import build_ui

    app = create_app(ServeConfig(home=tmp_path / "home", worker=False, ui=True))
    cache = tmp_path / "home" / "serve" / "ui-cache"
    assert os.environ["GRADIO_TEMP_DIR"] == str(cache)
    assert cache.stat().st_mode & 0o777 == 0o700
    assert build_ui(app.state.service).delete_cache == (600, 3600)  # Gradio deletes files older than an hour


def test_errors_name_the_model_never_a_server_path(tmp_path, tiny_model_dir, tools):
    import shutil

    from fastapi.testclient import TestClient

    from brushwork.models.registry import Registry
    from brushwork.serve.app import create_app
    from brushwork.serve.service import ServeConfig

    home = tools.make_home(tmp_path / "home", tiny_model_dir)
    kept = shutil.copytree(tiny_model_dir, home / "models" / "gone")
    with Registry(home) as reg:
        reg.add(kept, name="gone")
    shutil.rmtree(kept)
    app = create_app(ServeConfig(home=home, worker=False, ui=False, model="tiny"))
    with TestClient(app, base_url="http://127.0.0.1") as c:
        for path, body in (("/api/v1/jobs", {"model": "gone"}), ("/v1/images/generations", {"prompt": "x",
                                                                                          "model": "gone"})):
            r = c.post(path, json=body)
            assert 400 <= r.status_code < 500 and "gone" in r.text, r.text
            assert str(tmp_path) not in r.text and "/models/" not in r.text, r.text


def test_retention_deletes_old_and_excess_finished_jobs_only(tmp_path):
    import time

    from brushwork.serve.service import ServeConfig, Service

    svc = Service(ServeConfig(home=tmp_path / "home", worker=False, ui=False, keep_days=1, max_outputs_gb=3e-6))
    outputs, queue, now = svc.config.outputs, svc.queue, time.time()

    def finished(name: str, age_days: float, size: int) -> str:
        job = queue.submit({"prompt": name})
        queue.claim(worker_pid=1)
        (outputs / f"{name}.png").write_bytes(b"x" * size)
        queue.finish(job.id, [f"{name}.png"], {})
        with queue._write() as db:
            db.execute("UPDATE jobs SET finished_at = ? WHERE id = ?", (now - age_days * 86400, job.id))
        return job.id

    old = finished("old", 2, 100)  # past keep_days
    big = finished("big", 0.5, 2_000)  # with the next one, over 3,000 bytes: the oldest of them goes
    new = finished("new", 0.1, 2_000)
    secret = tmp_path / "secret.png"
    secret.write_bytes(b"not the server's")
    os.symlink(secret, outputs / "link.png")
    linked = queue.submit({"prompt": "linked"})
    queue.claim(worker_pid=1)
    queue.finish(linked.id, ["link.png"], {})
    with queue._write() as db:
        db.execute("UPDATE jobs SET finished_at = ? WHERE id = ?", (now - 5 * 86400, linked.id))
    waiting = queue.submit({"prompt": "still queued"})
    (outputs / "someone-elses.png").write_bytes(b"y" * 5_000)  # no job wrote it: never touched

    removed = svc.retain(now=now)

    assert set(removed) == {old, big, linked.id}
    assert sorted(p.name for p in outputs.iterdir()) == ["link.png", "new.png", "someone-elses.png"]
    assert secret.read_bytes() == b"not the server's"
    assert queue.get(new).status == "done" and queue.get(waiting.id).status == "queued"
    assert all(queue.get(i) is None for i in removed)
