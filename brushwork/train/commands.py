"""CLI: ``brushwork train recipe|vae|unet|lora|embedding|dreambooth`` (resumable: run the same command again to
continue)."""

from __future__ import annotations

import json
import sys


def register(sub) -> None:
    p = sub.add_parser("train", help="train SD-architecture components from an imagefolder dataset")
    tsub = p.add_subparsers(dest="train_command", metavar="WHAT")

    r = tsub.add_parser("recipe", help="the default model's full recipe (dataset → tokenizer → VAE → UNet → export)")
    r.add_argument("--work", required=True, help="working folder (checkpoints; the model lands in WORK/model)")
    r.add_argument("--max-minutes", type=float, default=120, help="stop cleanly after this long (default 120)")
    r.add_argument("--images", type=int, default=None)
    r.add_argument("--vae-steps", type=int, default=None)
    r.add_argument("--unet-steps", type=int, default=None)
    r.add_argument("--seed", type=int, default=None)
    r.add_argument("--init", default=None, metavar="MODEL",
                   help="continue from this model (a registered name, a diffusers folder, or 'default' for the "
                        "bundled one): its VAE, tokenizer and text encoder are kept, its UNet trains on")
    r.add_argument("--train-text-encoder", action="store_true",
                   help="train the text encoder with the UNet (with --init: from the model's own)")
    r.add_argument("--text-encoder-lr", type=float, default=None,
                   help="the text encoder's peak learning rate with --train-text-encoder (default: the UNet's)")
    r.add_argument("--unet-batch", type=int, default=None, help="UNet batch size (default: the recipe's, 32)")
    r.add_argument("--unet-lr", type=float, default=None, help="UNet peak learning rate (default: the recipe's, 1e-3)")
    r.add_argument("--device", default="cpu",
                   help="where the UNet trains: cpu (default, the measured recipe) or cuda; the other stages use the CPU")
    r.set_defaults(handler=_recipe)

    v = tsub.add_parser("vae", help="train a small AutoencoderKL")
    v.add_argument("--data", required=True, help="imagefolder (metadata.jsonl with file_name, text[, weight])")
    v.add_argument("--out", required=True)
    v.add_argument("--steps", type=int, default=1500)
    v.add_argument("--batch", type=int, default=32)
    v.add_argument("--crop", type=int, default=32)
    v.add_argument("--detail-weight", type=float, default=0.0,
                   help="extra loss weight on objects and their rim, over a flat background (default 0)")
    v.add_argument("--seed", type=int, default=0)
    v.add_argument("--max-minutes", type=float, default=None)
    v.set_defaults(handler=_vae)

    u = tsub.add_parser("unet", help="train a UNet (and jointly a CLIP text encoder) on a trained VAE's latents")
    u.add_argument("--data", required=True)
    u.add_argument("--vae", help="folder of the trained VAE (diffusers layout); not with --init")
    u.add_argument("--tokenizer", help="folder of a CLIPTokenizer; not with --init")
    u.add_argument("--text-encoder", default=None,
                   help="folder of a pretrained CLIPTextModel (e.g. a CLIP stage's WORK/clip/text_encoder); "
                        "default: a new one; not with --init")
    u.add_argument("--init", default=None, metavar="MODEL",
                   help="fine-tune this model (registered name, diffusers folder or SD1.x/2.x file): its VAE, "
                        "tokenizer, text encoder, UNet and scheduler; --data is the only other input")
    u.add_argument("--warmup", type=int, default=None, help="lr warm-up steps (default 200; 100 with --init)")
    u.add_argument("--out", required=True)
    u.add_argument("--steps", type=int, default=3000)
    u.add_argument("--batch", type=int, default=64)
    u.add_argument("--lr", type=float, default=3e-4)
    u.add_argument("--final-lr-frac", type=float, default=1.0,
                   help="cosine-decay the lr to this fraction of --lr by the last step (default 1: constant)")
    u.add_argument("--seed", type=int, default=0)
    u.add_argument("--freeze-text-encoder", action="store_true")
    u.add_argument("--snr-gamma", type=float, default=5.0,
                   help="min-SNR-γ loss weighting (default 5); 0 trains on the plain v-prediction loss")
    u.add_argument("--snr-floor", type=float, default=0.0,
                   help="raise min-SNR's lower clamp to this SNR (default 0: plain min-SNR); must be <= --snr-gamma")
    u.add_argument("--timesteps", default="uniform",
                   help="uniform: draw timesteps uniformly and weight the loss by min-SNR; weighted: draw them in "
                        "proportion to the min-SNR weights, loss unweighted (the same objective, fewer wasted draws)")
    u.add_argument("--bf16", action="store_true",
                   help="bf16 autocast (faster on CPUs with AVX512-BF16 or AMX: benchmarks/train_step.py)")
    u.add_argument("--max-minutes", type=float, default=None)
    u.set_defaults(handler=_unet)
    _register_personal(tsub)
    p.set_defaults(handler=lambda a: p.print_help(sys.stderr) or 2)


