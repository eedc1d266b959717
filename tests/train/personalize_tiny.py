"""Helpers for the personalisation tests: a tiny random model laid out like the bundled one, and diamond renders.

The tiny model keeps what the trainers read from the bundled model: its tokenizer (a shapes-world vocabulary in
which "diamond" is a word), a 128-wide text encoder (so the LoRA family is ``brushwork-shapes``), a v-prediction
DDPM schedule, and a model card with an Apache-2.0 licence and a native size (16 px here).
"""

from __future__ import annotations

from pathlib import Path

import torch

from brushwork.paths import package_data

NATIVE = 16


def make_shapes_model(folder: Path, seed: int = 0, *, epsilon: bool = False) -> Path:
    from diffusers import AutoencoderKL, DDPMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    from brushwork.train.diffusion import DEFAULT_SCHEDULER_CONFIG

    torch.manual_seed(seed)
    tok = CLIPTokenizer.from_pretrained(str(package_data("default_model", "tokenizer")))
    te = CLIPTextModel(CLIPTextConfig(vocab_size=len(tok), hidden_size=128, intermediate_size=64, num_hidden_layers=1,
                                      num_attention_heads=2, max_position_embeddings=77, hidden_act="quick_gelu",
                                      projection_dim=128, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                                      pad_token_id=tok.pad_token_id))
    unet = UNet2DConditionModel(sample_size=8, in_channels=4, out_channels=4, layers_per_block=1,
                                block_out_channels=(16, 32), down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                                up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), cross_attention_dim=128,
                                attention_head_dim=2, norm_num_groups=8)
    vae = AutoencoderKL(block_out_channels=[8, 16], down_block_types=["DownEncoderBlock2D"] * 2,
                        up_block_types=["UpDecoderBlock2D"] * 2, latent_channels=4, norm_num_groups=4,
                        layers_per_block=1, sample_size=NATIVE)
    sched = {**DEFAULT_SCHEDULER_CONFIG, **({"prediction_type": "epsilon"} if epsilon else {})}
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=te, tokenizer=tok, unet=unet,
                                   scheduler=DDPMScheduler(**sched), safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)
    pipe.save_pretrained(folder, safe_serialization=True)
    (folder / "README.md").write_text(f"---\nlicense: apache-2.0\nbrushwork:\n  native_size: {NATIVE}\n"
                                      f"  max_size: {2 * NATIVE}\n---\n# tiny shapes model\n", encoding="utf-8")
    return folder


COLOURS = ("red", "blue", "green", "yellow", "purple", "orange", "pink", "cyan", "white", "black")


def diamonds(folder: Path, n: int = 5, size: int = 24, seed: int = 0) -> Path:
    """``n`` renders of "a <colour> diamond" (PNG), varied colours, as the benchmark's training images."""
    from PIL import Image

    from brushwork.world.grammar import parse
    from brushwork.world.render import render
    from brushwork.world.scene import sample_scene

    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        colour = COLOURS[i % len(COLOURS)]
        px = render(sample_scene(parse(f"a {colour} diamond"), seed + i, width=size))
        Image.fromarray(px).save(folder / f"diamond_{i}.png")
    return folder
