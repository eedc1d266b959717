"""Where a UNet training run starts: new components, or a trained model's (``--init MODEL``).

``Start.fresh`` builds a new UNet (and text encoder, unless a pretrained one is given) around a trained VAE and
tokenizer. ``load_start`` takes everything from a diffusers folder or a registered model name: VAE, tokenizer, text
encoder, UNet and scheduler, with their configs and weights, plus the step offset its training reached (recorded by
the recipe in ``brushwork_training.json``), so that a continuation draws new batches. Models that cannot be trained
this way are refused with one line.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from brushwork.errors import InvalidParameter

TRAINING_RECORD = "brushwork_training.json"


@dataclass
class Start:
    tokenizer: Any
    vae: Any
    unet: Any
    text_encoder: Any
    scheduler_config: dict
    step_offset: int = 0
    record: dict = field(default_factory=dict)  # the init model's training record ({} for a fresh start)

    @classmethod
    def fresh(cls, vae_dir, tokenizer_dir, text_encoder_dir=None, unet_config: dict | None = None,
              text_config: dict | None = None) -> "Start":
        from diffusers import AutoencoderKL, UNet2DConditionModel
        from transformers import CLIPTextModel, CLIPTokenizer

        from brushwork.train.diffusion import DEFAULT_SCHEDULER_CONFIG, make_text_encoder, unet_config_for

        if vae_dir is None or tokenizer_dir is None:
            raise ValueError("a fresh start needs vae_dir and tokenizer_dir")
        tokenizer = CLIPTokenizer.from_pretrained(str(tokenizer_dir))
        vae = AutoencoderKL.from_pretrained(str(vae_dir))
        unet = UNet2DConditionModel(**unet_config_for(vae, unet_config))
        if text_encoder_dir is not None:
            te = CLIPTextModel.from_pretrained(str(text_encoder_dir))
            if te.config.hidden_size != unet.config.cross_attention_dim:
                raise InvalidParameter(f"the text encoder's width {te.config.hidden_size} differs from the UNet's "
                                       f"cross_attention_dim {unet.config.cross_attention_dim}")
        else:
            te = make_text_encoder(tokenizer, text_config)
        return cls(tokenizer, vae, unet, te, dict(DEFAULT_SCHEDULER_CONFIG))


def read_record(folder: Path) -> dict:
    path = Path(folder) / TRAINING_RECORD
    return json.loads(path.read_text()) if path.is_file() else {}


def load_start(model_ref: str, *, home=None, allow_pickle: bool = False) -> Start:
    """The components of the model ``model_ref`` names (a registered name, a diffusers folder or an SD1.x/2.x single
    file), in fp32, loaded as ``brushwork generate --model`` loads them (offline; pickles refused)."""
    import torch

    from brushwork.models.load import load_pipeline

    m = load_pipeline(model_ref, dtype=torch.float32, home=home, allow_pickle=allow_pickle, hash=False)
    if m.kind not in ("sd1", "sd2"):
        raise InvalidParameter(f"--init {m.name}: a {m.kind} model cannot be trained here; train unet continues "
                               "Stable Diffusion 1.x/2.x-style models (one CLIP text encoder, one UNet)")
    keep = ("num_train_timesteps", "beta_schedule", "beta_start", "beta_end", "prediction_type", "steps_offset",
            "timestep_spacing", "clip_sample", "rescale_betas_zero_snr", "trained_betas")
    scheduler_config = {k: v for k, v in dict(m.pipe.scheduler.config).items() if k in keep}
    if scheduler_config.get("prediction_type") not in ("epsilon", "v_prediction"):
        raise InvalidParameter(f"--init {m.name}: prediction type {scheduler_config.get('prediction_type')!r} is not "
                               "trainable here (epsilon or v_prediction)")
    record = read_record(m.path) if m.path.is_dir() else {}
    p = m.pipe
    p.unet.requires_grad_(True)
    return Start(p.tokenizer, p.vae, p.unet, p.text_encoder, scheduler_config,
                 int(record.get("unet_steps_total", 0)), record)
