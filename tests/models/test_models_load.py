"""Loading folders and single files offline; round trips; VAE override; dtypes; shipped configs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

import tinymodels as tiny
from brushwork.errors import ModelFileError, NotFound
from brushwork.models import ldm
from brushwork.models.load import CONFIGS, load_pipeline, load_tokenizer


@pytest.mark.parametrize("kind", ["sd1", "sd2", "sdxl"])
def test_single_file_and_folder_give_identical_images(fixtures, kind, no_network):
    f = fixtures[kind]
    single = load_pipeline(str(f["single"]), config=f["config"])
    folder = load_pipeline(str(f["folder"]))
    assert single.kind == folder.kind == kind
    expected_cls = "StableDiffusionXLPipeline" if kind == "sdxl" else "StableDiffusionPipeline"
    assert type(single.pipe).__name__ == type(folder.pipe).__name__ == expected_cls
    a, b = tiny.generate(single.pipe), tiny.generate(folder.pipe)
    assert a.shape == (16, 16, 3) and a.std() > 0.01
    np.testing.assert_array_equal(a, b)
    assert single.short_hash and len(single.short_hash) == 10
    assert no_network == []  # not a single connection was attempted


@pytest.mark.parametrize("kind", ["sd1", "sd2", "sdxl"])
def test_ldm_layout_round_trips_through_diffusers_converters(fixtures, kind):
    pipe = tiny.make_pipeline(kind)
    flat = ldm.pipeline_to_ldm(pipe, kind)
    unet = ldm.unet_from_ldm(flat, pipe.unet.config)
    assert unet.keys() == pipe.unet.state_dict().keys()
    vae = ldm.vae_from_ldm(flat, pipe.vae.config)
    assert vae.keys() == pipe.vae.state_dict().keys()
    for k, v in pipe.vae.state_dict().items():
        torch.testing.assert_close(vae[k], v, rtol=0, atol=0)


def test_sd2_single_file_keeps_v_prediction(fixtures):
    m = load_pipeline(str(fixtures["sd2"]["single"]), config=fixtures["sd2"]["config"])
    assert m.prediction_type == "v_prediction" and m.pipe.scheduler.config.prediction_type == "v_prediction"


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, "bf16"])
def test_dtype_choice(fixtures, dtype):
    m = load_pipeline(str(fixtures["sd1"]["single"]), config=fixtures["sd1"]["config"], dtype=dtype)
    want = torch.float16 if dtype == torch.float16 else torch.bfloat16
    assert {p.dtype for p in m.pipe.unet.parameters()} == {want}
    assert {p.dtype for p in m.pipe.text_encoder.parameters()} == {want}


def test_vae_override(fixtures, tmp_path):
    other = tiny.make_pipeline("sd1", seed=7)
    vae_file = tmp_path / "other-vae.bin.safetensors"
    save_file({k: v.contiguous() for k, v in ldm.vae_to_ldm(other.vae.state_dict(), other.vae.config, prefix="").items()},
              str(vae_file))
    base = load_pipeline(str(fixtures["sd1"]["single"]), config=fixtures["sd1"]["config"])
    swapped = load_pipeline(str(fixtures["sd1"]["single"]), config=fixtures["sd1"]["config"], vae=str(vae_file))
    assert swapped.vae == vae_file.name
    for k, v in other.vae.state_dict().items():
        torch.testing.assert_close(swapped.pipe.vae.state_dict()[k], v, rtol=0, atol=0)
    assert not np.array_equal(tiny.generate(base.pipe), tiny.generate(swapped.pipe))
    with pytest.raises(ModelFileError, match="not a VAE"):
        load_pipeline(str(fixtures["sd1"]["single"]), config=fixtures["sd1"]["config"], vae=str(fixtures["sd2"]["single"]))


def test_single_file_is_memory_mapped_not_copied(fixtures):
    """Tensors in the target dtype are assigned, not copied: the UNet shares the file's mmap."""
    m = load_pipeline(str(fixtures["sd1"]["single"]), config=fixtures["sd1"]["config"])
    src = load_file(str(fixtures["sd1"]["single"]))
    w = m.pipe.unet.conv_in.weight
    torch.testing.assert_close(w, src["model.diffusion_model.input_blocks.0.0.weight"], rtol=0, atol=0)
    # a parameter assigned from the checkpoint is not an ordinary heap allocation of its own
    assert not w.requires_grad


def test_non_checkpoints_are_refused_with_reason(tmp_path, fixtures):
    emb = tmp_path / "emb.safetensors"
    save_file({"emb_params": torch.zeros(1, 768)}, str(emb))
    with pytest.raises(ModelFileError, match="textual-inversion embedding, not a full"):
        load_pipeline(str(emb))


def test_wrong_config_shapes_are_one_line_errors(fixtures):
    with pytest.raises(ModelFileError) as err:
        load_pipeline(str(fixtures["sd1"]["single"]))  # tiny weights against the full-size shipped config
    assert "\n" not in str(err.value) and "UNet" in str(err.value)


def test_bundled_model_absent_is_a_clear_error():
    with pytest.raises(NotFound, match="bundled default model is not installed"):
        load_pipeline(None)


def test_bundled_model_loads_with_its_card(fixtures, tmp_path, monkeypatch):
    import shutil

    bundled = tmp_path / "default_model"
    shutil.copytree(fixtures["sd1"]["folder"], bundled)
    tiny.card(bundled, "apache-2.0", "brushwork:\n  native_size: 16\n  max_size: 32\n")
    monkeypatch.setattr("brushwork.models.registry.package_data", lambda *p: bundled)
    m = load_pipeline(None)
    assert (m.name, m.license, m.native_size, m.max_size, m.kind) == ("default", "apache-2.0", 16, 32, "sd1")


# ---------------------------------------------------------------- shipped configs


def test_shipped_tokenizers_use_the_real_clip_vocabulary():
    sd1 = load_tokenizer(CONFIGS / "sd1" / "tokenizer")
    assert sd1("a photo of a cat").input_ids == [49406, 320, 1125, 539, 320, 2368, 49407]
    assert sd1.pad_token_id == 49407 and sd1.model_max_length == 77 and len(sd1) == 49408
    sd2 = load_tokenizer(CONFIGS / "sd2" / "tokenizer")
    assert sd2.pad_token == "!" and sd2.pad_token_id == 0
    assert load_tokenizer(CONFIGS / "sdxl" / "tokenizer_2").pad_token == "!"


SHIPPED_PARAMS = {  # published parameter counts of the real models
    ("sd1", "unet"): 859_520_964, ("sd1", "vae"): 83_653_863, ("sd1", "text_encoder"): 123_060_480,
    ("sd2", "unet"): 865_910_724, ("sd2", "text_encoder"): 340_387_840,
    ("sdxl", "unet"): 2_567_463_684, ("sdxl", "text_encoder_2"): 694_659_840,
}


@pytest.mark.parametrize("kind,comp", sorted(SHIPPED_PARAMS))
def test_shipped_configs_build_the_real_architectures(kind, comp):
    import json

    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    cfg = json.loads((CONFIGS / kind / comp / "config.json").read_text())
    with torch.device("meta"):
        if comp == "unet":
            m = UNet2DConditionModel.from_config(cfg)
        elif comp == "vae":
            m = AutoencoderKL.from_config(cfg)
        else:
            cls = CLIPTextModelWithProjection if comp == "text_encoder_2" else CLIPTextModel
            m = cls(CLIPTextConfig.from_dict(cfg))
    assert sum(p.numel() for p in m.parameters()) == SHIPPED_PARAMS[(kind, comp)]
