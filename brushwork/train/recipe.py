"""The default model's recipe, as one resumable command: ``brushwork train recipe --work DIR [--init MODEL]``.

Stages (each skipped when its output exists, each resumable from its checkpoint):

1. ``dataset``   – shapes-world imagefolder, 64 px, the default holdout applied by scene;
2. ``tokenizer`` – a word-level BPE vocabulary for the captions (a ``CLIPTokenizer``);
3. ``vae``       – ``AutoencoderKL``, factor 4 (64 px ↔ 8×16×16), trained on 32 px crops with
                   objects weighted 9× (see ``train.vae``);
4. ``clip``      – a small CLIP (the text encoder and a ViT, contrastive loss; ``train.clip``);
5. ``unet``      – UNet on cached latents, conditioned on the CLIP text encoder, frozen (v-prediction loss
                   weighted by min-SNR-5, lr warm-up then cosine decay, EMA), checkpointing as it goes;
6. ``export``    – a diffusers folder (``model_index.json``, fp16 safetensors) in ``DIR/model``.

With ``init`` (``--init MODEL``: the bundled model, a registered name or a diffusers folder) stages 2–4 are taken
from that model and the UNet continues from its weights, with a fresh optimizer, ``continue_warmup`` warm-up
steps and a cosine over ``unet_steps``; its batches start where the model's training stopped. The exported
``brushwork_training.json`` carries the whole chain (each run's command, init model, data seed, steps, minutes).

``--max-minutes`` stops cleanly (checkpoint saved) so that each run fits a time budget; run the
same command again to continue. Every run exports the current EMA weights, so a partial model
can be evaluated; ``DIR/model/brushwork_training.json`` says how far training got, and ``DIR/times.json``
the wall-clock minutes of each stage and the UNet's seconds per step.
"""

from __future__ import annotations

import json
import shlex
import sys
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from types import SimpleNamespace

from brushwork.errors import InvalidParameter

# 3: captions name colours and backgrounds less often (world.captions.P_NAME_*), so short prompts are seen
# (4, tried on 2026-12-01 and reverted: pooled-prompt AdaGN + bf16 autocast + 4,000 steps scored 0.110 overall)
# 5: the UNet trains on the plain v-prediction loss, not min-SNR-5: in time-matched proxy runs (README) min-SNR's
#    near-zero weight on high noise levels left objects out of single-object prompts; stage 1 is unchanged.
#    Run to 5,200 steps on 2026-12-02 it scored 0.013 overall: objects everywhere, but shapeless blobs
# 6: back to v3's min-SNR-5 loss (v3 scored 0.396 at step 5,415), 5,200 steps. It scored 0.264: too many empty images
# 7: timesteps drawn in proportion to min-SNR-5 weights floored at SNR 0.3 (unweighted loss): 38 % of the draws at
#    SNR < 0.2, where presence is decided (v6: 7 % of the weight), 48 % in 0.2-5 (v6: 37 % of the draws); 6,000 steps.
#    At step 3,751 it scored 0.008 on the validation set (wrong shapes, as v5): stopped
# 8: v6 again (uniform draws, min-SNR-5, 5,200 steps), the best finished recipe on this stage 1
# 9: v8 cut to 2,000 UNet steps, so that the whole recipe and its evaluation finish inside one 180-minute session:
#    a work folder cannot be counted on to outlive its session here, and on the 2026-12-02 machine a step took
#    2.8 s (v6's: 1.8 s).
#    Run to the end, it passed 0 of the 20 smoke prompts: shapeless blobs, prompts ignored; not bundled
# 10: v8 again (5,200 steps): fewer steps do not make a usable model, so the recipe needs more than one CPU session
# 11: a CLIP stage (text encoder + ViT, contrastive, on the dataset); the UNet is conditioned on its text encoder,
#     frozen, as SD is on OpenAI's CLIP: a UNet step no longer runs the text encoder, and the conditioning tells
#     prompts apart from the first step. Sized to run start to end in one session; later runs continue with --init
RECIPE_VERSION = 11