def _register_personal(tsub) -> None:
    """``train lora|embedding|dreambooth``: teach a model a concept from 3–20 images (``train.personal``)."""
    from brushwork.train.personal import DEFAULTS

    helps = {"lora": "train a LoRA (kohya-style .safetensors + model card) on 3-20 images of a concept",
             "embedding": "textual inversion: a new token's vectors (A1111 .safetensors) trained on 3-20 images",
             "dreambooth": "fine-tune the UNet on 3-20 images with prior preservation (a diffusers folder)"}
    for method, text in helps.items():
        d = DEFAULTS[method]
        q = tsub.add_parser(method, help=text)
        q.add_argument("--images", required=True, help="folder of 3-20 images (png/jpg/webp), optional x.txt captions")
        q.add_argument("--prompt", default=None, help="instance prompt for images without a caption file"
                       + (" (default 'a TOKEN'; must contain --token)" if method == "embedding" else ""))
        q.add_argument("--out", required=True, help="output folder (diffusers)" if method == "dreambooth"
                       else "output file, .safetensors (a model card FILE.md is written beside it)")
        q.add_argument("--model", default="default", help="base model: registered name, folder or file (default: "
                                                          "the bundled model)")
        q.add_argument("--steps", type=int, default=d["steps"], help=f"training steps (default {d['steps']})")
        q.add_argument("--lr", type=float, default=d["lr"], help=f"learning rate (default {d['lr']:g})")
        q.add_argument("--batch", type=int, default=d["batch"], help=f"batch size (default {d['batch']})")
        q.add_argument("--seed", type=int, default=0)
        q.add_argument("--max-minutes", type=float, default=None,
                       help="stop cleanly (checkpoint saved) after this long")
        q.add_argument("--work", default=None, help="checkpoints, loss curve, samples (default: beside --out, "
                                                    "OUT.work)")
        if method == "lora":
            q.add_argument("--rank", type=int, default=8, help="LoRA rank (default 8)")
            q.add_argument("--alpha", type=float, default=None, help="LoRA alpha (default: the rank, scale 1)")
            q.add_argument("--layers", default="attention",
                           help="the UNet layers it trains: attention (default), or all (LoCon: also the ResNet "
                                "convolutions, feed-forward layers and transformer projections; more capacity, "
                                "larger file), or cross (only the cross-attention keys and values, which read "
                                "the prompt: for concepts meant to be combined)")
            q.add_argument("--text-encoder", action="store_true", help="also train LoRA on the text encoder")
            q.add_argument("--train-word", dest="words", action="append", default=[], metavar="WORD",
                           help="also train this caption word's token embedding, bundled in the LoRA file and used "
                                "wherever a prompt says the word (repeatable); for a word the model never learnt")
            q.add_argument("--init-word", default=None, help="start the --train-word vectors from this word's "
                                                             "embedding (default: each word's own)")
        if method == "embedding":
            q.add_argument("--token", default=None, help="the new token, e.g. '<diamond>' (not a word the model has)")
            q.add_argument("--vectors", type=int, default=2, help="vectors per token (default 2)")
            q.add_argument("--init-word", default=None, help="start the vectors from this word's embedding "
                                                             "(default: an average token's)")
        if method in ("lora", "dreambooth"):
            q.add_argument("--class-prompt", default=None, help="the concept's class, e.g. 'a square' for diamonds"
                           + ("" if method == "dreambooth" else "; prior preservation, as DreamBooth's (optional)"))
            q.add_argument("--class-prompts", default=None, metavar="FILE",
                           help="instead of --class-prompt: a text file of class prompts, one per line (class "
                                "image i shows line i mod n), a prior over many scenes and phrasings")
            q.add_argument("--class-images", type=int, default=32, help="class images generated by the base model "
                                                                        "(default 32)")
            q.add_argument("--prior-weight", type=float, default=1.0,
                           help="class rows drawn this many times as often as instance rows (default 1)")
            q.add_argument("--prior-target", default="noise",
                           help="what the class rows learn: noise (default; their own noise, as DreamBooth does) or "
                                "base (the base model's own prediction for them, an exact target, so fewer rows hold "
                                "more" + ("; half a batch of extra rows a step, one in four on the empty prompt, "
                                          "--prior-weight scaling their loss)" if method == "lora" else ")"))
        if method == "dreambooth":
            q.add_argument("--text-encoder", action="store_true",
                           help="train the text encoder too (for a word the base model never learnt)")
            q.add_argument("--train-word", dest="words", action="append", default=[], metavar="WORD",
                           help="train only this caption word's rows of the text encoder's token table (repeatable): "
                                "a word the base model never learnt gets a meaning and no other word moves")
            q.add_argument("--word-lr", type=float, default=d["word_lr"],
                           help=f"the --train-word rows' learning rate (default {d['word_lr']:g})")
        else:
            q.add_argument("--flip", action="store_true",
                           help="also train on each image's mirror image: for a subject that looks the same mirrored "
                                "(not for text, a logo or a crescent); a caption naming a side is never mirrored")
            q.add_argument("--sample-every", type=int, default=100,
                           help="a sample grid (and a checkpoint) every N steps, 0: at the end only (default 100)")
        q.set_defaults(handler=_personal, method=method)


