"""A tiny random shapes-world model (the default model's architecture, shrunk) as a diffusers folder."""

from __future__ import annotations

import pytest


def build_tiny_model(folder, seed: int = 0, scheduler: dict | None = None):
    import torch
    from diffusers import AutoencoderKL, DDPMScheduler, StableDiffusionPipeline, UNet2DConditionModel

    from brushwork.train.diffusion import DEFAULT_SCHEDULER_CONFIG, make_text_encoder
    from brushwork.train.recipe import _grammar_words
    from brushwork.train.tokenizer import build_tokenizer

    torch.manual_seed(seed)
    tok = build_tokenizer(_grammar_words(), folder / "_tok")
    te = make_text_encoder(tok, dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                     num_attention_heads=2, max_position_embeddings=77, projection_dim=32))
    unet = UNet2DConditionModel(sample_size=8, in_channels=4, out_channels=4, layers_per_block=1,
                                block_out_channels=(32, 32), down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                                up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), cross_attention_dim=32,
                                attention_head_dim=2, norm_num_groups=8)
    vae = AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4, sample_size=16,
                        down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
                        block_out_channels=(8, 8), layers_per_block=1, norm_num_groups=4,
                        mid_block_add_attention=False)
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=te, tokenizer=tok, unet=unet,
                                   scheduler=DDPMScheduler(**(scheduler or DEFAULT_SCHEDULER_CONFIG)), safety_checker=None,
                                   feature_extractor=None, requires_safety_checker=False)
    pipe.save_pretrained(folder, safe_serialization=True)
    (folder / "README.md").write_text("---\nlicense: apache-2.0\nbrushwork:\n  native_size: 16\n  max_size: 32\n---\ntiny\n")
    return folder


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory):
    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "model")


@pytest.fixture(scope="session")
def tiny_zero_snr_model(tmp_path_factory):
    """The tiny model with a zero-terminal-SNR scheduler (``rescale_betas_zero_snr``, trailing timesteps)."""
    from brushwork.train.diffusion import DEFAULT_SCHEDULER_CONFIG

    return build_tiny_model(tmp_path_factory.mktemp("tiny-zsnr") / "model",
                            scheduler={**DEFAULT_SCHEDULER_CONFIG, "rescale_betas_zero_snr": True})


@pytest.fixture(autouse=True)
def _home(tmp_path, monkeypatch):
    monkeypatch.setenv("BRUSHWORK_HOME", str(tmp_path / "home"))