@dataclass
class Recipe:
    images: int = 50_000
    size: int = 64
    seed: int = 0
    vae_steps: int = 2500
    vae_latent_channels: int = 8
    vae_detail_weight: float = 8.0
    clip_steps: int = 1200
    clip_batch: int = 128
    unet_steps: int = 2500  # v10: 5,200 with the text encoder trained jointly; v9: 2,000 (a blob-drawing model)
    unet_batch: int = 32  # v10 and before: 64 (half the updates in the same time)
    unet_lr: float = 1e-3
    unet_final_lr_frac: float = 0.1
    unet_snr_gamma: float | None = 5.0  # None: plain v-loss (v5; it scored 0.013 overall)
    unet_snr_floor: float = 0.0  # v7: 0.3
    unet_timesteps: str = "uniform"  # v7: "weighted" (timesteps drawn in proportion to the min-SNR weights)
    unet_train_text_encoder: bool = False  # v10 and before: True (trained jointly, from random weights)
    unet_text_encoder_lr: float | None = None  # when the text encoder trains: its peak lr (None: unet_lr)
    continue_warmup: int = 100  # --init: warm-up steps of the fresh optimizer


def run_recipe(work: str | Path, recipe: Recipe = Recipe(), *, init: str | None = None,
               max_minutes: float | None = None, progress: bool = True, log=print, command: str | None = None,
               device: str = "cpu") -> dict:
    import torch

    from brushwork.train.clip import train_clip
    from brushwork.train.data import load_imagefolder
    from brushwork.train.diffusion import train_unet
    from brushwork.train.init import load_start
    from brushwork.train.tokenizer import build_tokenizer, corpus_words
    from brushwork.train.vae import DEFAULT_VAE_CONFIG, train_vae
    from brushwork.world.dataset import make_dataset, recaption
    from brushwork.world.holdout import load_holdout

    torch.set_num_threads(max(1, torch.get_num_threads()))
    work = Path(work)
    work.mkdir(parents=True, exist_ok=True)
    stamp = work / "recipe.json"
    previous = json.loads(stamp.read_text()) if stamp.is_file() else None
    if previous is not None and previous.get("init") != init:
        raise InvalidParameter(f"{work} holds a run with --init {previous.get('init')}; use a new --work folder "
                               f"for --init {init}")
    start = init and load_start(init)  # loaded before any stage runs, so a bad --init fails at once
    t0 = time.monotonic()
    times = Times(work / "times.json")

    def left() -> float | None:
        return None if max_minutes is None else max_minutes - (time.monotonic() - t0) / 60

    data = work / "dataset"
    if not (data / "metadata.jsonl").is_file():
        log(f"[1/6] dataset: {recipe.images} images at {recipe.size}px")
        with times.stage("dataset"):
            make_dataset(data, recipe.images, seed=recipe.seed, size=recipe.size, holdout=load_holdout())
    elif previous is not None and previous.get("version", 0) < 3:
        log("[1/6] dataset: captions rewritten with the version-3 phrasing (the images stay)")
        recaption(data, seed=recipe.seed, size=recipe.size, holdout=load_holdout())
    stamp.write_text(json.dumps({"version": RECIPE_VERSION, "init": init, **asdict(recipe)}, indent=1))
    tok_dir, vae_dir, clip_dir = work / "tokenizer", work / "vae" / "vae", work / "clip"
    if start is None:
        if not (tok_dir / "vocab.json").is_file():
            log("[2/6] tokenizer")
            with times.stage("tokenizer"):
                build_tokenizer(corpus_words(load_imagefolder(data).texts) | _grammar_words(), tok_dir)
        if not (vae_dir / "config.json").is_file():
            log(f"[3/6] vae: {recipe.vae_steps} steps")
            with times.stage("vae"):
                out = train_vae(data, work / "vae", steps=recipe.vae_steps, seed=recipe.seed, max_minutes=left(),
                                detail_weight=recipe.vae_detail_weight,
                                config={**DEFAULT_VAE_CONFIG, "latent_channels": recipe.vae_latent_channels},
                                progress=progress)
            if out != vae_dir:
                return {"done": False, "stage": "vae"}
        if not recipe.unet_train_text_encoder and not (clip_dir / "text_encoder" / "config.json").is_file():
            log(f"[4/6] clip: {recipe.clip_steps} steps at batch {recipe.clip_batch}")
            with times.stage("clip"):
                res = train_clip(data, tok_dir, clip_dir, steps=recipe.clip_steps, batch=recipe.clip_batch,
                                 seed=recipe.seed, max_minutes=left(), progress=progress, log=log)
            if not res["done"]:
                return {"done": False, "stage": "clip"}
            times.note(clip_top1=res["top1"])
    log(f"[5/6] unet: {recipe.unet_steps} steps" + (f", continuing {init}" if init else ""))
    unet_kw = dict(steps=recipe.unet_steps, batch=recipe.unet_batch, lr=recipe.unet_lr,
                   final_lr_frac=recipe.unet_final_lr_frac, snr_gamma=recipe.unet_snr_gamma,
                   snr_floor=recipe.unet_snr_floor, timesteps=recipe.unet_timesteps, seed=recipe.seed,
                   train_text_encoder=recipe.unet_train_text_encoder, text_encoder_lr=recipe.unet_text_encoder_lr,
                   max_minutes=left(), progress=progress, device=device,
                   ckpt_every=250 if device == "cpu" else 2000)  # an accelerator's step is ~50× shorter
    with times.stage("unet") as stage:
        if start is None:
            te_dir = None if recipe.unet_train_text_encoder else clip_dir / "text_encoder"
            res = train_unet(data, vae_dir, tok_dir, work / "unet", text_encoder_dir=te_dir, **unet_kw)
        else:
            res = train_unet(data, None, None, work / "unet", init=start, warmup=recipe.continue_warmup, **unet_kw)
        stage.steps = res["step"] - res["resumed_from"]
    log(f"[6/6] export (unet: {times.s_per_step():.2f} s a step)")
    export(work, res, recipe, start, init, command or _command_line(), device)
    return {"done": res["done"], "stage": "unet" if not res["done"] else "done", "step": res["step"]}


