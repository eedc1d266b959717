"""``brushwork train dreambooth``: a full UNet fine-tune on the instance images with prior preservation.

1. Class images: ``--class-images`` K images of ``--class-prompt`` (or, with ``--class-prompts FILE``, of its
   lines in turn: class image i shows line i mod n, a prior over many phrasings and scenes rather than one) generated
   by the base model (DPM++ 2M, 20 steps, CFG 7, seeds ``seed*10000 + i``), kept in ``WORK/data`` so a resumed run
   does not make them again.
2. An imagefolder in ``WORK/data``: the instance rows (their captions or ``--prompt``) and the class rows, weighted
   so a batch draws class rows ``--prior-weight`` times as often as instance rows (DreamBooth's prior-preservation
   loss weight, as a sampling ratio: ``train_unet``'s weighted sampler draws the rows).
3. ``train.diffusion.train_unet`` with the base model as ``init`` (what ``train unet --init`` runs): the text
   encoder frozen (with ``--text-encoder`` trained too, at the same learning rate, as diffusers' DreamBooth script's
   ``--train_text_encoder``: the way a word the base never learnt gets an embedding; with ``--train-word WORD``
   only that word's rows of the token-embedding table train, so no other word's meaning moves), warm-up, cosine to
   a tenth of ``--lr``, min-SNR-5, EMA; checkpoints in ``WORK/unet``.
4. The EMA UNet (and text encoder, or the trained words' rows, when they trained) with the base's other
   components and scheduler, saved as a diffusers folder at ``--out`` (fp16), its ``brushwork_training.json`` the
   base's record plus this run, a ``README.md`` card with the inherited licence.
"""

from __future__ import annotations

import json
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from brushwork.train.personal import DEFAULTS
from brushwork.train.personal.base import Base, check_run, load_base, make_class_images, sample_grid, write_card
from brushwork.train.personal.inputs import Settings, check_out, check_settings, read_folder
from brushwork.train.personal.words import check_words


