"""Real clients, unmodified, against a live server (no mock engine).

The server runs the bundled model when it is installed, and otherwise the tiny random model in
the same architecture; the test ids say which (``[bundled model]`` or ``[tiny random model …]``).
"""

from __future__ import annotations

import base64
import io

import httpx
import numpy as np
import pytest
from PIL import Image


@pytest.fixture(scope="module")
def server(tmp_path_factory, tiny_model_dir, served_model, tools):
    home = tools.make_home(tmp_path_factory.mktemp("clients") / "home", tiny_model_dir)
    s = tools.LiveServer(home, model=served_model.name).start()
    yield s
    s.stop()


def _not_blank(image: Image.Image) -> None:
    pixels = np.asarray(image.convert("RGB"), dtype=np.float32)
    assert pixels.std() > 1.0, "the image is a flat colour"


def test_webuiapi_default_512(server, served_model):
    """``WebUIApi(host, port).txt2img(prompt=…, seed=…)`` at its defaults (512×512, 20 steps, Euler a)."""
    import webuiapi

    print(f"model: {served_model.label}")
    api = webuiapi.WebUIApi(host="127.0.0.1", port=server.port)
    result = api.txt2img(prompt="a red circle above a blue square", seed=1234)
    assert result.image.size == (512, 512)
    result.image.load()
    _not_blank(result.image)
    assert isinstance(result.info, dict)
    assert result.info["seed"] == 1234 and result.info["all_seeds"] == [1234]
    assert result.info["width"] == 512 and result.info["sampler_name"] == "Euler a" and result.info["steps"] == 20
    assert result.info["sd_model_name"] == served_model.name
    assert "Seed: 1234" in result.info["infotexts"][0]
    assert "Seed: 1234" in result.image.info["parameters"]  # the PNG carries its infotext
    assert result.parameters["prompt"] == "a red circle above a blue square"


def test_webuiapi_batches_random_seed_and_repeatability(server, served_model):
    import webuiapi

    api = webuiapi.WebUIApi(host="127.0.0.1", port=server.port)
    result = api.txt2img(prompt="a green triangle", seed=7, batch_size=2, n_iter=2, width=64, height=64, steps=4)
    assert len(result.images) == 4 and result.info["all_seeds"] == [7, 8, 9, 10]
    again = api.txt2img(prompt="a green triangle", seed=9, width=64, height=64, steps=4)
    # image i of a batch uses seed + i: the third image is the seed-9 image, to within the 1/255 mean absolute
    # difference the engine promises (batch size changes the CPU kernels' summation order on real weights)
    diff = np.abs(np.asarray(result.images[2]).astype(int) - np.asarray(again.image).astype(int)).mean()
    print(f"batch vs alone, seed 9: mean |diff| {diff:.4f} of 255")
    assert diff <= 1.0
    rnd = api.txt2img(prompt="a green triangle", width=64, height=64, steps=2)  # seed -1: random
    assert isinstance(rnd.info["seed"], int) and rnd.info["seed"] >= 0
    names = [m["model_name"] for m in api.get_sd_models()]
    assert served_model.name in names
    assert "Euler a" in [s["name"] for s in api.get_samplers()]
    assert api.get_options()["sd_model_checkpoint"].startswith(served_model.name)


def test_openai_b64_json_1024(server, served_model):
    from openai import OpenAI

    client = OpenAI(base_url=f"{server.url}/v1", api_key="not-needed-on-loopback")
    res = client.images.generate(prompt="a yellow star", n=2, size="1024x1024", response_format="b64_json")
    assert len(res.data) == 2 and res.created > 0
    for item in res.data:
        image = Image.open(io.BytesIO(base64.b64decode(item.b64_json)))
        assert image.size == (1024, 1024)
        _not_blank(image)


def test_openai_url_and_errors(server):
    import openai
    from openai import OpenAI

    client = OpenAI(base_url=f"{server.url}/v1", api_key="x", max_retries=0)
    res = client.images.generate(prompt="a yellow star", model="dall-e-2", size="256x256")
    image = Image.open(io.BytesIO(httpx.get(res.data[0].url).content))
    assert image.size == (256, 256)
    default = client.images.generate(prompt="a yellow star", response_format="b64_json", extra_body={"steps": 2})
    assert Image.open(io.BytesIO(base64.b64decode(default.data[0].b64_json))).size == (1024, 1024)  # OpenAI's default
    with pytest.raises(openai.BadRequestError) as bad:
        client.images.generate(prompt="x", n=11)
    assert bad.value.body["param"] == "n"
    with pytest.raises(openai.NotFoundError) as missing:
        client.images.generate(prompt="x", model="no-such-model")
    assert missing.value.body["param"] == "model"