def _command_line() -> str:
    argv0 = Path(sys.argv[0])
    cli = argv0.name == "brushwork" or (argv0.name == "__main__.py" and argv0.parent.name == "brushwork")  # python -m
    return shlex.join(["brushwork", *sys.argv[1:]]) if cli else "run_recipe()"


class Times:
    """Wall-clock minutes per stage, summed over the runs of one work folder, and the UNet's seconds per step."""

    def __init__(self, path: Path):
        self.path = path
        self.data = json.loads(path.read_text()) if path.is_file() else {"minutes": {}, "unet_steps_timed": 0}

    @contextmanager
    def stage(self, name: str):
        """Time the ``with`` block as stage ``name``; for "unet", set ``.steps`` on what it yields to the steps run."""
        counter, t = SimpleNamespace(steps=0), time.monotonic()
        try:
            yield counter
        finally:
            minutes = (time.monotonic() - t) / 60
            self.data["minutes"][name] = round(self.data["minutes"].get(name, 0.0) + minutes, 2)
            self.data["unet_steps_timed"] += counter.steps
            self.save()

    def note(self, **values) -> None:
        self.data.update(values)
        self.save()

    def s_per_step(self) -> float:
        """UNet seconds per step over this folder's runs (latent and text caching included)."""
        return 60 * self.data["minutes"].get("unet", 0.0) / max(1, self.data["unet_steps_timed"])

    def save(self) -> None:
        self.path.write_text(json.dumps(self.data, indent=1))


def _grammar_words() -> set[str]:
    from brushwork.train.tokenizer import corpus_words
    from brushwork.world import vocab
    from brushwork.world.grammar import LEADS, REGION_PHRASES, RELATION_PHRASES

    texts = [*LEADS, *REGION_PHRASES, *RELATION_PHRASES, *vocab.COUNT_WORDS, *vocab.SIZE_WORDS, *vocab.PALETTE,
             *vocab.SHAPES, *vocab.PLURALS.values(), "and , . background against with on medium"]
    return corpus_words(texts)


