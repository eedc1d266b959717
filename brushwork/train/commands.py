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
    u.add_argument("--vae", required=True, help="folder of the trained VAE (diffusers layout)")
    u.add_argument("--tokenizer", required=True, help="folder of a CLIPTokenizer")
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
    res = run_recipe(args.work, replace(Recipe(), **changes), max_minutes=args.max_minutes,
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
    res = train_unet(args.data, args.vae, args.tokenizer, args.out, steps=args.steps, batch=args.batch, lr=args.lr,
                     final_lr_frac=args.final_lr_frac, bf16=args.bf16,
                     snr_gamma=args.snr_gamma or None, snr_floor=args.snr_floor, timesteps=args.timesteps,
                     seed=args.seed, train_text_encoder=not args.freeze_text_encoder, max_minutes=args.max_minutes)
    print(json.dumps({"done": res["done"], "step": res["step"], "checkpoint": f"{args.out}/checkpoint"}))
    return 0
