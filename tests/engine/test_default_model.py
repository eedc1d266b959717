"""The bundled default model: golden pixels, adherence smoke test, plain-diffusers equality."""

from pathlib import Path

import numpy as np
import pytest
import torch

from brushwork.engine.api import Studio
from brushwork.engine.params import GenerationParams
from brushwork.paths import package_data

BUNDLED = package_data("default_model")
pytestmark = pytest.mark.skipif(not (BUNDLED / "model_index.json").is_file(),
                                reason="no bundled model in brushwork/default_model")


@pytest.fixture(scope="module")
def studio():
    return Studio()


def test_golden_slice(studio):
    import json

    # pinned by scripts/pin_golden.py when the bundled weights change on purpose
    golden = json.loads((Path(__file__).with_name("golden_default_model.json")).read_text())
    img = studio.generate(GenerationParams.build(prompt=golden["prompt"], seed=golden["seed"])).images[0]
    y, x = golden["at"]
    patch = np.asarray(img)[y:y + 4, x:x + 4].astype(int)
    assert np.abs(patch - np.array(golden["pixels"])).mean() <= golden["tolerance"]


def test_adherence_smoke(studio):
    from brushwork.evaluate.adherence import run_adherence
    from brushwork.evaluate.prompt_sets import load_prompts
    from brushwork.engine.bench import engine_generate

    prompts = load_prompts()
    chosen = [p for p in prompts if p.category == "single_object"][:10] + \
             [p for p in prompts if p.category == "colors" and not p.unseen][:10]
    gen, _ = engine_generate(None, studio)
    rep = run_adherence(chosen, gen, images_per_prompt=1, seed=0)
    acc = np.mean([r["accuracy"] for r in rep["per_prompt"]])
    assert acc >= 0.8, rep["categories"]


def test_plain_diffusers_same_image(studio):
    from diffusers import StableDiffusionPipeline

    from brushwork.engine.samplers import make_scheduler

    ours = studio.generate(GenerationParams.build(prompt="two green stars", seed=5, steps=10)).images[0]
    pipe = StableDiffusionPipeline.from_pretrained(str(BUNDLED), torch_dtype=torch.float32, safety_checker=None)
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