def export(work: Path, res: dict, recipe: Recipe, start, init: str | None, command: str, device: str = "cpu") -> Path:
    """Assemble the EMA weights into a diffusers folder at ``work/model`` (fp16 safetensors), with the training
    record: the init model's chain (if any) plus this run."""
    from brushwork.train.diffusion import DEFAULT_SCHEDULER_CONFIG
    from brushwork.train.init import TRAINING_RECORD

    ckpt = work / "unet" / "checkpoint"
    if start is None:
        out = save_ema_pipeline(work / "tokenizer", work / "vae" / "vae", ckpt, work / "model",
                                dict(DEFAULT_SCHEDULER_CONFIG))
        chain = []
    else:
        out = save_ema_components(start, ckpt, work / "model")
        chain = list(start.record.get("chain", []))
    times = json.loads((work / "times.json").read_text())
    run = {"command": command, "init": init, "recipe_version": RECIPE_VERSION, "data_seed": recipe.seed,
           "images": recipe.images, "step_offset": res["step_offset"], "unet_steps": res["step"],
           "unet_batch": recipe.unet_batch, "device": device,
           "complete": res["done"], "minutes": times["minutes"],
           "total_minutes": round(sum(times["minutes"].values()), 1),
           "unet_s_per_step": round(60 * times["minutes"].get("unet", 0) / max(1, times["unet_steps_timed"]), 3)}
    if "clip_top1" in times:
        run["clip_top1"] = times["clip_top1"]
    chain.append(run)
    (out / TRAINING_RECORD).write_text(json.dumps(
        {"recipe_version": RECIPE_VERSION, "recipe": asdict(recipe), "unet_steps_done": res["step"],
         "complete": res["done"], "unet_steps_total": res["step_offset"] + res["step"],
         "total_minutes": round(sum(r["total_minutes"] for r in chain), 1), "chain": chain}, indent=1))
    return out


def save_ema_components(start, checkpoint: Path, out: Path) -> Path:
    """An ``--init`` run's checkpoint (EMA UNet and text encoder) into the init model's components, saved as a
    diffusers folder at ``out`` (fp16 safetensors)."""
    import torch
    from diffusers import DDPMScheduler, StableDiffusionPipeline
    from safetensors.torch import load_file

    start.unet.load_state_dict(load_file(checkpoint / "unet.ema.safetensors"))
    start.text_encoder.load_state_dict(load_file(checkpoint / "text_encoder.ema.safetensors"))
    pipe = StableDiffusionPipeline(vae=start.vae, text_encoder=start.text_encoder, tokenizer=start.tokenizer,
                                   unet=start.unet, scheduler=DDPMScheduler(**start.scheduler_config),
                                   safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    pipe.to(torch.float16).save_pretrained(out, safe_serialization=True)
    tidy_export(out)
    return out


def tidy_export(out: Path) -> None:
    """Drop what ``save_pretrained`` carries over from where the components were loaded: the local path in each
    ``config.json`` (``_name_or_path``) and the fixed padding a fast tokenizer was last used with."""
    for config in Path(out).glob("*/config.json"):
        data = json.loads(config.read_text())
        if data.pop("_name_or_path", None) is not None:
            config.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    fast = Path(out) / "tokenizer" / "tokenizer.json"
    if fast.is_file():
        data = json.loads(fast.read_text())
        if data.get("padding") is not None:
            data["padding"] = None
            fast.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def save_ema_pipeline(tokenizer_dir: Path, vae_dir: Path, checkpoint: Path, out: Path, scheduler_config: dict, *,
                      unet_config: dict | None = None, text_config: dict | None = None) -> Path:
    """A ``train_unet`` checkpoint's EMA UNet and text encoder, with the tokenizer and VAE, saved as a diffusers
    ``StableDiffusionPipeline`` folder at ``out`` (fp16 safetensors). The configs default to the recipe's."""
    import torch
    from diffusers import AutoencoderKL, DDPMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from safetensors.torch import load_file
    from transformers import CLIPTokenizer

    from brushwork.train.diffusion import make_text_encoder, unet_config_for

    tokenizer = CLIPTokenizer.from_pretrained(str(tokenizer_dir))
    vae = AutoencoderKL.from_pretrained(str(vae_dir))
    unet = UNet2DConditionModel(**unet_config_for(vae, unet_config))
    te = make_text_encoder(tokenizer, text_config)
    unet.load_state_dict(load_file(checkpoint / "unet.ema.safetensors"))
    te.load_state_dict(load_file(checkpoint / "text_encoder.ema.safetensors"))
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=te, tokenizer=tokenizer, unet=unet,
                                   scheduler=DDPMScheduler(**scheduler_config), safety_checker=None,
                                   feature_extractor=None, requires_safety_checker=False)
    pipe.to(torch.float16).save_pretrained(out, safe_serialization=True)
    return out
