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
    with TestClient(app) as c:
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
    with TestClient(app) as c:
        for target in (outputs / "page.html", outputs / "00000-1.png", "/etc/passwd"):
            r = c.get(f"/ui/gradio_api/file={target}")
            assert r.status_code in (403, 404), (target, r.status_code)
            assert b"alert" not in r.content
