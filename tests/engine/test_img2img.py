"""img2img, inpainting, outpainting and hires fix on tiny random models: the mechanics, not the quality
(``scripts/image_edits.py`` measures the effects on the bundled model with the judge)."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from brushwork.engine.api import Studio
from brushwork.engine.images import ImageInputs, pixel_sha256, read_image
from brushwork.engine.params import GenerationParams
from brushwork.errors import InvalidParameter


def _source(size=16, seed=0) -> Image.Image:
    rng = np.random.default_rng(seed)
    arr = np.zeros((size, size, 3), np.uint8)
    arr[:] = (40, 90, 200)
    arr[size // 4: size // 2, size // 4: 3 * size // 4] = (220, 30, 30)
    arr = np.clip(arr.astype(int) + rng.integers(-10, 10, arr.shape), 0, 255).astype(np.uint8)
    return Image.fromarray(arr)


def _half_mask(size=16, left=True) -> Image.Image:
    m = np.zeros((size, size), np.uint8)
    if left:
        m[:, : size // 2] = 255
    else:
        m[:, size // 2:] = 255
    return Image.fromarray(m, "L")


def _p(model, **kw) -> GenerationParams:
    return GenerationParams.build(prompt="a green square", model=str(model), seed=3, steps=6, **kw)


def _arr(image) -> np.ndarray:
    return np.asarray(image).astype(int)


@pytest.fixture(scope="module")
def studio():
    return Studio()


def test_strength_zero_is_the_vae_round_trip(studio, tiny_model):
    import torch

    from brushwork.engine.pipeline import Components, decode, encode

    src = _source()
    gen = studio.generate(_p(tiny_model, denoising_strength=0.0), images=ImageInputs(src))
    loaded = studio.model(str(tiny_model))
    c = Components.from_pipeline(loaded.pipe, loaded.native_size, loaded.max_size)
    with torch.inference_mode():
        expected = decode(c, encode(c, np.asarray(src)[None]))[0]
    assert np.array_equal(np.asarray(gen.images[0]), expected)


def test_low_strength_stays_closer_to_the_source_than_high(studio, tiny_model):
    """Measured from the VAE round trip (strength 0): a random VAE's round trip is far from the source."""
    src = _source()
    base = _arr(studio.generate(_p(tiny_model, denoising_strength=0.0), images=ImageInputs(src)).images[0])
    diffs = []
    for s in (0.2, 0.5, 1.0):
        gen = studio.generate(_p(tiny_model, denoising_strength=s), images=ImageInputs(src))
        diffs.append(np.abs(_arr(gen.images[0]) - base).mean())
    assert diffs[0] < diffs[1] < diffs[2], diffs


@pytest.mark.parametrize("fill", [0, 1, 2, 3])
def test_inpainting_changes_only_the_masked_area(studio, tiny_model, fill):
    src, mask = _source(), _half_mask()
    gen = studio.generate(_p(tiny_model, n=2, inpainting_fill=fill, mask_blur=2, denoising_strength=0.9),
                          images=ImageInputs(src, mask))
    from brushwork.engine.images import prepare_mask

    blurred = prepare_mask(mask, src.size, invert=False, blur=2)
    for image in gen.images:
        out = _arr(image)
        assert np.abs(out - _arr(src))[blurred == 0].max() == 0
        assert np.abs(out - _arr(src))[:, :4].mean() > 1  # the masked left edge was repainted
    assert "Mask blur: 2" in gen.infotexts[0] and "Denoising strength: 0.9" in gen.infotexts[0]


def test_inverted_mask_repaints_the_other_side(studio, tiny_model):
    src = _source()
    gen = studio.generate(_p(tiny_model, inpainting_mask_invert=True, mask_blur=0),
                          images=ImageInputs(src, _half_mask(left=False)))
    out = _arr(gen.images[0])
    assert np.abs(out - _arr(src))[:, 8:].max() == 0 and np.abs(out - _arr(src))[:, :8].mean() > 1


