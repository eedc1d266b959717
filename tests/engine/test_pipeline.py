import numpy as np
import pytest
import torch

from brushwork.engine.api import Studio
from brushwork.engine.params import GenerationParams
from brushwork.engine.pipeline import Cancelled, Components, txt2img
from brushwork.errors import InvalidParameter, OutputCheckFailed


def gen(studio, model, **kw):
    kw.setdefault("steps", 4)
    kw.setdefault("seed", 3)
    return studio.generate(GenerationParams.build(model=str(model), **kw))


def arr(im):
    return np.asarray(im).astype(np.int16)


def test_batch_item_equals_solo_for_every_kind_of_sampler(tiny_model):
    s = Studio()
    for sampler in ["DPM++ 2M", "Euler a", "DPM++ SDE", "DDIM"]:
        batch = gen(s, tiny_model, prompt="a red circle", n=3, seed=10, sampler=sampler)
        solo = gen(s, tiny_model, prompt="a red circle", n=1, seed=12, sampler=sampler)
        assert batch.seeds == [10, 11, 12]
        mad = np.abs(arr(batch.images[2]) - arr(solo.images[0])).mean()
        assert mad < 1.0, (sampler, mad)  # within 1/255 on average


def test_same_seed_same_pixels_other_seed_differs(tiny_model):
    s = Studio()
    a, b = gen(s, tiny_model, prompt="two stars"), gen(s, tiny_model, prompt="two stars")
    c = gen(s, tiny_model, prompt="two stars", seed=4)
    assert np.array_equal(arr(a.images[0]), arr(b.images[0]))
    assert not np.array_equal(arr(a.images[0]), arr(c.images[0]))


def test_stochastic_sampler_is_seeded(tiny_model):
    s = Studio()
    a = gen(s, tiny_model, prompt="a heart", sampler="Euler a", steps=6)
    b = gen(s, tiny_model, prompt="a heart", sampler="Euler a", steps=6)
    assert np.array_equal(arr(a.images[0]), arr(b.images[0]))


def test_negative_prompt_and_cfg_change_the_image(tiny_model):
    s = Studio()
    base = gen(s, tiny_model, prompt="a red circle", cfg_scale=7)
    neg = gen(s, tiny_model, prompt="a red circle", negative_prompt="a blue square", cfg_scale=7)
    cfg1 = gen(s, tiny_model, prompt="a red circle", cfg_scale=1)
    assert not np.array_equal(arr(base.images[0]), arr(neg.images[0]))
    assert not np.array_equal(arr(base.images[0]), arr(cfg1.images[0]))


def test_long_prompt_tail_changes_the_image(tiny_model):
    s = Studio()
    head = " ".join(["a red circle and a blue square"] * 12)  # > 75 tokens
    a = gen(s, tiny_model, prompt=head + " star")
    b = gen(s, tiny_model, prompt=head + " heart")
    assert not np.array_equal(arr(a.images[0]), arr(b.images[0]))


def test_empty_prompt_is_unconditional(tiny_model):
    g = gen(Studio(), tiny_model, prompt="")
    assert g.images[0].size == (16, 16)


def test_cancel_stops_at_the_next_step(tiny_model):
    s = Studio()
    calls = []
    unet = s.model(str(tiny_model)).pipe.unet
    handle = unet.register_forward_hook(lambda *a: calls.append(1))
    try:
        with pytest.raises(Cancelled, match="before step 3 of 8"):
            s.generate(GenerationParams.build(model=str(tiny_model), prompt="a star", steps=8, seed=1),
                       on_step=lambda i, total, lat: i == 2)
    finally:
        handle.remove()
    assert len(calls) == 2


def test_size_policy(tiny_model):
    s = Studio()
    g = gen(s, tiny_model, prompt="a star", width=64, height=48)
    assert g.images[0].size == (64, 48) and g.plan.generated == (32, 24)
    assert "Size: 64x48, " in g.infotexts[0] and "Generated size: 32x24, Upscaler: Lanczos" in g.infotexts[0]
    with pytest.raises(InvalidParameter, match="width 17 must be a positive multiple of 2"):
        gen(s, tiny_model, prompt="a star", width=17)
    with pytest.raises(InvalidParameter, match="width: Input should be less than or equal to 2048"):
        gen(s, tiny_model, prompt="a star", width=4096)


def test_nan_and_all_zero_decodes_are_refused(tiny_model):
    s = Studio()
    loaded = s.model(str(tiny_model))
    comps = Components.from_pipeline(loaded.pipe, 16, 32)
    params = GenerationParams.build(prompt="a star", steps=2)

    class FakeVae:
        def __init__(self, value):
            self.value, self.config = value, loaded.pipe.vae.config

        def decode(self, z):
            out = torch.full((z.shape[0], 3, z.shape[2] * 2, z.shape[3] * 2), self.value)
            return type("D", (), {"sample": out})

    for value, msg in [(float("nan"), "NaN"), (0.0, "all zeros")]:
        comps.vae = FakeVae(value)
        with pytest.raises(OutputCheckFailed, match=msg):
            txt2img(comps, params, seed=0)


def test_plain_diffusers_gives_the_same_image(tiny_model):
    from diffusers import StableDiffusionPipeline

    from brushwork.engine.samplers import make_scheduler

    for sampler in ["Euler", "DPM++ 2M", "Euler a"]:
        ours = gen(Studio(), tiny_model, prompt="a blue star below a heart", sampler=sampler, steps=5, seed=21, n=2)
        pipe = StableDiffusionPipeline.from_pretrained(str(tiny_model), safety_checker=None)
        pipe.scheduler = make_scheduler(sampler, "Automatic", pipe.scheduler.config)
        theirs = pipe("a blue star below a heart", num_inference_steps=5, guidance_scale=7.0, height=16, width=16,
                      num_images_per_prompt=2,
                      generator=[torch.Generator().manual_seed(21), torch.Generator().manual_seed(22)],
                      output_type="np").images
        theirs = (theirs * 255).round().astype(np.uint8)
        for a, b in zip(ours.images, theirs):
            assert np.array_equal(np.asarray(a), b), sampler