def train_dreambooth(s: Settings, *, start: float | None = None) -> dict:
    """Train (or continue) a DreamBooth as ``s`` says. Returns {"done", "step", "minutes", "work", and when done
    "out", "card", "samples", "pipe" (the fine-tuned pipeline, fp32)}."""
    from brushwork.train.diffusion import train_unet
    from brushwork.train.init import Start

    start = time.monotonic() if start is None else start
    check_settings(s)
    check_out(s)
    inputs = read_folder(s.images, s.prompt)
    check_words(s.words, inputs.captions, inputs.files)
    base = load_base(s.model)
    work = s.work_dir
    n_class = s.class_images if s.prior_weight > 0 else 0
    class_prompts = s.class_prompt_list
    fingerprint = {"method": "dreambooth", "base_sha256": base.sha256, "inputs_sha256": inputs.sha256,
                   "class_prompt": s.class_prompt, "class_images": n_class, "prior_weight": s.prior_weight,
                   "batch": s.batch, "seed": s.seed}
    # (each absent unless used, so that work folders of earlier runs still continue)
    if s.text_encoder:
        fingerprint["text_encoder"] = True
    if s.class_prompts:
        fingerprint["class_prompts"] = s.class_prompts
    if s.words:
        fingerprint |= {"words": s.words, "word_lr": s.word_lr}
    if s.prior_target != "noise":
        fingerprint["prior_target"] = s.prior_target
    check_run(work, fingerprint)
    minutes_file = work / "minutes.json"
    before = json.loads(minutes_file.read_text())["minutes"] if minutes_file.is_file() else 0.0
    size, pipe = base.native_size, base.pipe
    pixels = inputs.pixels(size)
    data = write_instances(work / "data", pixels)
    make_class_images(pipe, data, class_prompts, n_class, size, s.seed, s.progress)
    write_metadata(data, inputs.captions, class_prompts, n_class, s.prior_weight)
    rows = word_rows(pipe.tokenizer, s.words)
    init = Start(pipe.tokenizer, pipe.vae, pipe.unet, pipe.text_encoder, dict(base.scheduler_config),
                 int(base.record.get("unet_steps_total", 0)), base.record)
    pipe.unet.requires_grad_(True)
    # train_unet keeps an EMA of a frozen text encoder too and loads it at the end: an EMA of constant weights,
    # equal to them up to float rounding. Unless it trained, the base's own weights are put back (with
    # --train-word, all but the words' rows), so they are saved unchanged.
    text_weights = {k: v.clone() for k, v in pipe.text_encoder.state_dict().items()}
    left = None if s.max_minutes is None else max(1e-6, s.max_minutes - (time.monotonic() - start) / 60)
    res = train_unet(data, None, None, work / "unet", init=init, steps=s.steps, batch=s.batch, lr=s.lr,
                     warmup=min(DEFAULTS["dreambooth"]["warmup"], s.steps // 4), final_lr_frac=0.1,
                     train_text_encoder=s.text_encoder, text_encoder_lr=s.word_lr if rows else None,
                     text_rows=rows or None, seed=s.seed, max_minutes=left, progress=s.progress,
                     teacher_files={f"class_{i:04d}.png" for i in range(n_class)} if s.prior_target == "base" else None)
    pipe.unet.requires_grad_(False)
    pipe.text_encoder.requires_grad_(False)
    if not s.text_encoder:
        keep_rows(pipe.text_encoder, text_weights, rows)
    out = {"done": res["done"], "step": res["step"], "work": str(work)}
    if res["done"]:
        out |= export(s, base, res, pixels, inputs.captions, n_class, before + (time.monotonic() - start) / 60,
                      text_weights, rows)
    out["minutes"] = before + (time.monotonic() - start) / 60
    minutes_file.write_text(json.dumps({"minutes": out["minutes"]}))
    return out


def write_instances(data: Path, pixels: np.ndarray) -> Path:
    """The instance images as ``instance_NN.png`` at the native size (rewritten each run: the same bytes)."""
    data.mkdir(parents=True, exist_ok=True)
    for i, px in enumerate(pixels):
        Image.fromarray(px).save(data / f"instance_{i:02d}.png")
    return data


def word_rows(tokenizer, words: list[str]) -> list[int]:
    """The token-embedding rows of ``words`` (every token of each word)."""
    return sorted({i for w in words for i in tokenizer(w, add_special_tokens=False).input_ids})


def keep_rows(text_encoder, weights: dict, rows: list[int]) -> None:
    """Put the base's text-encoder ``weights`` back, all but ``rows`` of the token-embedding table."""
    table = text_encoder.get_input_embeddings().weight
    name = next(k for k, v in text_encoder.state_dict().items() if v.data_ptr() == table.data_ptr())
    restored = dict(weights)
    restored[name] = weights[name].clone()
    restored[name][rows] = table.detach()[rows].to(restored[name].dtype)
    text_encoder.load_state_dict(restored)


def write_metadata(data: Path, captions: list[list[str]], class_prompts: list[str], n_class: int,
                   prior_weight: float) -> None:
    """``metadata.jsonl``: the n instance images weigh 1/n each (an image with several captions has a row per
    caption, sharing its weight), class rows prior_weight/K each."""
    rows = [{"file_name": f"instance_{i:02d}.png", "text": c, "weight": 1.0 / len(captions) / len(options)}
            for i, options in enumerate(captions) for c in options]
    rows += [{"file_name": f"class_{i:04d}.png", "text": class_prompts[i % len(class_prompts)],
              "weight": prior_weight / n_class}
             for i in range(n_class)]
    (data / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def save_model(pipe, checkpoint: Path, out: Path, text_encoder: bool = False, text_weights: dict | None = None,
               rows: list[int] | None = None) -> None:
    """The checkpoint's EMA UNet (and with ``text_encoder`` its EMA text encoder; with ``rows`` the base's
    ``text_weights`` but those rows of the EMA token table) into ``pipe`` (its other components are the base
    model's), saved as fp16."""
    from safetensors.torch import load_file

    from brushwork.train.recipe import tidy_export

    pipe.unet.load_state_dict(load_file(checkpoint / "unet.ema.safetensors"))
    if text_encoder or rows:
        pipe.text_encoder.load_state_dict(load_file(checkpoint / "text_encoder.ema.safetensors"))
    if rows and not text_encoder:
        keep_rows(pipe.text_encoder, text_weights, rows)
    pipe.to(torch.float16).save_pretrained(out, safe_serialization=True)
    pipe.to(torch.float32)  # the samples then show the saved (fp16-rounded) weights
    tidy_export(out)


def export(s: Settings, base: Base, res: dict, pixels: np.ndarray, captions: list[list[str]], n_class: int,
           minutes: float, text_weights: dict, rows: list[int]) -> dict:
    """The fine-tuned model as a diffusers folder at ``s.out`` with its training record, card and a sample grid."""
    from brushwork.train.init import TRAINING_RECORD

    out, work = Path(s.out), s.work_dir
    save_model(base.pipe, work / "unet" / "checkpoint", out, s.text_encoder, text_weights, rows)
    trigger, n_instance = s.prompt or captions[0][0], len(captions)
    run = {"command": shlex.join(["brushwork", *sys.argv[1:]]) if Path(sys.argv[0]).name == "brushwork"
           else "train_dreambooth()", "init": s.model, "method": "dreambooth", "instance_prompt": s.prompt,
           "class_prompt": s.class_prompt, "class_prompts": len(s.class_prompts), "instance_images": n_instance,
           "class_images": n_class, "prior_weight": s.prior_weight, "prior_target": s.prior_target,
           "text_encoder": s.text_encoder,
           "train_words": s.words, "word_lr": s.word_lr if s.words else None, "lr": s.lr, "batch": s.batch,
           "data_seed": s.seed,
           "step_offset": res["step_offset"], "unet_steps": res["step"], "minutes": round(minutes, 2),
           "complete": True}
    record = {**base.record, "dreambooth_of": {"model": base.name, "sha256": base.sha256},
              "unet_steps_total": res["step_offset"] + res["step"], "chain": [*base.record.get("chain", []), run]}
    (out / TRAINING_RECORD).write_text(json.dumps(record, indent=1))
    card = write_card(out / "README.md", f"DreamBooth of {base.name}: {trigger}", base, {
        "Instance prompt": f"`{trigger}`", "Class prompt (prior preservation)": (
            f"`{s.class_prompt}`" if not s.class_prompts else f"{len(s.class_prompts)} prompts, e.g. "
            f"`{s.class_prompts[0]}`") + f", {n_class} images by the base model, weight {s.prior_weight:g}" + (
            ", targets: the base model's own predictions" if s.prior_target == "base" else ""),
        "Steps": f"{res['step']} at batch {s.batch}, lr {s.lr:g} " + (
            "(UNet and text encoder)" if s.text_encoder else
            f"(UNet, and the token rows of {', '.join(s.words)} at lr {s.word_lr:g})" if s.words else
            "(UNet; text encoder frozen)"),
        "Minutes": f"{minutes:.1f}", "Training images": f"{n_instance} at {base.native_size}×{base.native_size} px",
    }, front={"tags": ["dreambooth", "brushwork", "text-to-image"], "library_name": "diffusers",
              "instance_prompt": trigger,
              "brushwork": {"native_size": base.native_size, "max_size": base.max_size}})
    samples = sample_grid(base.pipe, [trigger] * 4, work / "samples.png", base.native_size,
                          training=pixels, seed=s.seed)
    return {"out": str(out), "card": str(card), "samples": str(samples), "pipe": base.pipe}