def _check_positive(**values):
    from brushwork.errors import InvalidParameter

    for name, v in values.items():
        if v is not None and v <= 0:
            raise InvalidParameter(f"--{name.replace('_', '-')} must be positive (got {v})")


def _check_device(device: str) -> None:
    import re

    from brushwork.errors import InvalidParameter

    if not re.fullmatch(r"cpu|cuda(:\d+)?", device):
        raise InvalidParameter(f"--device must be cpu or cuda[:N] (got {device!r})")
    if device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise InvalidParameter(f"--device {device}: this torch build sees no CUDA device (torch {torch.__version__})")


def _recipe(args) -> int:
    from dataclasses import replace

    from brushwork.train.recipe import Recipe, run_recipe

    from brushwork.errors import InvalidParameter

    _check_positive(images=args.images, vae_steps=args.vae_steps, unet_steps=args.unet_steps, max_minutes=args.max_minutes,
                    text_encoder_lr=args.text_encoder_lr, unet_batch=args.unet_batch, unet_lr=args.unet_lr)
    _check_device(args.device)
    if args.text_encoder_lr is not None and not args.train_text_encoder:
        raise InvalidParameter("--text-encoder-lr needs --train-text-encoder")
    changes = {k: getattr(args, k) for k in ("images", "vae_steps", "unet_steps", "seed", "unet_batch", "unet_lr")
               if getattr(args, k) is not None}
    if args.train_text_encoder:
        changes.update(unet_train_text_encoder=True, unet_text_encoder_lr=args.text_encoder_lr)
    res = run_recipe(args.work, replace(Recipe(), **changes), init=args.init, max_minutes=args.max_minutes,
                     log=lambda m: print(m, file=sys.stderr), device=args.device)
    print(json.dumps(res))
    return 0


def _vae(args) -> int:
    from brushwork.errors import InvalidParameter
    from brushwork.train.vae import train_vae

    _check_positive(steps=args.steps, batch=args.batch, crop=args.crop, max_minutes=args.max_minutes)
    if not args.detail_weight >= 0:
        raise InvalidParameter(f"--detail-weight must be >= 0 (got {args.detail_weight})")
    print(train_vae(args.data, args.out, steps=args.steps, batch=args.batch, crop=args.crop, seed=args.seed,
                    detail_weight=args.detail_weight, max_minutes=args.max_minutes))
    return 0


