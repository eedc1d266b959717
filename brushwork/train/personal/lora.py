"""``brushwork train lora``: LoRA on the UNet's attention projections (with ``--layers all`` also its ResNet
convolutions, feed-forward layers and transformer projections: kohya's LoCon; and with ``--text-encoder`` the text
encoder's attention), through peft, saved as a kohya-style ``.safetensors`` file with a model card beside it.

The file's keys are kohya's (``lora_unet_<module path, dots as _>.lora_down.weight`` / ``.lora_up.weight`` /
``.alpha``; ``lora_te_text_model_…`` for the text encoder), made by diffusers' own converters from peft's state
dict. Its header metadata says what it is (``ss_*`` as kohya writes them, ``modelspec.*``) and where it came from
(``brushwork.*``: the base model's sha256, steps, minutes). Loaded with diffusers' ``load_lora_weights`` onto the
base model it gives the outputs of the trained model (``tests/train/test_personalize_lora.py``).
"""

from __future__ import annotations

import json
import shutil
import time
from datetime import date
from pathlib import Path

import numpy as np
import torch

from brushwork.train.personal.base import (BaseTargets, Objective, check_run, fit, load_base, make_class_images,
                                           read_class_images, sample_grid, write_card)
from brushwork.train.personal import DEFAULTS
from brushwork.train.personal.inputs import Settings, check_out, check_settings, read_folder
from brushwork.train.personal.words import TrainedWords, check_words

UNET_TARGETS = ["to_q", "to_k", "to_v", "to_out.0"]
# --layers all: LoCon, kohya's name for LoRA on the convolutions too (the ResNets hold most of a UNet's weights)
UNET_ALL_TARGETS = UNET_TARGETS + ["proj_in", "proj_out", "ff.net.0.proj", "ff.net.2", "conv1", "conv2"]
# --layers cross: only the cross-attention keys and values, the layers that read the prompt (Custom Diffusion's
# choice for concepts meant to be combined): the picture's layout machinery stays the base model's
UNET_CROSS_TARGETS = r".*attn2\.to_[kv]"
LAYERS = {"attention": UNET_TARGETS, "all": UNET_ALL_TARGETS, "cross": UNET_CROSS_TARGETS}
TRAINED = {"attention": "UNet attention (to_q, to_k, to_v, to_out.0)",
           "all": "UNet attention, feed-forward, transformer projections and ResNet convolutions (LoCon)",
           "cross": "UNet cross-attention keys and values (attn2.to_k, attn2.to_v)"}
TEXT_TARGETS = ["q_proj", "k_proj", "v_proj", "out_proj"]
PRIOR_DRAWS = 4  # --prior-target base: noised copies of each class image (and with --flip its mirror) kept
ARCHITECTURES = {"brushwork-shapes": "brushwork-shapes", "sd_v1": "stable-diffusion-v1", "sd_v2": "stable-diffusion-v2"}


