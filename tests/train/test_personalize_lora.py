"""``brushwork train lora``: the kohya file it writes, loaded with diffusers' ``load_lora_weights`` onto the base
model, gives what the trained model gave; its metadata and card; resuming; ``--max-minutes``."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "models"))
import personalize_tiny as tiny  # noqa: E402
import tinymodels  # noqa: E402

from brushwork.errors import InvalidParameter  # noqa: E402
from brushwork.train.personal.inputs import Settings  # noqa: E402
from brushwork.train.personal.lora import train_lora  # noqa: E402


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("lora")
    shapes = tiny.make_shapes_model(root / "shapes")
    sd1 = root / "sd1"
    tinymodels.make_pipeline("sd1").save_pretrained(sd1, safe_serialization=True)
    tinymodels.card(sd1, "creativeml-openrail-m")
    return {"shapes": shapes, "sd1": sd1, "images": tiny.diamonds(root / "diamonds")}


@pytest.fixture(autouse=True)
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("BRUSHWORK_HOME", str(tmp_path / "home"))


def _settings(world, tmp_path, model="shapes", **kw):
    base = dict(method="lora", images=str(world["images"]), out=str(tmp_path / "diamond.safetensors"),
                prompt="a diamond", model=str(world[model]), steps=4, batch=2, lr=2e-2, rank=4, alpha=2.0,
                sample_every=0, progress=False)
    return Settings(**{**base, **kw})


def _fresh(folder):
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(str(folder), safety_checker=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _outputs(pipe, prompt="a diamond"):
    """The UNet's output on a fixed input with the prompt's text states, and a 3-step image (uint8)."""
    ids = pipe.tokenizer([prompt], padding="max_length", max_length=pipe.tokenizer.model_max_length,
                         return_tensors="pt").input_ids
    g = torch.Generator().manual_seed(1)
    c = pipe.unet.config
    x = torch.randn(2, c.in_channels, c.sample_size, c.sample_size, generator=g)
    with torch.no_grad():
        cond = pipe.text_encoder(ids).last_hidden_state.expand(2, -1, -1)
        out = pipe.unet(x, torch.tensor([100, 700]), cond).sample
        img = pipe(prompt, num_inference_steps=3, guidance_scale=5.0, generator=torch.Generator().manual_seed(0),
                   output_type="np").images[0]
    return out, (img * 255).round().astype(np.int16)


@pytest.mark.parametrize("model,text_encoder,layers", [("shapes", False, "attention"), ("sd1", True, "attention"),
                                                        ("shapes", False, "all"), ("shapes", False, "cross")])
def test_kohya_file_loaded_by_diffusers_reproduces_the_trained_model(tmp_path, world, model, text_encoder, layers):
    res = train_lora(_settings(world, tmp_path, model=model, text_encoder=text_encoder, layers=layers))
    assert res["done"] and res["step"] == 4
    trained = res["pipe"]
    out_t, img_t = _outputs(trained)
    base = _fresh(world[model])
    out_0, _ = _outputs(base)
    base.load_lora_weights(res["out"])
    out_l, img_l = _outputs(base)
    assert (out_t - out_0).abs().max() > 1e-3  # training moved the model
    torch.testing.assert_close(out_l, out_t, atol=1e-5, rtol=1e-4)
    assert np.abs(img_l - img_t).max() <= 1  # within 1/255
    keys = load_file(res["out"])
    assert all(k.startswith(("lora_unet_", "lora_te_text_model_encoder_layers_")) for k in keys)
    assert any(k.startswith("lora_te_") for k in keys) == text_encoder
    modules = {"attn1_to_q", "attn1_to_k", "attn2_to_k", "attn2_to_v", "attn2_to_out_0"}
    adapted = {"attn2_to_k", "attn2_to_v"} if layers == "cross" else modules  # cross: what reads the prompt
    for module in modules:  # kohya: the module path, dots as _
        assert any(k.startswith("lora_unet_") and k.endswith(f"_transformer_blocks_0_{module}.lora_up.weight")
                   for k in keys) == (module in adapted), module
    alphas = {k: v for k, v in keys.items() if k.endswith(".alpha")}
    assert alphas and all(v.item() == 2.0 for v in alphas.values())
    downs = [v for k, v in keys.items() if k.endswith(".lora_down.weight")]
    assert all(v.shape[0] == 4 for v in downs)
    convs = [k for k in keys if k.endswith(("_resnets_0_conv1.lora_down.weight", "_ff_net_2.lora_down.weight"))]
    assert bool(convs) == (layers == "all")  # LoCon: the ResNet convolutions and feed-forward layers too
    with safe_open(res["out"], "pt") as f:
        assert ("ss_network_args" in f.metadata()) == (layers == "all")


def test_metadata_card_and_what_the_inspector_says(tmp_path, world):
    from brushwork.models.inspect import inspect_model, sha256_folder

    res = train_lora(_settings(world, tmp_path, sample_every=2))
    with safe_open(res["out"], "pt") as f:
        meta = f.metadata()
    assert meta["ss_network_module"] == "networks.lora"
    assert (meta["ss_network_dim"], meta["ss_network_alpha"]) == ("4", "2")
    assert meta["ss_base_model_version"] == "brushwork-shapes"  # 128-wide cross-attention
    assert meta["modelspec.title"] == "diamond" and meta["modelspec.license"] == "apache-2.0"
    assert meta["modelspec.trigger_phrase"] == "a diamond"
    assert meta["brushwork.base_sha256"] == sha256_folder(world["shapes"])
    assert meta["brushwork.steps"] == "4" and float(meta["brushwork.minutes"]) > 0
    assert meta["ss_flip_aug"] == "False"  # mirror images only with --flip
    assert all(isinstance(v, str) for v in meta.values())
    card = Path(res["card"]).read_text()
    assert Path(res["card"]) == tmp_path / "diamond.md"
    for fact in ("license: apache-2.0", sha256_folder(world["shapes"]), "`a diamond`", "4 / 2", "4 at batch 2",
                 "5 at 16×16 px"):
        assert fact in card, fact
    info = inspect_model(res["out"])
    assert info["kind"] == "lora" and info["architecture"]["style"] == "kohya"
    assert info["architecture"]["rank"] == 4 and info["architecture"]["targets"] == ["unet"]
    work = Path(res["work"])
    assert work == tmp_path / "diamond.work"
    for name in ("loss.png", "samples.png", "samples/step_000002.png", "samples/step_000004.png", "run.json"):
        assert (work / name).stat().st_size > 0, name
    from PIL import Image

    assert Image.open(work / "samples.png").size == (4 * 16, 2 * 16)  # training images over samples

    sd1 = train_lora(_settings(world, tmp_path, model="sd1", out=str(tmp_path / "e.safetensors")))
    with safe_open(sd1["out"], "pt") as f:
        meta = f.metadata()
    assert meta["ss_base_model_version"] == "sd_v1" and meta["modelspec.license"] == "creativeml-openrail-m"


def test_resumed_run_equals_uninterrupted_and_max_minutes_writes_no_output(tmp_path, world):
    full = train_lora(_settings(world, tmp_path, out=str(tmp_path / "full.safetensors")))
    part_out = tmp_path / "part.safetensors"
    stopped = train_lora(_settings(world, tmp_path, out=str(part_out), max_minutes=1e-9))
    assert not stopped["done"] and stopped["step"] == 1 and not part_out.exists()
    state = json.loads((tmp_path / "part.work" / "checkpoint" / "state.json").read_text())
    assert state["step"] == 1
    resumed = train_lora(_settings(world, tmp_path, out=str(part_out)))
    assert resumed["done"] and resumed["step"] == 4
    a, b = load_file(full["out"]), load_file(resumed["out"])
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    # the work folder belongs to its settings
    with pytest.raises(InvalidParameter, match="holds a run with other settings \\(rank: 4, now 8\\)"):
        train_lora(_settings(world, tmp_path, out=str(part_out), rank=8))


def test_prior_preservation_trains_on_the_base_models_class_images(tmp_path, world):
    from PIL import Image

    from brushwork.train.personal.base import Objective, load_base

    prompts = ["a red square", "two circles on a blue background"]
    res = train_lora(_settings(world, tmp_path, class_prompts=prompts, class_images=3, prior_weight=3.0))
    assert res["done"]
    work = tmp_path / "diamond.work"
    made = sorted(p.name for p in (work / "class").glob("class_*.png"))
    assert made == ["class_0000.png", "class_0001.png", "class_0002.png"]
    assert Image.open(work / "class" / made[0]).size == (16, 16)  # the model's native size
    with safe_open(res["out"], "pt") as f:
        meta = f.metadata()
    assert meta["ss_num_reg_images"] == "3" and meta["ss_num_train_images"] == "5"
    card = Path(res["out"]).with_suffix(".md").read_text()
    assert "3 images by the base model of 2 prompts, e.g. `a red square`, weight 3" in card
    # the class rows are drawn prior_weight times as often as the instance rows, each image with its mirror
    base = load_base(str(world["shapes"]))
    px = np.zeros((6, 16, 16, 3), dtype=np.uint8)
    obj = Objective(base, px, [["a diamond"]] * 3 + [["a red square"], ["a circle at the left"], ["a star"]], 0,
                    [1 / 3] * 3 + [1.0] * 3, flip=True)
    assert len(obj.weights) == 11  # 6 images + 5 mirrors (a caption naming a side is not mirrored)
    assert obj.weights[:3].sum() + obj.weights[6:9].sum() == pytest.approx(1.0)
    assert obj.weights[3:6].sum() + obj.weights[9:].sum() == pytest.approx(3.0)
    assert obj.weights[4] == pytest.approx(1.0)  # "at the left": one row, its whole weight
    # other class prompts are other settings: the work folder is not continued with them
    with pytest.raises(InvalidParameter, match="class_prompts"):
        train_lora(_settings(world, tmp_path, class_prompts=["a star"], class_images=3, prior_weight=3.0, steps=5))


def test_prior_target_base_keeps_the_base_models_own_predictions(tmp_path, world):
    from brushwork.train.personal.base import BaseTargets, Objective, load_base
    from brushwork.train.personal.lora import tokenize

    base = load_base(str(world["shapes"]))
    pipe = base.pipe
    px = np.random.default_rng(0).integers(0, 255, (2, 16, 16, 3), dtype=np.uint8)
    enc = lambda texts: tokenize(pipe.tokenizer, texts)  # noqa: E731
    bank = BaseTargets(Objective(base, px, [["a red square"], ["a star at the left"]], 1, flip=True), pipe.unet, enc,
                       pipe.text_encoder, 4, 0)
    assert len(bank) == 4 * 3  # 2 images and 1 mirror ("at the left" is not mirrored), 4 draws each
    empty = enc([""])[0]
    assert sum(torch.equal(row, empty) for row in bank.ids) == 3  # one draw in four: the empty prompt
    k = bank.pick(5, 6)
    assert torch.equal(k, bank.pick(5, 6))
    with torch.no_grad():  # the targets are what the frozen base model predicts
        assert torch.allclose(pipe.unet(bank.noisy[k], bank.t[k], bank.cond[k]).sample, bank.target[k], atol=1e-5)

    # trained with it, a LoRA moves the base model's prediction for a class prompt less than one trained without
    def moved(**kw):
        out = tmp_path / f"{len(kw)}.safetensors"
        res = train_lora(_settings(world, tmp_path, out=str(out), steps=12, **kw))
        with torch.no_grad():
            after = pipe_with(res["pipe"])
        return res, (after - before).abs().mean().item()

    g = torch.Generator().manual_seed(3)
    c = pipe.unet.config
    x, t = torch.randn(4, c.in_channels, c.sample_size, c.sample_size, generator=g), torch.tensor([50, 300, 600, 900])
    cond = pipe.text_encoder(enc(["a red square"] * 4)).last_hidden_state

    def pipe_with(p):
        return p.unet(x, t, cond).sample

    with torch.no_grad():
        before = pipe_with(pipe)
    _, free = moved()
    res, held = moved(class_prompt="a red square", class_images=2, prior_target="base", prior_weight=20.0)
    assert held < 0.5 * free
    with safe_open(res["out"], "pt") as f:
        assert f.metadata()["ss_num_reg_images"] == "2"
    card = Path(res["out"]).with_suffix(".md").read_text()
    assert "weight 20, targets: the base model's own predictions" in card
