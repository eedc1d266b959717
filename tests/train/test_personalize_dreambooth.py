"""``brushwork train dreambooth``: class images by the base model, the weighted imagefolder, a fine-tune through
``train_unet`` (text encoder frozen, or trained with ``--text-encoder``), a diffusers folder with its record and
card; resuming."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

sys.path.insert(0, str(Path(__file__).resolve().parent))
import personalize_tiny as tiny  # noqa: E402

from brushwork.errors import InvalidParameter  # noqa: E402
from brushwork.train.data import load_imagefolder  # noqa: E402
from brushwork.train.personal.dreambooth import train_dreambooth  # noqa: E402
from brushwork.train.personal.inputs import Settings  # noqa: E402


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("db")
    return {"model": tiny.make_shapes_model(root / "shapes"), "images": tiny.diamonds(root / "diamonds")}


@pytest.fixture(autouse=True)
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("BRUSHWORK_HOME", str(tmp_path / "home"))


def _settings(world, tmp_path, **kw):
    base = dict(method="dreambooth", images=str(world["images"]), out=str(tmp_path / "db"), prompt="a diamond",
                class_prompt="a square", class_images=6, prior_weight=2.0, model=str(world["model"]), steps=3,
                batch=4, lr=1e-3, progress=False)
    return Settings(**{**base, **kw})


def test_dreambooth_writes_a_model_that_loads_with_its_record_and_card(tmp_path, world):
    from brushwork.models.inspect import sha256_folder
    from brushwork.models.load import load_pipeline

    res = train_dreambooth(_settings(world, tmp_path))
    assert res["done"] and res["step"] == 3
    work, out = Path(res["work"]), Path(res["out"])
    assert work == tmp_path / "db.work" and out == tmp_path / "db"
    data = load_imagefolder(work / "data")
    assert sorted(data.files)[:2] == ["class_0000.png", "class_0001.png"] and len(data) == 5 + 6
    inst = np.array([f.startswith("instance_") for f in data.files])
    assert data.weights[~inst].sum() == pytest.approx(2 * data.weights[inst].sum())  # --prior-weight 2
    assert {data.texts[i] for i in np.flatnonzero(inst)} == {"a diamond"}
    assert {data.texts[i] for i in np.flatnonzero(~inst)} == {"a square"}
    # the UNet moved, the text encoder and VAE did not (fp16 export of the fp32 base)
    base = load_pipeline(str(world["model"]), dtype="fp16", hash=False).pipe
    m = load_pipeline(str(out), dtype="fp32", hash=False)
    assert m.license == "apache-2.0" and m.native_size == 16
    for comp in ("text_encoder", "vae"):
        a, b = getattr(base, comp).state_dict(), getattr(m.pipe, comp).state_dict()
        assert all(torch.equal(a[k].float(), b[k]) for k in a), comp
    a, b = base.unet.state_dict(), m.pipe.unet.state_dict()
    assert any(not torch.equal(a[k].float(), b[k]) for k in a)
    record = json.loads((out / "brushwork_training.json").read_text())
    assert record["dreambooth_of"] == {"model": "shapes", "sha256": sha256_folder(world["model"])}
    run = record["chain"][-1]
    assert run["method"] == "dreambooth" and run["unet_steps"] == 3 and run["class_images"] == 6
    assert run["instance_prompt"] == "a diamond" and run["class_prompt"] == "a square" and run["complete"]
    card = (out / "README.md").read_text()
    for fact in ("license: apache-2.0", "native_size: 16", "`a diamond`", "`a square`, 6 images"):
        assert fact in card, fact
    for name in ("samples.png", "unet/unet_loss.png", "unet/checkpoint/state.json", "minutes.json"):
        assert (work / name).stat().st_size > 0, name
    assert res["minutes"] > 0


def test_stopped_run_continues_and_class_images_are_made_once(tmp_path, world):
    s = _settings(world, tmp_path, class_images=3, prior_weight=1.0, max_minutes=1e-9)
    first = train_dreambooth(s)
    assert not first["done"] and not (tmp_path / "db").exists()
    data = tmp_path / "db.work" / "data"
    stamps = {p.name: p.stat().st_mtime_ns for p in data.glob("class_*.png")}
    assert len(stamps) == 3
    second = train_dreambooth(_settings(world, tmp_path, class_images=3, prior_weight=1.0))
    assert second["done"] and second["step"] == 3
    assert {p.name: p.stat().st_mtime_ns for p in data.glob("class_*.png")} == stamps
    state = json.loads((tmp_path / "db.work" / "unet" / "checkpoint" / "state.json").read_text())
    assert state["step"] == 3 and len(state["losses"]) == 3
    assert (tmp_path / "db" / "unet" / "diffusion_pytorch_model.safetensors").is_file()
    # no prior preservation: instance rows only, no class images
    none = train_dreambooth(_settings(world, tmp_path, out=str(tmp_path / "plain"), prior_weight=0.0))
    assert none["done"] and load_imagefolder(tmp_path / "plain.work" / "data").files == [
        f"instance_{i:02d}.png" for i in range(5)]
    assert load_file(tmp_path / "plain" / "unet" / "diffusion_pytorch_model.safetensors")


def test_text_encoder_trains_with_the_unet_when_asked(tmp_path, world):
    from brushwork.models.load import load_pipeline

    res = train_dreambooth(_settings(world, tmp_path, text_encoder=True, class_images=2))
    assert res["done"]
    base = load_pipeline(str(world["model"]), dtype="fp16", hash=False).pipe
    m = load_pipeline(res["out"], dtype="fp32", hash=False).pipe
    for comp in ("text_encoder", "unet"):
        a, b = getattr(base, comp).state_dict(), getattr(m, comp).state_dict()
        assert any(not torch.equal(a[k].float(), b[k]) for k in a), comp
    a, b = base.vae.state_dict(), m.vae.state_dict()
    assert all(torch.equal(a[k].float(), b[k]) for k in a)
    run = json.loads((Path(res["out"]) / "brushwork_training.json").read_text())["chain"][-1]
    assert run["text_encoder"] is True
    assert "(UNet and text encoder)" in (Path(res["out"]) / "README.md").read_text()
    # a work folder of a frozen-text-encoder run is not continued with the text encoder training
    frozen = _settings(world, tmp_path, out=str(tmp_path / "frozen"), class_images=2)
    assert train_dreambooth(frozen)["done"]
    with pytest.raises(InvalidParameter, match="text_encoder"):
        train_dreambooth(_settings(world, tmp_path, out=str(tmp_path / "frozen"), class_images=2, text_encoder=True,
                                   steps=4))


def test_train_word_moves_only_that_words_rows_and_class_prompts_cycle(tmp_path, world):
    from brushwork.models.load import load_pipeline

    prompts = ["a red square", "two circles", "a star on a blue background"]
    res = train_dreambooth(_settings(world, tmp_path, class_prompt=None, class_prompts=prompts, class_images=4,
                                     words=["diamond"], word_lr=0.05))
    assert res["done"]
    data = load_imagefolder(Path(res["work"]) / "data")
    texts = dict(zip(data.files, data.texts))
    assert [texts[f"class_{i:04d}.png"] for i in range(4)] == prompts + prompts[:1]  # line i mod n
    base = load_pipeline(str(world["model"]), dtype="fp16", hash=False).pipe
    m = load_pipeline(res["out"], dtype="fp32", hash=False).pipe
    rows = base.tokenizer("diamond", add_special_tokens=False).input_ids
    a, b = base.text_encoder.state_dict(), m.text_encoder.state_dict()
    table = next(k for k in a if k.endswith("token_embedding.weight"))
    assert all(torch.equal(a[k].float(), b[k]) for k in a if k != table)  # the rest of the encoder: untouched
    others = torch.ones(len(a[table]), dtype=torch.bool)
    others[rows] = False
    assert torch.equal(a[table][others].float(), b[table][others])  # every other word's row: untouched
    assert not torch.equal(a[table][rows].float(), b[table][rows])  # the word's row: trained
    run = json.loads((Path(res["out"]) / "brushwork_training.json").read_text())["chain"][-1]
    assert run["train_words"] == ["diamond"] and run["class_prompts"] == 3 and run["word_lr"] == 0.05
    card = (Path(res["out"]) / "README.md").read_text()
    assert "3 prompts, e.g. `a red square`" in card and "token rows of diamond at lr 0.05" in card


@pytest.mark.parametrize("kw, message", [
    (dict(class_prompts=["a square"]), "--class-prompt or --class-prompts, not both"),
    (dict(class_prompt=None, class_prompts=["a square", " "]), "--class-prompts: line 2 is empty"),
    (dict(class_prompt=None), "needs --class-prompt"),
    (dict(words=["diamond"], text_encoder=True), "give one of them"),
    (dict(words=["hexagon"]), "no caption uses that word"),
    (dict(words=["diamond"], word_lr=0.0), "--word-lr must be a number in"),
])
def test_bad_dreambooth_flags_are_refused_before_anything_is_written(tmp_path, world, kw, message):
    with pytest.raises(InvalidParameter, match=message):
        train_dreambooth(_settings(world, tmp_path, **kw))
    assert not (tmp_path / "db").exists() and not (tmp_path / "db.work").exists()


def test_prior_target_base_teaches_class_rows_the_starting_models_own_prediction(tmp_path, world):
    from brushwork.train.diffusion import train_unet
    from brushwork.train.init import Start
    from brushwork.train.personal.base import load_base

    res = train_dreambooth(_settings(world, tmp_path, prior_target="base", words=["diamond"], word_lr=0.05))
    assert res["done"]
    card = (Path(res["out"]) / "README.md").read_text()
    assert "weight 2, targets: the base model's own predictions" in card
    run = json.loads((Path(res["out"]) / "brushwork_training.json").read_text())["chain"][-1]
    assert run["prior_target"] == "base"
    data = Path(res["work"]) / "data"

    # every row taught: the first step's loss is 0 (the target is what the starting UNet predicts, even for the
    # rows dropped to the empty prompt); with the noise as the target it is not
    def first_loss(teacher_files, out):
        b = load_base(str(world["model"]))
        b.pipe.unet.requires_grad_(True)
        init = Start(b.pipe.tokenizer, b.pipe.vae, b.pipe.unet, b.pipe.text_encoder, dict(b.scheduler_config), 0, {})
        train_unet(data, None, None, tmp_path / out, init=init, steps=1, batch=8, lr=1e-3, warmup=1,
                   uncond_p=0.5, train_text_encoder=False, teacher_files=teacher_files, progress=False)
        return json.loads((tmp_path / out / "checkpoint" / "state.json").read_text())["losses"][0]

    everything = set(load_imagefolder(data).files)
    assert first_loss(everything, "taught") < 1e-10
    assert first_loss(None, "noise") > 1e-3
