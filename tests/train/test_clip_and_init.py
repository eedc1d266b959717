"""The CLIP stage, UNet training on a frozen pretrained text encoder, and continuing from a model (``--init``)."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from brushwork.train.clip import retrieval_top1, text_encoder_of, train_clip
from brushwork.train.data import batch_indices, load_imagefolder
from brushwork.train.diffusion import train_unet
from brushwork.train.init import load_start
from brushwork.train.recipe import Recipe, run_recipe
from brushwork.train.tokenizer import build_tokenizer, corpus_words
from brushwork.train.vae import train_vae
from brushwork.world.dataset import make_dataset

TINY_VAE = dict(in_channels=3, out_channels=3, latent_channels=4, sample_size=32,
                down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
                block_out_channels=(8, 8), layers_per_block=1, norm_num_groups=4, mid_block_add_attention=False)
TINY_UNET = dict(sample_size=16, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(16, 16),
                 down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                 up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), cross_attention_dim=128, attention_head_dim=2,
                 norm_num_groups=8)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("clip")
    d = make_dataset(root / "data", 16, seed=3, size=64, workers=1)
    build_tokenizer(corpus_words(load_imagefolder(d).texts), root / "tok")
    vae_dir = train_vae(d, root / "vae", steps=1, batch=4, crop=16, config={**TINY_VAE, "sample_size": 64},
                        progress=False)
    clip = train_clip(d, root / "tok", root / "clip", steps=3, batch=8, progress=False, log=lambda m: None)
    return root, d, vae_dir, clip


def test_clip_stage_writes_the_model_and_its_text_tower(data):
    from transformers import CLIPModel, CLIPTextModel

    root, _, _, res = data
    assert res["done"] and res["step"] == 3 and 0.0 <= res["top1"] <= 1.0
    clip = CLIPModel.from_pretrained(str(root / "clip" / "clip"))
    te = CLIPTextModel.from_pretrained(str(root / "clip" / "text_encoder"))
    ids = torch.randint(0, clip.config.text_config.vocab_size, (2, 77))
    with torch.no_grad():
        assert torch.equal(te(ids).last_hidden_state, clip.text_model(ids).last_hidden_state)
        assert torch.equal(text_encoder_of(clip)(ids).last_hidden_state, te(ids).last_hidden_state)
    assert (root / "clip" / "clip_loss.png").stat().st_size > 0


def test_retrieval_top1_is_one_when_each_image_matches_only_its_caption():
    class Fake(torch.nn.Module):
        def forward(self, input_ids, pixel_values):
            return type("Out", (), {"logits_per_image": torch.eye(len(input_ids)) * 5})()

    assert retrieval_top1(Fake(), torch.zeros(4, 3, 8, 8), torch.zeros(4, 5, dtype=torch.long)) == 1.0


def test_frozen_pretrained_text_encoder_stays_put_and_caches_the_same_conditioning(tmp_path, data):
    root, d, vae_dir, _ = data
    te_dir = root / "clip" / "text_encoder"
    kw = dict(steps=1, batch=4, unet_config=TINY_UNET, progress=False, warmup=1, text_encoder_dir=te_dir)
    frozen = train_unet(d, vae_dir, root / "tok", tmp_path / "frozen", train_text_encoder=False, **kw)
    joint = train_unet(d, vae_dir, root / "tok", tmp_path / "joint", train_text_encoder=True, **kw)
    start = load_file(te_dir / "model.safetensors")
    after = frozen["text_encoder"].state_dict()
    assert all(torch.equal(start[k], after[k]) for k in start)  # frozen: not one weight moved
    moved = joint["text_encoder"].state_dict()
    assert any(not torch.equal(start[k], moved[k]) for k in start)
    # step 1 sees the same weights and batch: the cached (fp16) text states give the loss of the live encoder
    lf = json.loads((tmp_path / "frozen" / "checkpoint" / "state.json").read_text())["losses"][0]
    lj = json.loads((tmp_path / "joint" / "checkpoint" / "state.json").read_text())["losses"][0]
    assert lf == pytest.approx(lj, rel=1e-2)


@pytest.fixture(scope="module")
def bundled_like(tmp_path_factory):
    """A toy recipe model, as the bundled one is made (3 UNet steps)."""
    work = tmp_path_factory.mktemp("recipe")
    r = Recipe(images=24, vae_steps=1, clip_steps=2, clip_batch=8, unet_steps=3, unet_batch=4)
    assert run_recipe(work, r, progress=False, log=lambda m: None)["done"]
    return work, r


def test_init_continues_after_the_batches_the_model_has_seen(tmp_path, bundled_like):
    work, r = bundled_like
    record = json.loads((work / "model" / "brushwork_training.json").read_text())
    assert record["unet_steps_total"] == 3 and len(record["chain"]) == 1
    start = load_start(str(work / "model"))
    assert start.step_offset == 3 and start.scheduler_config["prediction_type"] == "v_prediction"
    res = train_unet(work / "dataset", None, None, tmp_path / "cont", init=start, steps=2, batch=4, warmup=1,
                     train_text_encoder=False, progress=False)
    assert res["done"] and res["step_offset"] == 3
    state = json.loads((tmp_path / "cont" / "checkpoint" / "state.json").read_text())
    assert state["step_offset"] == 3
    # the UNet started from the model's weights, not from new ones: its first loss is that of a trained model
    # on the batch the chain's step 3 draws, which differs from step 0's
    data = load_imagefolder(work / "dataset")
    assert not np.array_equal(batch_indices(data.weights, 0, 3, 4), batch_indices(data.weights, 0, 0, 4))


def test_recipe_with_init_extends_the_chain(tmp_path, bundled_like):
    work, r = bundled_like
    res = run_recipe(tmp_path / "next", r, init=str(work / "model"), progress=False, log=lambda m: None)
    assert res == {"done": True, "stage": "done", "step": 3}
    record = json.loads((tmp_path / "next" / "model" / "brushwork_training.json").read_text())
    assert record["unet_steps_total"] == 6
    first, second = record["chain"]
    assert first["init"] is None and second["init"] == str(work / "model")
    assert second["step_offset"] == 3 and second["unet_steps"] == 3 and second["data_seed"] == 0
    assert second["unet_batch"] == r.unet_batch and second["device"] == "cpu"
    assert set(second["minutes"]) >= {"unet"} and "vae" not in second["minutes"]  # the VAE came from the model
    # the continuation keeps the model's VAE, tokenizer and text encoder byte for byte
    for comp in ("vae", "text_encoder"):
        a = load_file(work / "model" / comp / ("diffusion_pytorch_model.safetensors" if comp == "vae"
                                               else "model.safetensors"))
        b = load_file(tmp_path / "next" / "model" / comp / ("diffusion_pytorch_model.safetensors" if comp == "vae"
                                                            else "model.safetensors"))
        assert all(torch.equal(a[k], b[k]) for k in a)
    for config in (tmp_path / "next" / "model").glob("*/config.json"):  # no local path carried over
        assert "_name_or_path" not in json.loads(config.read_text()), config
    tokenizer = json.loads((tmp_path / "next" / "model" / "tokenizer" / "tokenizer.json").read_text())
    assert tokenizer["padding"] is None
    with pytest.raises(Exception, match="holds a run with --init"):
        run_recipe(tmp_path / "next", r, init=None, progress=False, log=lambda m: None)


def test_init_refuses_sdxl_and_bad_references_in_one_line(tmp_path):
    sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[1] / "models"))
    try:
        import tinymodels
    finally:
        sys.path.pop(0)
    sdxl = tinymodels.make_pipeline("sdxl")
    sdxl.save_pretrained(tmp_path / "xl", safe_serialization=True)
    d = str(tmp_path / "d")
    cases = [
        (["train", "unet", "--data", d, "--init", str(tmp_path / "xl"), "--out", d], "a sdxl model cannot be trained"),
        (["train", "unet", "--data", d, "--init", str(tmp_path / "none"), "--out", d], "no such file or folder"),
        (["train", "unet", "--data", d, "--init", str(tmp_path / "xl"), "--vae", d, "--out", d],
         "--init takes the VAE, tokenizer and text encoder from the model; drop --vae"),
        (["train", "unet", "--data", d, "--out", d], "train unet needs --vae and --tokenizer, or --init MODEL"),
        (["train", "recipe", "--work", d, "--init", str(tmp_path / "xl")], "a sdxl model cannot be trained"),
    ]
    for args, msg in cases:
        r = subprocess.run([sys.executable, "-m", "brushwork", *args], capture_output=True, text=True,
                           env={**__import__("os").environ, "BRUSHWORK_HOME": str(tmp_path / "home")})
        assert r.returncode == 2 and "Traceback" not in r.stderr, (args, r.stderr)
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and msg in lines[0], (args, r.stderr)