def _unet(args) -> int:
    from brushwork.errors import InvalidParameter
    from brushwork.train.diffusion import TIMESTEP_SAMPLING, train_unet

    _check_positive(steps=args.steps, batch=args.batch, lr=args.lr, max_minutes=args.max_minutes)
    if not 0 < args.final_lr_frac <= 1:
        raise InvalidParameter(f"--final-lr-frac must be in (0, 1] (got {args.final_lr_frac})")
    if not args.snr_gamma >= 0:
        raise InvalidParameter(f"--snr-gamma must be >= 0 (got {args.snr_gamma})")
    if not 0 <= args.snr_floor <= (args.snr_gamma or 0):
        raise InvalidParameter(f"--snr-floor must be in [0, --snr-gamma {args.snr_gamma:g}] (got {args.snr_floor})")
    if args.timesteps not in TIMESTEP_SAMPLING:
        raise InvalidParameter(f"--timesteps must be one of {', '.join(TIMESTEP_SAMPLING)} (got {args.timesteps!r})")
    if args.warmup is not None and args.warmup < 0:
        raise InvalidParameter(f"--warmup must be >= 0 (got {args.warmup})")
    if args.init is not None:
        given = [f"--{n.replace('_', '-')}" for n in ("vae", "tokenizer", "text_encoder") if getattr(args, n)]
        if given:
            raise InvalidParameter(f"--init takes the VAE, tokenizer and text encoder from the model; drop {given[0]}")
        from brushwork.train.init import load_start

        init = load_start(args.init)
    elif not args.vae or not args.tokenizer:
        raise InvalidParameter("train unet needs --vae and --tokenizer, or --init MODEL")
    else:
        init = None
    warmup = args.warmup if args.warmup is not None else (200 if init is None else 100)
    res = train_unet(args.data, args.vae, args.tokenizer, args.out, steps=args.steps, batch=args.batch, lr=args.lr,
                     init=init, text_encoder_dir=args.text_encoder, warmup=warmup,
                     final_lr_frac=args.final_lr_frac, bf16=args.bf16,
                     snr_gamma=args.snr_gamma or None, snr_floor=args.snr_floor, timesteps=args.timesteps,
                     seed=args.seed, train_text_encoder=not args.freeze_text_encoder, max_minutes=args.max_minutes)
    out = {"done": res["done"], "step": res["step"], "checkpoint": f"{args.out}/checkpoint"}
    if init is not None and res["done"]:
        out["model"] = str(_export_fine_tune(args, init, res))
    print(json.dumps(out))
    return 0


def _export_fine_tune(args, init, res):
    """A finished ``train unet --init`` run as a diffusers folder at OUT/model, its training record extended."""
    import shlex
    from pathlib import Path

    from brushwork.train.init import TRAINING_RECORD
    from brushwork.train.recipe import save_ema_components

    model = save_ema_components(init, Path(args.out) / "checkpoint", Path(args.out) / "model")
    run = {"command": shlex.join(["brushwork", *sys.argv[1:]]), "init": args.init, "data": str(args.data),
           "data_seed": args.seed, "step_offset": res["step_offset"], "unet_steps": res["step"], "complete": True}
    record = {**init.record, "unet_steps_total": res["step_offset"] + res["step"],
              "chain": [*init.record.get("chain", []), run]}
    (model / TRAINING_RECORD).write_text(json.dumps(record, indent=1))
    return model


def _read_lines(path: str, flag: str) -> list[str]:
    """The non-blank lines of a UTF-8 text file, stripped; ``InvalidParameter`` when it cannot be read or has none."""
    from pathlib import Path

    from brushwork.errors import InvalidParameter

    p = Path(path)
    if not p.is_file():
        raise InvalidParameter(f"{flag} {path}: no such file")
    try:
        lines = [line.strip() for line in p.read_text(encoding="utf-8").splitlines() if line.strip()]
    except UnicodeDecodeError:
        raise InvalidParameter(f"{flag} {path}: not a UTF-8 text file") from None
    if not lines:
        raise InvalidParameter(f"{flag} {path}: the file holds no prompt")
    return lines


def _personal(args) -> int:
    import time

    from brushwork.train.personal import run
    from brushwork.train.personal.inputs import Settings

    start = time.monotonic()  # --max-minutes counts loading too
    names = ("images", "out", "prompt", "model", "steps", "lr", "batch", "seed", "max_minutes", "work", "rank", "alpha",
             "text_encoder", "words", "token", "vectors", "init_word", "class_prompt", "class_images", "prior_weight",
             "sample_every", "word_lr", "layers", "prior_target", "flip")
    s = Settings(method=args.method, **{k: getattr(args, k) for k in names if hasattr(args, k)})
    if getattr(args, "class_prompts", None):
        s.class_prompts = _read_lines(args.class_prompts, "--class-prompts")
    res = run(s, start=start)
    print(json.dumps({k: v for k, v in res.items() if k != "pipe"}))
    return 0