def test_only_masked_keeps_everything_outside_the_mask(studio, tiny_model):
    src = _source(32)
    m = np.zeros((32, 32), np.uint8)
    m[4:12, 4:12] = 255
    gen = studio.generate(_p(tiny_model, width=32, height=32, inpaint_full_res=True, inpaint_full_res_padding=2,
                             mask_blur=0), images=ImageInputs(src, Image.fromarray(m, "L")))
    out = _arr(gen.images[0])
    assert out.shape == (32, 32, 3)
    assert np.abs(out - _arr(src))[m == 0].max() == 0 and np.abs(out - _arr(src))[m > 0].mean() > 1
    assert "Inpaint area: Only masked" in gen.infotexts[0]


def test_outpainting_extends_and_keeps_the_original(studio, tiny_model):
    src = _source()
    gen = studio.generate(_p(tiny_model, outpaint={"right": 8, "top": 4}), images=ImageInputs(src))
    out = _arr(gen.images[0])
    assert out.shape == (20, 24, 3)
    assert np.abs(out[4:, :16] - _arr(src)).max() == 0
    assert "Outpaint: left 0 right 8 top 4 bottom 0" in gen.infotexts[0]


def test_resize_modes(studio, tiny_model):
    src = Image.fromarray(np.asarray(_source(32))[8:24])  # 32 wide, 16 high: each mode fits it differently
    sizes = set()
    for mode in range(4):
        gen = studio.generate(_p(tiny_model, width=16, height=16, resize_mode=mode), images=ImageInputs(src))
        assert gen.images[0].size == (16, 16)
        sizes.add(np.asarray(gen.images[0]).tobytes())
    assert len(sizes) == 4  # the modes really differ


def test_batch_item_equals_solo(studio, tiny_model):
    src, mask = _source(), _half_mask()
    batch = studio.generate(_p(tiny_model, n=2, sampler="Euler a"), images=ImageInputs(src, mask))
    solo = studio.generate(_p(tiny_model, sampler="Euler a").replace(seed=4), images=ImageInputs(src, mask))
    assert np.abs(_arr(batch.images[1]) - _arr(solo.images[0])).max() <= 1


@pytest.mark.parametrize("upscaler", ["Latent", "Lanczos"])
def test_hires_fix_doubles_the_size(studio, tiny_model, upscaler):
    gen = studio.generate(_p(tiny_model, enable_hr=True, hr_upscaler=upscaler, hr_second_pass_steps=3,
                             denoising_strength=0.6))
    assert gen.images[0].size == (32, 32)
    info = gen.infotexts[0]
    assert "Size: 16x16" in info and "Hires upscale: 2" in info and f"Hires upscaler: {upscaler}" in info
    assert "Hires steps: 3" in info and "Denoising strength: 0.6" in info
    plain = studio.generate(_p(tiny_model))
    assert plain.images[0].size == (16, 16) and "Hires" not in plain.infotexts[0]


def test_hires_over_the_cap_is_refused(studio, tiny_model):
    with pytest.raises(InvalidParameter, match="hr_scale"):
        studio.generate(_p(tiny_model, width=1024, height=1024, enable_hr=True, hr_scale=4))


def test_hashes_are_recorded_and_checked_on_remake(studio, tiny_model):
    src, mask = _source(), _half_mask()
    gen = studio.generate(_p(tiny_model), images=ImageInputs(src, mask))
    recorded = GenerationParams.build(**gen.image_params[0]["params"])
    assert recorded.init_image_sha256 == pixel_sha256(src) and recorded.mask_sha256 == pixel_sha256(mask)
    again = studio.generate(recorded, images=ImageInputs(src, mask))
    assert np.array_equal(np.asarray(again.images[0]), np.asarray(gen.images[0]))
    with pytest.raises(InvalidParameter, match="^image: .*sha256"):
        studio.generate(recorded, images=ImageInputs(_source(seed=1), mask))
    with pytest.raises(InvalidParameter, match="^mask: .*no mask"):
        studio.generate(recorded, images=ImageInputs(src))
    with pytest.raises(InvalidParameter, match="^image: .*pass it again"):
        studio.generate(recorded)


@pytest.mark.parametrize("values, field", [
    ({"denoising_strength": 1.5}, "denoising_strength"),
    ({"denoising_strength": -0.1}, "denoising_strength"),
    ({"resize_mode": 4}, "resize_mode"),
    ({"inpainting_fill": 9}, "inpainting_fill"),
    ({"hr_upscaler": "ESRGAN_4x"}, "hr_upscaler"),
    ({"outpaint": {"left": -1}}, "outpaint.left"),
])
def test_bad_parameters_name_the_field(values, field):
    with pytest.raises(InvalidParameter) as info:
        GenerationParams.build(**values)
    assert info.value.field == field and "\n" not in str(info.value)


