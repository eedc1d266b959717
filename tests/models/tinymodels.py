"""Tiny random-weight SD1 / SD2 / SDXL pipelines, in diffusers-folder and original single-file form.

Shapes are kept as small as the kind detection allows. Two constraints come from diffusers' own
single-file inference, which the tests must agree with:
- SD2 is recognised only by a cross-attention width of 1024, so the tiny SD2 text encoder is
  1024 wide; to stay small it has no transformer layers (embeddings + final norm only);
- SDXL is recognised by ``conditioner.embedders.1.model.transformer.resblocks.9.*``, so the tiny
  second text encoder has 10 (32-wide) layers.
All of them use a tiny byte-level CLIP BPE vocabulary (byte symbols + a few merges) so that the
token embeddings stay small.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from brushwork.models import ldm

MERGES = [("c", "a"), ("ca", "t</w>"), ("r", "e"), ("re", "d</w>")]


def tiny_tokenizer(pad_token: str = "<|endoftext|>"):
    from transformers import CLIPTokenizer
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    symbols = list(bytes_to_unicode().values())
    tokens = symbols + [s + "</w>" for s in symbols]
    tokens += [a + b for a, b in MERGES]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    vocab = {t: i for i, t in enumerate(dict.fromkeys(tokens))}
    return CLIPTokenizer(vocab=vocab, merges=list(MERGES), pad_token=pad_token, model_max_length=77)


def _te_config(tok, **kw):
    from transformers import CLIPTextConfig

    base = dict(hidden_size=32, intermediate_size=37, num_attention_heads=4, num_hidden_layers=2,
                max_position_embeddings=77, vocab_size=len(tok), bos_token_id=0, eos_token_id=2, pad_token_id=1,
                hidden_act="quick_gelu", projection_dim=32)
    base.update(kw)
    return CLIPTextConfig(**base)


def make_pipeline(kind: str, seed: int = 0):
    """A random tiny pipeline of ``kind`` (sd1 / sd2 / sdxl)."""
    from diffusers import (
        AutoencoderKL, DDIMScheduler, EulerDiscreteScheduler, PNDMScheduler, StableDiffusionPipeline,
        StableDiffusionXLPipeline, UNet2DConditionModel,
    )
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    torch.manual_seed(seed)
    vae = AutoencoderKL(block_out_channels=[8, 16], down_block_types=["DownEncoderBlock2D"] * 2,
                        up_block_types=["UpDecoderBlock2D"] * 2, latent_channels=4, norm_num_groups=4,
                        layers_per_block=1, sample_size=16)
    common = dict(block_out_channels=[16, 32], layers_per_block=2, norm_num_groups=8, sample_size=8)
    if kind == "sdxl":
        tok, tok2 = tiny_tokenizer(), tiny_tokenizer(pad_token="!")
        te = CLIPTextModel(_te_config(tok))
        te2 = CLIPTextModelWithProjection(_te_config(tok2, num_hidden_layers=10, hidden_act="gelu"))
        unet = UNet2DConditionModel(
            **common, down_block_types=["DownBlock2D", "CrossAttnDownBlock2D"],
            up_block_types=["CrossAttnUpBlock2D", "UpBlock2D"], attention_head_dim=[2, 4],
            transformer_layers_per_block=[1, 2], cross_attention_dim=64, use_linear_projection=True,
            addition_embed_type="text_time", addition_time_embed_dim=8, projection_class_embeddings_input_dim=80,
        )
        sched = EulerDiscreteScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012,
                                       steps_offset=1, timestep_spacing="leading")
        pipe = StableDiffusionXLPipeline(vae=vae, text_encoder=te, text_encoder_2=te2, tokenizer=tok,
                                         tokenizer_2=tok2, unet=unet, scheduler=sched, add_watermarker=False)
    else:
        sd2 = kind == "sd2"
        tok = tiny_tokenizer(pad_token="!" if sd2 else "<|endoftext|>")
        te_kw = dict(hidden_size=1024, num_hidden_layers=0, num_attention_heads=16, hidden_act="gelu") if sd2 else {}
        te = CLIPTextModel(_te_config(tok, **te_kw))
        unet = UNet2DConditionModel(
            **common, down_block_types=["CrossAttnDownBlock2D", "DownBlock2D"],
            up_block_types=["UpBlock2D", "CrossAttnUpBlock2D"], attention_head_dim=2,
            cross_attention_dim=1024 if sd2 else 32, use_linear_projection=sd2,
        )
        sched = (DDIMScheduler(prediction_type="v_prediction", beta_schedule="scaled_linear", beta_start=0.00085,
                               beta_end=0.012, clip_sample=False, set_alpha_to_one=False, steps_offset=1)
                 if sd2 else PNDMScheduler(skip_prk_steps=True, beta_schedule="scaled_linear", beta_start=0.00085,
                                           beta_end=0.012, steps_offset=1))
        pipe = StableDiffusionPipeline(vae=vae, text_encoder=te, tokenizer=tok, unet=unet, scheduler=sched,
                                       safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    for m in (pipe.unet, pipe.vae, pipe.text_encoder, getattr(pipe, "text_encoder_2", None)):
        if m is not None:
            m.eval()
    return pipe


def write_fixtures(kind: str, root: Path, seed: int = 0) -> dict[str, Path]:
    """Write ``root/<kind>-folder`` (diffusers) and ``root/<kind>.safetensors`` (original layout)."""
    from safetensors.torch import save_file

    pipe = make_pipeline(kind, seed)
    folder = root / f"{kind}-folder"
    pipe.save_pretrained(folder, safe_serialization=True)
    single = root / f"{kind}.safetensors"
    sd = {k: v.contiguous() for k, v in ldm.pipeline_to_ldm(pipe, kind).items()}
    save_file(sd, str(single))
    return {"folder": folder, "single": single, "config": folder}


def generate(pipe, seed: int = 0):
    """A 2-step 16x16 image as a numpy array."""
    g = torch.Generator().manual_seed(seed)
    out = pipe(prompt="a red cat", num_inference_steps=2, height=16, width=16, generator=g, output_type="np",
               guidance_scale=5.0)
    return out.images[0]


def card(folder: Path, license: str, extra: str = "") -> None:
    (folder / "README.md").write_text(f"---\nlicense: {license}\n{extra}---\n# a tiny model\n", encoding="utf-8")


def dump(obj) -> str:
    return json.dumps(obj, indent=1, default=str)
