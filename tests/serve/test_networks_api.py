"""LoRAs and embeddings through a live server: the A1111 lists, refresh, and the prompt syntax through the A1111,
OpenAI and native APIs (tiny model)."""

from __future__ import annotations

import base64
import io
import sys
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "engine"))
import loras  # noqa: E402


@pytest.fixture(scope="module")
def server(tmp_path_factory, tiny_model_dir, tools):
    import torch

    from brushwork.models.load import load_pipeline

    home = tools.make_home(tmp_path_factory.mktemp("nets") / "home", tiny_model_dir)
    pipe = load_pipeline(str(tiny_model_dir), dtype=torch.float32).pipe
    (home / "loras").mkdir()
    (home / "embeddings").mkdir()
    loras.kohya_lora(pipe, home / "loras" / "shiny.safetensors", metadata={"ss_training_comment": "secret path"})
    loras.embedding(pipe, home / "embeddings" / "shapey.safetensors")
    server = tools.LiveServer(home).start()
    server.pipe = pipe
    yield server
    server.stop()


@pytest.fixture(scope="module")
def client(server):
    with httpx.Client(base_url=server.url, timeout=120) as c:
        yield c


def _a1111(client, prompt):
    r = client.post("/sdapi/v1/txt2img", json={"prompt": prompt, "steps": 3, "seed": 4, "width": 16, "height": 16})
    assert r.status_code == 200, r.text
    body = r.json()
    img = np.asarray(Image.open(io.BytesIO(base64.b64decode(body["images"][0])))).astype(int)
    return img, body


def test_lists_and_refresh(client, server):
    from brushwork.models.networks import short_hash

    listed = client.get("/sdapi/v1/loras").json()
    assert [x["name"] for x in listed] == ["shiny"]
    assert listed[0]["hash"] == short_hash(server.home / "loras" / "shiny.safetensors", "safetensors")
    assert "ss_training_comment" not in listed[0]["metadata"] and str(server.home) not in str(listed)
    loras.kohya_lora(server.pipe, server.home / "loras" / "later.safetensors", seed=5)
    assert client.post("/sdapi/v1/refresh-loras").status_code == 200
    assert [x["name"] for x in client.get("/sdapi/v1/loras").json()] == ["later", "shiny"]
    emb = client.get("/sdapi/v1/embeddings").json()
    assert list(emb["loaded"]) == ["shapey"] and emb["loaded"]["shapey"]["vectors"] == 2


def test_prompt_syntax_through_a1111(client):
    plain, _ = _a1111(client, "a red circle")
    with_lora, body = _a1111(client, "a red circle <lora:shiny:1>")
    zero, _ = _a1111(client, "a red circle <lora:shiny:0>")
    assert np.abs(with_lora - plain).max() > 0
    assert np.array_equal(zero, plain)
    assert "Lora hashes: " in body["info"]


def test_prompt_syntax_through_openai_and_native(client, tools):
    r = client.post("/v1/images/generations", json={"prompt": "a red circle <lora:shiny:1>", "size": "16x16",
                                                    "response_format": "b64_json"})
    assert r.status_code == 200, r.text
    job = client.post("/api/v1/jobs", json={"prompt": "a shapey", "loras": [{"name": "shiny", "weight": 0.5}],
                                            "steps": 2, "width": 16, "height": 16}).json()
    done = tools.wait_done(client, job["id"])
    assert done["status"] == "done", done
    from brushwork.engine.metadata import parse_infotext

    image = Image.open(io.BytesIO(client.get(done["outputs"][0]["url"]).content))
    info = parse_infotext(image.info["parameters"])
    assert info["Lora hashes"].startswith("shiny: ") and info["TI hashes"].startswith("shapey: ")


@pytest.mark.parametrize("path, body, says", [
    ("/sdapi/v1/txt2img", {"prompt": "x <lora:nope:1>"}, "no LoRA named 'nope' (known: later, shiny"),
    ("/sdapi/v1/txt2img", {"prompt": "x <lora:shiny:abc>"}, "the weight 'abc' is not a number"),
    ("/v1/images/generations", {"prompt": "x <lora:nope:1>"}, "no LoRA named 'nope'"),
    ("/api/v1/jobs", {"prompt": "x", "loras": [{"name": "/etc/passwd", "weight": 1}]}, "no LoRA named '/etc/passwd'"),
    ("/api/v1/jobs", {"prompt": "x", "embeddings": ["../x"]}, "no embedding named '../x'"),
])
def test_bad_names_are_refused_at_submission(client, path, body, says):
    r = client.post(path, json=body)
    assert 400 <= r.status_code < 500, r.text
    assert says in r.text and "Traceback" not in r.text
