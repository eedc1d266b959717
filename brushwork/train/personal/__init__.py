"""Personalisation: teach a trained model a new concept from 3–20 images.

- ``inputs``     – the training folder (images + optional ``x.txt`` captions) and the flags, checked before
                   anything is written; images resized to the model's native size;
- ``base``       – the base model with what an output must say about it (hash, licence, family), the cached
                   latents, the denoising loss (the base model's objective, min-SNR-5) and a resumable loop;
- ``lora``       – LoRA through peft on the UNet's attention projections (and optionally the text encoder's),
                   saved as a kohya-style ``.safetensors`` file with a model card;
- ``embedding``  – textual inversion: new token vectors, everything else frozen, saved in A1111's format;
- ``dreambooth`` – a full UNet fine-tune with prior preservation, through ``train.diffusion.train_unet``,
                   saved as a diffusers folder.
"""

# Sized on the bundled model (64 px, 5 images) with 1 thread on a busy 2-core machine (pessimistic): a batch-16 step
# takes 0.59 s (LoRA rank 8), 0.63 s (textual inversion), 0.97 s (full UNet); loading 6 s, a 4-image sample grid
# 2.9 s. So LoRA ~4.3 min, textual inversion ~4.6 min, DreamBooth (32 class images ~0.5 min) ~9.5 min.
DEFAULTS = {
    "lora": dict(steps=400, lr=1e-3, batch=16, warmup=20),
    "embedding": dict(steps=400, lr=2e-3, batch=16, warmup=20),
    "dreambooth": dict(steps=500, lr=2e-4, batch=16, warmup=50, word_lr=1e-3),
}


def run(settings, *, start: float | None = None) -> dict:
    """Run the trainer ``settings.method`` names (``lora``, ``embedding`` or ``dreambooth``)."""
    if settings.method == "lora":
        from brushwork.train.personal.lora import train_lora as train
    elif settings.method == "embedding":
        from brushwork.train.personal.embedding import train_embedding as train
    elif settings.method == "dreambooth":
        from brushwork.train.personal.dreambooth import train_dreambooth as train
    else:
        raise ValueError(f"unknown method {settings.method!r}")
    return train(settings, start=start)