def train_lora(s: Settings, *, start: float | None = None) -> dict:
    """Train (or continue) a LoRA as ``s`` says. Returns {"done", "step", "minutes", "work", and when done "out",
    "card", "samples", "pipe" (the base pipeline with the trained adapters active; with ``--train-word`` its
    tokenizer also has each word's private token ``<WORD>``, holding the trained vectors)}."""
    from peft import LoraConfig

    start = time.monotonic() if start is None else start
    check_settings(s)
    check_out(s)
    inputs = read_folder(s.images, s.prompt)
    check_words(s.words, inputs.captions, inputs.files)
    base = load_base(s.model)
    work, alpha = s.work_dir, float(s.alpha or s.rank)
    fingerprint = {"method": "lora", "base_sha256": base.sha256, "inputs_sha256": inputs.sha256, "rank": s.rank,
                   "alpha": alpha, "text_encoder": s.text_encoder, "batch": s.batch, "seed": s.seed}
    # (each absent unless used, so that work folders of earlier runs still continue)
    if s.words:
        fingerprint |= {"words": s.words, "init_word": s.init_word}
    if s.layers != "attention":
        fingerprint["layers"] = s.layers
    if not s.flip:  # (runs before --flip existed trained on mirror images too)
        fingerprint["flip"] = False
    class_prompts = s.class_prompt_list
    n_class = s.class_images if class_prompts and s.prior_weight > 0 else 0
    if n_class:
        fingerprint |= {"class_prompts": class_prompts, "class_images": n_class, "prior_weight": s.prior_weight}
        if s.prior_target != "noise":
            fingerprint["prior_target"] = s.prior_target
    check_run(work, fingerprint)
    pipe, size = base.pipe, base.native_size
    pixels = inputs.pixels(size)
    captions, weights, prior = inputs.captions, None, None
    if n_class:  # prior preservation: the base model's own images of the class prompts, made before any adapter
        make_class_images(pipe, work / "class", class_prompts, n_class, size, s.seed, s.progress)
        class_pixels = read_class_images(work / "class", n_class)
        class_captions = [[class_prompts[i % len(class_prompts)]] for i in range(n_class)]
        if s.prior_target == "base":  # the frozen model's predictions on them, as targets of extra rows a step
            prior = BaseTargets(Objective(base, class_pixels, class_captions, s.seed + 1, flip=s.flip), pipe.unet,
                                lambda texts: tokenize(pipe.tokenizer, texts), pipe.text_encoder, PRIOR_DRAWS, s.seed)
        else:  # DreamBooth's: class rows in the batch, their own noise the target
            pixels = np.concatenate([pixels, class_pixels])
            captions = captions + class_captions
            n = len(inputs.captions)  # instance images weigh 1/n each, class images prior_weight/K
            weights = [1.0 / n] * n + [s.prior_weight / n_class] * n_class
    torch.manual_seed(s.seed)  # the adapters' initial weights (a resumed run loads its checkpoint over them)
    pipe.unet.add_adapter(LoraConfig(r=s.rank, lora_alpha=alpha, init_lora_weights="gaussian",
                                     target_modules=LAYERS[s.layers]))
    params = {f"unet.{n}": p for n, p in pipe.unet.named_parameters() if p.requires_grad}
    if s.text_encoder:
        pipe.text_encoder.add_adapter(LoraConfig(r=s.rank, lora_alpha=alpha, init_lora_weights="gaussian",
                                                 target_modules=TEXT_TARGETS))
        params |= {f"text_encoder.{n}": p for n, p in pipe.text_encoder.named_parameters() if p.requires_grad}
    words = TrainedWords(pipe.tokenizer, pipe.text_encoder, s.words, s.init_word) if s.words else None
    if words is not None:
        params |= words.params()
    obj = Objective(base, pixels, captions, s.seed, weights, flip=s.flip)
    ids = tokenize(pipe.tokenizer, words.rewrite(obj.texts) if words else obj.texts)
    frozen_states = None
    if not s.text_encoder and words is None:
        with torch.no_grad():
            frozen_states = pipe.text_encoder(ids).last_hidden_state

    def loss_at(step: int) -> torch.Tensor:
        rows = obj.rows(step, s.batch)
        caps = obj.caption_index(rows, step)
        cond = frozen_states[caps] if frozen_states is not None else encode_unique(pipe.text_encoder, ids[caps])
        if prior is None:
            return obj.loss(pipe.unet, rows, cond, step)
        noisy, t, target = obj.noised(rows, step)  # and batch/2 prior rows, in the same UNet call
        k = prior.pick(step, max(1, s.batch // 2))
        prior_cond = encode_unique(pipe.text_encoder, prior.ids[k]) if s.text_encoder else prior.cond[k]
        t = torch.cat([t, prior.t[k]])
        pred = pipe.unet(torch.cat([noisy, prior.noisy[k]]), t, torch.cat([cond, prior_cond])).sample
        per_row = obj.row_losses(pred, torch.cat([target, prior.target[k]]), t)
        return per_row[:len(rows)].mean() + s.prior_weight * per_row[len(rows):].mean()

    trigger = s.prompt or inputs.captions[0][0]
    shown = words.rewrite([trigger])[0] if words else trigger
    instance_pixels = pixels[:len(inputs.captions)]
    try:
        res = fit(work, params, loss_at, steps=s.steps, lr=s.lr, warmup=DEFAULTS["lora"]["warmup"], start=start,
                  max_minutes=s.max_minutes, desc="lora", title=f"LoRA loss (rank {s.rank}, min-SNR-5)",
                  on_save=samples_every(s, pipe, shown, instance_pixels, size, work), ckpt_every=s.sample_every or 100,
                  progress=s.progress)
    finally:
        if words is not None:
            words.settle()
    res["work"] = str(work)
    if not res["done"]:
        return res
    out = Path(s.out)
    tensors = kohya_state_dict(pipe.unet, pipe.text_encoder if s.text_encoder else None, alpha)
    if words is not None:
        tensors |= words.bundle()
    minutes = res["minutes"]
    meta = {
        "ss_network_module": "networks.lora", "ss_network_dim": str(s.rank), "ss_network_alpha": f"{alpha:g}",
        "ss_base_model_version": base.family, "ss_v2": str(base.kind == "sd2"),
        "ss_v_parameterization": str(base.v_pred), "ss_resolution": f"({size}, {size})",
        "ss_num_train_images": str(len(inputs.captions)), "ss_num_reg_images": str(n_class),
        "ss_max_train_steps": str(s.steps), "ss_learning_rate": f"{s.lr:g}", "ss_flip_aug": str(s.flip),
        "ss_seed": str(s.seed), "ss_text_encoder_lr": f"{s.lr:g}" if s.text_encoder else "0",
        "modelspec.sai_model_spec": "1.0.0", "modelspec.architecture": f"{ARCHITECTURES[base.family]}/lora",
        "modelspec.title": out.stem, "modelspec.license": base.license, "modelspec.trigger_phrase": trigger,
        "modelspec.resolution": f"{size}x{size}", "modelspec.date": date.today().isoformat(),
        "brushwork.base_model": base.name, "brushwork.base_sha256": base.sha256, "brushwork.steps": str(res["step"]),
        "brushwork.minutes": f"{minutes:.2f}", "brushwork.images": str(len(inputs.captions)),
        "brushwork.text_encoder": str(s.text_encoder).lower(), "brushwork.layers": s.layers,
    }
    if words is not None:
        meta["brushwork.words"] = ",".join(s.words)
    if s.layers == "all":  # how kohya's LoCon files say they hold convolution adapters
        meta["ss_network_args"] = json.dumps({"conv_dim": str(s.rank), "conv_alpha": f"{alpha:g}"})
    save_atomic(tensors, out, meta)
    card = write_card(out.with_suffix(".md"), f"LoRA: {out.stem}", base, {
        "Trigger words": f"`{trigger}`", "Rank / alpha": f"{s.rank} / {alpha:g}",
        "Trained": TRAINED[s.layers] + (
            " and text-encoder attention (q/k/v/out_proj)" if s.text_encoder else ""),
        "Steps": f"{res['step']} at batch {s.batch}, lr {s.lr:g}", "Minutes": f"{minutes:.1f}",
        "Training images": f"{len(inputs.captions)} at {size}×{size} px",
        **({"Prior preservation": f"{n_class} images by the base model of " + (
            f"`{class_prompts[0]}`" if len(class_prompts) == 1 else f"{len(class_prompts)} prompts, e.g. "
            f"`{class_prompts[0]}`") + f", weight {s.prior_weight:g}" + (
            ", targets: the base model's own predictions" if prior is not None else "")} if n_class else {}),
        **({"Trained words": ", ".join(f"`{w}`" for w in s.words) + " (their token embeddings, bundled in the file "
            "as `bundle_emb.WORD.string_to_param.*`; applied where a prompt says the word)"} if words else {}),
        "Format": "kohya-style LoRA (.safetensors); load with diffusers `load_lora_weights` or A1111 `<lora:name:1>`",
    }, front={"tags": ["lora", "brushwork"], "instance_prompt": trigger})
    return {**res, "out": str(out), "card": str(card), "samples": str(work / "samples.png"), "pipe": pipe}


def tokenize(tokenizer, texts: list[str]) -> torch.Tensor:
    """Token ids as the pipelines make them: padded to the model's length, truncated."""
    return tokenizer(texts, padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
                     return_tensors="pt").input_ids


def encode_unique(text_encoder, ids: torch.Tensor) -> torch.Tensor:
    """``text_encoder(ids).last_hidden_state``, each distinct row encoded once (a batch repeats a few captions)."""
    uniq, inverse = torch.unique(ids, dim=0, return_inverse=True)
    return text_encoder(uniq).last_hidden_state[inverse]


def kohya_state_dict(unet, text_encoder, alpha: float) -> dict[str, torch.Tensor]:
    """The adapters as kohya keys (fp32), with ``alpha`` as each module's ``.alpha``."""
    from diffusers.utils import convert_state_dict_to_kohya
    from peft import get_peft_model_state_dict

    sd = {f"unet.{k}": v for k, v in get_peft_model_state_dict(unet, save_embedding_layers=False).items()}
    if text_encoder is not None:
        sd |= {f"text_encoder.{k}": v
               for k, v in get_peft_model_state_dict(text_encoder, save_embedding_layers=False).items()}
    out = {}
    for key, v in convert_state_dict_to_kohya(sd).items():
        if key.startswith("lora_te1_"):  # one text encoder: kohya's SD1/SD2 prefix, with CLIP's text_model level
            rest = key[len("lora_te1_"):]  # (transformers 5's CLIPTextModel has no text_model submodule)
            key = "lora_te_" + (rest if rest.startswith("text_model_") else "text_model_" + rest)
        out[key] = torch.tensor(float(alpha)) if key.endswith(".alpha") else v.detach().float().contiguous()
    return out


def save_atomic(tensors: dict, out: Path, metadata: dict) -> None:
    from safetensors.torch import save_file

    tmp = out.with_name(out.name + ".tmp")
    save_file(tensors, str(tmp), metadata=metadata)
    tmp.replace(out)


def samples_every(s: Settings, pipe, prompt: str, pixels, size: int, work: Path):
    """``fit``'s ``on_save``: a sample grid at ``work/samples/step_NNNNNN.png``, copied to ``work/samples.png``."""
    def on_save(step: int) -> None:
        if step == s.steps or (s.sample_every and step % s.sample_every == 0):
            path = sample_grid(pipe, [prompt] * 4, work / "samples" / f"step_{step:06d}.png", size, training=pixels,
                               seed=s.seed)
            shutil.copyfile(path, work / "samples.png")

    return on_save
