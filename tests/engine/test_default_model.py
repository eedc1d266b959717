"""The bundled default model: golden pixels, adherence smoke test, plain-diffusers equality."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from brushwork.engine.api import Studio
from brushwork.engine.params import GenerationParams
from brushwork.evaluate.adherence import SMOKE_FLOOR
from brushwork.paths import package_data

BUNDLED = package_data("default_model")
pytestmark = pytest.mark.skipif(not (BUNDLED / "model_index.json").is_file(),
                                reason="no bundled model in brushwork/default_model")


GOLDEN = Path(__file__).with_name("golden_default_model.json")


def _golden() -> dict:
    # pinned by scripts/pin_golden.py when the bundled weights change on purpose
    return json.loads(GOLDEN.read_text()) if GOLDEN.is_file() else {}


@pytest.fixture(scope="module")
def studio():
    return Studio()


@pytest.fixture(scope="module")
def smoke(studio):
    from brushwork.engine.bench import engine_generate
    from brushwork.evaluate.adherence import smoke_accuracy
    from brushwork.evaluate.prompt_sets import load_prompts

    return smoke_accuracy(engine_generate(None, studio)[0], load_prompts())


def test_golden_slice(studio):
    golden = _golden()
    img = studio.generate(GenerationParams.build(prompt=golden["prompt"], seed=golden["seed"])).images[0]
    y, x = golden["at"]
    patch = np.asarray(img)[y:y + 4, x:x + 4].astype(int)
    assert np.abs(patch - np.array(golden["pixels"])).mean() <= golden["tolerance"]


def test_adherence_smoke_unchanged(smoke):
    # a regression guard: the score pinned with the weights, less one prompt in twenty for numerics across machines
    assert smoke >= _golden()["smoke_accuracy"] - 0.05


_PINNED_SMOKE = _golden().get("smoke_accuracy", 1.0)


@pytest.mark.xfail(_PINNED_SMOKE < SMOKE_FLOOR, strict=True, raises=AssertionError,
                   reason=f"the bundled model scored {_PINNED_SMOKE:.2f} when pinned, below the floor "
                          f"{SMOKE_FLOOR} (issue 3 stays open until a model meets it)")
def test_adherence_smoke_floor(smoke):
    assert smoke >= SMOKE_FLOOR


def test_plain_diffusers_same_image(studio):
    from diffusers import StableDiffusionPipeline

    from brushwork.engine.samplers import make_scheduler

    ours = studio.generate(GenerationParams.build(prompt="two green stars", seed=5, steps=10)).images[0]
    pipe = StableDiffusionPipeline.from_pretrained(str(BUNDLED), dtype=torch.float32, safety_checker=None)
    d = GenerationParams()
    pipe.scheduler = make_scheduler(d.sampler, d.scheduler, pipe.scheduler.config)
    size = studio.model(None).native_size
    theirs = pipe("two green stars", num_inference_steps=10, guidance_scale=d.cfg_scale, height=size, width=size,
                  generator=torch.Generator().manual_seed(5), output_type="np").images[0]
    assert np.array_equal(np.asarray(ours), (theirs * 255).round().astype(np.uint8))


def test_bundled_model_is_small_and_licensed(studio):
    total = sum(p.stat().st_size for p in BUNDLED.rglob("*") if p.is_file())
    assert total <= 40 * 2**20
    assert studio.model(None).license == "apache-2.0"
    assert all(p.suffix != ".bin" for p in BUNDLED.rglob("*"))
