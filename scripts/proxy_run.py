"""A short proxy run for comparing recipe options: train a UNet variant on a finished recipe's
stage 1 (dataset, tokenizer, VAE, cached latents), export it, judge it on a few categories.

    .venv/bin/python scripts/proxy_run.py --work runs/v4 --out runs/proxy/b32 --minutes 40 --steps 1400 \
        --batch 32 [--lr 1e-3] [--unet '{"block_out_channels": [32, 64, 128]}'] [--text '{"num_hidden_layers": 1}'] \
        [--threads 1] [--categories single_object,colors,two_object,position] [--images 2]

Writes ``OUT/proxy.json``: the options, steps done, seconds per step and the per-category accuracy.
The step budget is the schedule's length (cosine to ``--final-lr-frac``); ``--minutes`` stops early.
"""

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", required=True, help="a recipe work folder whose stage 1 is done")
    ap.add_argument("--out", required=True)
    ap.add_argument("--minutes", type=float, required=True)
    ap.add_argument("--steps", type=int, required=True)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--final-lr-frac", type=float, default=0.1)
    ap.add_argument("--warmup", type=int, default=200)
    ap.add_argument("--snr-gamma", type=float, default=5.0, help="0: plain v-prediction loss, no weighting")
    ap.add_argument("--snr-floor", type=float, default=0.0, help="min-SNR's lower clamp (train unet --snr-floor)")
    ap.add_argument("--timesteps", choices=("uniform", "weighted"), default="uniform",
                    help="weighted: draw timesteps in proportion to the min-SNR weights (train unet --timesteps)")
    ap.add_argument("--unet", default="{}", help="JSON overrides of DEFAULT_UNET_CONFIG")
    ap.add_argument("--text", default="{}", help="JSON overrides of DEFAULT_TEXT_CONFIG")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--categories", default="single_object,colors,two_object,position")
    ap.add_argument("--images", type=int, default=2)
    ap.add_argument("--prompts", default=None,
                    help="prompt file to judge on (default: the benchmark); e.g. a validation set from "
                         "scripts/make_benchmark_prompts.py --seed 7")
    ap.add_argument("--cfg", type=float, default=7.0)
    ap.add_argument("--eval-only", action="store_true", help="judge OUT/model again, no training")
    args = ap.parse_args()

    if args.snr_gamma < 0:
        sys.exit(f"--snr-gamma must be >= 0 (got {args.snr_gamma})")
    if not 0 <= args.snr_floor <= args.snr_gamma:
        sys.exit(f"--snr-floor must be in [0, --snr-gamma {args.snr_gamma:g}] (got {args.snr_floor})")
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    from brushwork.engine.bench import engine_generate
    from brushwork.evaluate.prompt_sets import load_prompts
    from brushwork.train.diffusion import DEFAULT_SCHEDULER_CONFIG, DEFAULT_TEXT_CONFIG, DEFAULT_UNET_CONFIG, train_unet
    from brushwork.train.recipe import save_ema_pipeline

    work, out = Path(args.work), Path(args.out)
    overrides = {}
    for flag in ("unet", "text"):
        try:
            overrides[flag] = dict(json.loads(getattr(args, flag)))
        except (ValueError, TypeError) as e:
            sys.exit(f"--{flag}: not a JSON object ({e})")
    ucfg = {**DEFAULT_UNET_CONFIG, **overrides["unet"]}
    tcfg = {**DEFAULT_TEXT_CONFIG, **overrides["text"]}
    cats = args.categories.split(",")
    prompts = [p for p in load_prompts(args.prompts) if p.category in cats]
    if not prompts:
        sys.exit(f"--categories: no benchmark prompt is in {cats}")
    if args.eval_only:
        generate, _ = engine_generate(str(out / "model"), cfg_scale=args.cfg)
        result = fine_eval(prompts, generate, args.images)
        (out / "proxy_eval.json").write_text(json.dumps(result, indent=1))
        print(json.dumps(result))
        return 0
    out.mkdir(parents=True, exist_ok=True)
    cache = out / "latents.safetensors"
    if not cache.exists():  # a hard link where the file system allows it: the cache is 0.5 GB
        try:
            os.link(work / "unet" / "latents.safetensors", cache)
        except OSError:
            shutil.copyfile(work / "unet" / "latents.safetensors", cache)
    t0 = time.monotonic()
    res = train_unet(work / "dataset", work / "vae" / "vae", work / "tokenizer", out, steps=args.steps,
                     batch=args.batch, lr=args.lr, warmup=args.warmup, final_lr_frac=args.final_lr_frac,
                     snr_gamma=args.snr_gamma or None, snr_floor=args.snr_floor, timesteps=args.timesteps,
                     max_minutes=args.minutes,
                     unet_config=ucfg, text_config=tcfg,
                     progress=False)
    train_s = time.monotonic() - t0
    step = res["step"]
    # the EMA weights, whether or not the schedule finished
    save_ema_pipeline(work / "tokenizer", work / "vae" / "vae", out / "checkpoint", out / "model",
                      DEFAULT_SCHEDULER_CONFIG, unet_config=ucfg, text_config=tcfg)

    generate, _ = engine_generate(str(out / "model"), cfg_scale=args.cfg)
    t1 = time.monotonic()
    result = {"args": vars(args), "steps_done": step, "train_s": round(train_s),
              "s_per_step": round(train_s / max(1, step), 3),
              **fine_eval(prompts, generate, args.images), "eval_s": round(time.monotonic() - t1)}
    (out / "proxy.json").write_text(json.dumps(result, indent=1))
    print(json.dumps(result))
    return 0


def fine_eval(prompts, generate, images: int) -> dict:
    """Per category: the pass rate, and two signals that move before it does: the share of the
    judge's checks passed, and the share of images with at least one object detected."""
    import numpy as np

    from brushwork.evaluate.adherence import prompt_seed
    from brushwork.world.judge import judge

    by_cat: dict = {}
    for j, bp in enumerate(prompts):
        for img in generate(bp, prompt_seed(0, j), images):
            v = judge(img, bp.spec)
            r = by_cat.setdefault(bp.category, {"pass": [], "checks": [], "objects": []})
            r["pass"].append(v.passed)
            r["checks"].append(np.mean([c.passed for c in v.checks]))
            r["objects"].append(len(v.detection.objects) > 0)
    return {"categories": {c: {k: round(float(np.mean(x)), 3) for k, x in r.items()} for c, r in by_cat.items()}}


if __name__ == "__main__":
    sys.exit(main())
