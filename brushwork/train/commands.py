"""CLI: ``brushwork train recipe|vae|unet`` (resumable: run the same command again to continue)."""

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
    p.set_defaults(handler=lambda a: p.print_help(sys.stderr) or 2)


def _check_positive(**values):
    from brushwork.errors import InvalidParameter

    for name, v in values.items():
        if v is not None and v <= 0:
            raise InvalidParameter(f"--{name.replace('_', '-')} must be positive (got {v})")


def _recipe(args) -> int:
    from dataclasses import replace

    from brushwork.train.recipe import Recipe, run_recipe

    _check_positive(images=args.images, vae_steps=args.vae_steps, unet_steps=args.unet_steps, max_minutes=args.max_minutes)
    changes = {k: getattr(args, k) for k in ("images", "vae_steps", "unet_steps", "seed") if getattr(args, k) is not None}
    res = run_recipe(args.work, replace(Recipe(), **changes), init=args.init, max_minutes=args.max_minutes,
                     log=lambda m: print(m, file=sys.stderr))
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
