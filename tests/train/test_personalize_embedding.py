"""``brushwork train embedding``: only the new token's vectors train; the A1111 file, loaded with diffusers'
``load_textual_inversion``, gives the model the trained vectors; resuming and the CLI."""

import json
import sys
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

sys.path.insert(0, str(Path(__file__).resolve().parent))
import personalize_tiny as tiny  # noqa: E402

from brushwork.train.personal.inputs import Settings  # noqa: E402
from brushwork.train.personal.embedding import train_embedding  # noqa: E402


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("ti")
    return {"model": tiny.make_shapes_model(root / "shapes"), "images": tiny.diamonds(root / "diamonds")}


@pytest.fixture(autouse=True)
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("BRUSHWORK_HOME", str(tmp_path / "home"))


def _settings(world, tmp_path, **kw):
    base = dict(method="embedding", images=str(world["images"]), out=str(tmp_path / "diamond.safetensors"),
                token="<diamond>", model=str(world["model"]), steps=4, batch=2, lr=5e-2, vectors=2, sample_every=0,
                progress=False)
    return Settings(**{**base, **kw})


def _states(pipe, prompt):
    text = pipe.maybe_convert_prompt(prompt, pipe.tokenizer)
    ids = pipe.tokenizer([text], padding="max_length", max_length=pipe.tokenizer.model_max_length,
                         return_tensors="pt").input_ids
    with torch.no_grad():
        return pipe.text_encoder(ids).last_hidden_state


def test_a1111_file_loaded_by_diffusers_gives_the_trained_token(tmp_path, world):
    from diffusers import StableDiffusionPipeline

    from brushwork.models.inspect import inspect_model

    before = StableDiffusionPipeline.from_pretrained(str(world["model"]), safety_checker=None)
    res = train_embedding(_settings(world, tmp_path))
    assert res["done"] and res["step"] == 4 and res["token"] == "<diamond>"
    trained = res["pipe"]
    emb = load_file(res["out"])
    assert list(emb) == ["emb_params"] and emb["emb_params"].shape == (2, 128)
    # everything but the new rows is frozen: the UNet and the old embedding rows are the base model's
    old = before.text_encoder.get_input_embeddings().weight
    new = trained.text_encoder.get_input_embeddings().weight
    assert torch.equal(new[:len(old)], old)
    b_unet, t_unet = before.unet.state_dict(), trained.unet.state_dict()
    assert all(torch.equal(b_unet[k], t_unet[k]) for k in b_unet)
    first = trained.tokenizer.convert_tokens_to_ids("<diamond>")
    assert torch.equal(new[first:first + 2], emb["emb_params"])
    assert not torch.allclose(emb["emb_params"][0], emb["emb_params"][1])  # each vector trained on its own
    # diffusers' loader, on a fresh base model
    before.load_textual_inversion(res["out"], token="<diamond>")
    torch.testing.assert_close(_states(before, "a red <diamond>"), _states(trained, "a red <diamond>"))
    assert before.maybe_convert_prompt("a <diamond>", before.tokenizer) == "a <diamond> <diamond>_1"
    with safe_open(res["out"], "pt") as f:
        meta = f.metadata()
    assert meta["name"] == meta["modelspec.trigger_phrase"] == meta["brushwork.token"] == "<diamond>"
    assert meta["modelspec.license"] == "apache-2.0" and meta["brushwork.steps"] == "4"
    card = Path(res["card"]).read_text()
    assert "`<diamond>` (2 vectors" in card and "license: apache-2.0" in card
    info = inspect_model(res["out"])
    assert info["kind"] == "textual-inversion" and info["architecture"]["vectors"] == 2


def test_init_word_captions_resume_and_the_cli(tmp_path, world, monkeypatch, capsys):
    from brushwork import cli

    imgs = tmp_path / "imgs"
    imgs.mkdir()
    for i, p in enumerate(sorted(world["images"].iterdir())):
        (imgs / p.name).write_bytes(p.read_bytes())
        if i == 0:
            (imgs / p.with_suffix(".txt").name).write_text("a red sks-d on a background")
    full = train_embedding(_settings(world, tmp_path, images=str(imgs), token="sks-d", vectors=1, init_word="square",
                                     prompt="a sks-d", out=str(tmp_path / "full.safetensors")))
    assert full["done"]
    # a run stopped by --max-minutes and continued ends where an uninterrupted one does
    monkeypatch.setattr(cli, "COMMAND_MODULES", ["brushwork.train.commands"])
    argv = ["train", "embedding", "--images", str(imgs), "--token", "sks-d", "--vectors", "1", "--init-word",
            "square", "--prompt", "a sks-d", "--model", str(world["model"]), "--steps", "4", "--batch", "2",
            "--lr", "5e-2", "--sample-every", "0", "--out", str(tmp_path / "cli.safetensors")]
    assert cli.main([*argv, "--max-minutes", "1e-9"]) == 0
    first = json.loads(capsys.readouterr().out)
    assert first["done"] is False and first["step"] == 1 and not (tmp_path / "cli.safetensors").exists()
    assert cli.main(argv) == 0
    second = json.loads(capsys.readouterr().out)
    assert second["done"] is True and second["out"] == str(tmp_path / "cli.safetensors")
    assert torch.equal(load_file(second["out"])["emb_params"], load_file(full["out"])["emb_params"])
    # a caption without the token is refused
    (imgs / "diamond_1.txt").write_text("a blue diamond")
    with pytest.raises(Exception, match="the caption of diamond_1.png .* does not contain --token sks-d"):
        train_embedding(_settings(world, tmp_path, images=str(imgs), token="sks-d", prompt="a sks-d"))