def test_clients_with_a_token(start_server, served_model):
    """With --token: webuiapi through HTTP Basic (any user), openai through Bearer; none without it."""
    import openai
    import webuiapi
    from openai import OpenAI

    s = start_server(model=served_model.name, token="tok-0123456789abcdef")
    api = webuiapi.WebUIApi(host="127.0.0.1", port=s.port, username="whoever", password="tok-0123456789abcdef")
    result = api.txt2img(prompt="a red circle", seed=3, width=64, height=64, steps=2)
    assert result.info["seed"] == 3 and result.image.size == (64, 64)
    with pytest.raises(RuntimeError, match="401"):
        webuiapi.WebUIApi(host="127.0.0.1", port=s.port).txt2img(prompt="x", steps=2, width=64, height=64)
    res = OpenAI(base_url=f"{s.url}/v1", api_key="tok-0123456789abcdef").images.generate(
        prompt="x", size="64x64", response_format="b64_json", extra_body={"steps": 2})
    assert Image.open(io.BytesIO(base64.b64decode(res.data[0].b64_json))).size == (64, 64)
    with pytest.raises(openai.AuthenticationError):
        OpenAI(base_url=f"{s.url}/v1", api_key="wrong", max_retries=0).images.generate(prompt="x")


def _scene(size=64) -> Image.Image:
    arr = np.zeros((size, size, 3), np.uint8)
    arr[:] = (30, 60, 160)
    arr[size // 4: size // 2, size // 2 + 4: size - 4] = (230, 40, 40)
    return Image.fromarray(arr)


def test_webuiapi_img2img_with_and_without_a_mask(server):
    """``WebUIApi.img2img`` at its own defaults (fill 0, only masked, padding 0): pixels outside the mask
    come back unchanged, and the infotext carries the denoising strength and mask blur."""
    import webuiapi

    api = webuiapi.WebUIApi(host="127.0.0.1", port=server.port)
    src = _scene()
    plain = api.img2img(images=[src], prompt="a green square", seed=5, width=64, height=64, steps=4,
                        denoising_strength=0.6)
    assert plain.image.size == (64, 64) and plain.info["denoising_strength"] == 0.6
    assert "Denoising strength: 0.6" in plain.info["infotexts"][0]
    assert plain.parameters["init_images"] is None  # not echoed back, as A1111 does
    mask = np.zeros((64, 64), np.uint8)
    mask[:, :32] = 255
    res = api.img2img(images=[src], mask_image=Image.fromarray(mask, "L"), prompt="a green square", seed=5,
                      width=64, height=64, steps=4, mask_blur=0)
    out = np.asarray(res.image.convert("RGB")).astype(int)
    assert np.abs(out[:, 32:] - np.asarray(src).astype(int)[:, 32:]).max() == 0
    assert np.abs(out[:, :32] - np.asarray(src).astype(int)[:, :32]).mean() > 1
    assert "Mask blur: 0" in res.info["infotexts"][0] and "Inpaint area: Only masked" in res.info["infotexts"][0]


def test_webuiapi_hires_fix(server):
    import webuiapi

    api = webuiapi.WebUIApi(host="127.0.0.1", port=server.port)
    res = api.txt2img(prompt="a red circle", seed=2, width=64, height=64, steps=4, enable_hr=True, hr_scale=2,
                      hr_upscaler="Latent", denoising_strength=0.5, hr_second_pass_steps=3)
    assert res.image.size == (128, 128)
    info = res.info["infotexts"][0]
    assert "Size: 64x64" in info and "Hires upscale: 2" in info and "Hires upscaler: Latent" in info
    assert res.info["extra_generation_params"]["Hires upscaler"] == "Latent"
    assert [u["name"] for u in api.get_latent_upscale_modes()] == ["Latent"]


def test_openai_images_edit(server):
    """``client.images.edit``: transparent pixels mark the area to repaint, in the image or in the mask."""
    from openai import OpenAI

    client = OpenAI(base_url=f"{server.url}/v1", api_key="x", max_retries=0)
    src = np.asarray(_scene())
    rgba = np.dstack([src, np.full((64, 64), 255, np.uint8)])
    rgba[:, :32, 3] = 0  # the left half is to be repainted
    buf = io.BytesIO()
    Image.fromarray(rgba, "RGBA").save(buf, format="PNG")
    res = client.images.edit(image=("scene.png", buf.getvalue(), "image/png"), prompt="a green square",
                             size="64x64", response_format="b64_json", extra_body={"steps": 4, "seed": 1})
    out = np.asarray(Image.open(io.BytesIO(base64.b64decode(res.data[0].b64_json))).convert("RGB")).astype(int)
    assert out.shape == (64, 64, 3)
    assert np.abs(out[:, 32:] - src.astype(int)[:, 32:]).max() == 0 and np.abs(out[:, :32] - src[:, :32]).mean() > 1

    opaque, mask = io.BytesIO(), io.BytesIO()
    Image.fromarray(src).save(opaque, format="PNG")
    Image.fromarray(rgba, "RGBA").save(mask, format="PNG")  # the mask's alpha: left half transparent
    res = client.images.edit(image=("scene.png", opaque.getvalue(), "image/png"),
                             mask=("mask.png", mask.getvalue(), "image/png"), prompt="a green square", n=2,
                             response_format="url", extra_body={"steps": 4})
    assert len(res.data) == 2
    image = Image.open(io.BytesIO(httpx.get(res.data[0].url).content)).convert("RGB")
    assert image.size == (64, 64)
    assert np.abs(np.asarray(image).astype(int)[:, 32:] - src.astype(int)[:, 32:]).max() == 0