def test_bad_images_are_refused_in_one_line(studio, tiny_model, tmp_path):
    with pytest.raises(InvalidParameter, match="^mask: its size 8x8 differs from the image's 16x16$"):
        studio.generate(_p(tiny_model), images=ImageInputs(_source(), _half_mask(8)))
    with pytest.raises(InvalidParameter, match="^image: not a readable image"):
        read_image(b"not an image at all")
    big = io.BytesIO()
    Image.new("L", (4097, 4096)).save(big, format="PNG")
    with pytest.raises(InvalidParameter, match="^image: 4097x4096 is over the cap"):
        read_image(big.getvalue())
    with pytest.raises(InvalidParameter, match="^mask: it is empty"):
        studio.generate(_p(tiny_model), images=ImageInputs(_source(), Image.new("L", (16, 16))))
    with pytest.raises(InvalidParameter, match="^mask: outpainting makes its own mask"):
        studio.generate(_p(tiny_model, outpaint={"left": 4}), images=ImageInputs(_source(), _half_mask()))
    assert not list(tmp_path.iterdir())


def test_rgba_mask_uses_its_alpha(studio, tiny_model):
    from brushwork.engine.images import alpha_mask, mask_to_l

    rgba = np.zeros((16, 16, 4), np.uint8)
    rgba[..., 3] = 255
    rgba[:, :8, 3] = 0  # transparent = edit, as OpenAI defines it
    image = Image.fromarray(rgba, "RGBA")
    assert (np.asarray(mask_to_l(image))[:, :8] == 255).all() and (np.asarray(mask_to_l(image))[:, 8:] == 0).all()
    assert np.array_equal(np.asarray(alpha_mask(image)), np.asarray(mask_to_l(image)))
    assert alpha_mask(Image.new("RGB", (4, 4))) is None


def test_inpainting_checkpoint_is_detected_and_inpaints(tmp_path):
    """An SD-1.x inpainting single file in the original key layout (9 UNet input channels, tiny width)."""
    import sys
    from pathlib import Path

    from safetensors.torch import save_file

    sys.path.insert(0, str(Path(__file__).parents[1] / "models"))
    import tinymodels
    from diffusers import UNet2DConditionModel

    from brushwork.models import ldm
    from brushwork.models.inspect import inspect_model

    pipe = tinymodels.make_pipeline("sd1")
    cfg = {k: v for k, v in pipe.unet.config.items() if not k.startswith("_")}
    cfg["in_channels"] = 9
    pipe.unet = UNet2DConditionModel.from_config(cfg).eval()
    folder = tmp_path / "sd1-inpaint-folder"
    pipe.save_pretrained(folder, safe_serialization=True)
    single = tmp_path / "sd1-inpainting.safetensors"
    save_file({k: v.contiguous() for k, v in ldm.pipeline_to_ldm(pipe, "sd1").items()}, str(single))
    info = inspect_model(single)
    assert info["kind"] == "sd1" and info["architecture"]["variant"] == "inpainting"

    from brushwork.models.load import load_pipeline

    loaded = load_pipeline(str(single), config=folder)
    assert loaded.pipe.unet.config.in_channels == 9
    studio = Studio()
    studio._models[str(single)] = loaded
    src = _source()
    gen = studio.generate(GenerationParams.build(prompt="a red cat", model=str(single), seed=1, steps=4,
                                                 mask_blur=0), images=ImageInputs(src, _half_mask()))
    out = _arr(gen.images[0])
    assert np.abs(out - _arr(src))[:, 8:].max() == 0 and np.abs(out - _arr(src))[:, :8].mean() > 1
    plain = studio.generate(GenerationParams.build(prompt="a red cat", model=str(single), seed=1, steps=4))
    assert plain.images[0].size == (16, 16)
    whole = studio.generate(GenerationParams.build(prompt="a red cat", model=str(single), seed=1, steps=4,
                                                   denoising_strength=0.5), images=ImageInputs(src))
    assert whole.images[0].size == (16, 16)  # img2img without a mask on an inpainting UNet
