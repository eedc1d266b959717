"""Continue a model (``--init``, default: the bundled one) on an accelerator, several variants side by side, in
one short lease.

A lease of the project's accelerator is about 10 minutes of command time, with no second try, so this script does
the whole run in one call and leaves what comes back in ``--out`` (at most 8 files of at most 16 MiB):

1. the shapes-world dataset (``--images``, ``--data-seed``; seed 0's first 50,000 images are the recipe's, another
   seed gives a continuation images it has not seen), rendered with every core but two;
2. its latents under the model's VAE, encoded once on the device and handed to every variant;
3. a probe: every variant's training step, run side by side for a few seconds, to size ``--unet-steps`` so that
   each run's cosine ends inside ``--train-minutes`` (``--max-minutes`` is the hard stop behind it);
4. ``brushwork train recipe --init INIT --device cuda`` once per variant, all at once;
5. each variant's exported model (UNet, text encoder, training record), times and loss curve, packed as
   ``NAME.tar.part-*`` (15 MiB parts), with ``summary.json`` and the logs.

Unpack here with ``cat NAME.tar.part-* | tar -x -C runs/gpu``; the VAE, tokenizer and scheduler are the init
model's and do not travel: copy that model's folder and lay the unpacked ``model/`` over it.

    python3 scripts/accelerator_run.py --out $OUT --train-minutes 6 \\
        --variant te=--train-text-encoder,--text-encoder-lr,2e-4 --variant frozen=
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tarfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PART = 15 * 2**20


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True, help="folder for what comes back")
    ap.add_argument("--work", default="runs/gpu")
    ap.add_argument("--init", default="default", help="the model every variant continues (default: the bundled one)")
    ap.add_argument("--images", type=int, default=200_000)
    ap.add_argument("--data-seed", type=int, default=0, help="the dataset's seed (0: the recipe's own images)")
    ap.add_argument("--batch", type=int, default=512)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--train-minutes", type=float, required=True, help="wall-clock minutes for the UNet runs")
    ap.add_argument("--deadline-minutes", type=float, default=None,
                    help="the whole script's limit: training is shortened so that packing ends before it")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--probe-seconds", type=float, default=15.0)
    ap.add_argument("--variant", action="append", required=True,
                    help="NAME=FLAG,FLAG,... extra `train recipe` flags for one run (repeatable)")
    ap.add_argument("--probe-only", action="store_true", help="stop after the probe (a dry run of the set-up)")
    args = ap.parse_args()
    t0 = time.monotonic()
    out, work = Path(args.out), Path(args.work)
    out.mkdir(parents=True, exist_ok=True)
    variants = dict(_variant(v) for v in args.variant)
    summary = {"args": vars(args), "minutes": {}}

    def stage(name, t):
        summary["minutes"][name] = round((time.monotonic() - t) / 60, 2)
        (out / "summary.json").write_text(json.dumps(summary, indent=1))
        print(f"[{(time.monotonic() - t0) / 60:5.2f} min] {name} done", flush=True)

    t = time.monotonic()
    data = work / "dataset"
    if not (data / "metadata.jsonl").is_file():
        from brushwork.world.dataset import make_dataset
        from brushwork.world.holdout import load_holdout

        make_dataset(data, args.images, seed=args.data_seed, size=64, holdout=load_holdout(),
                     workers=max(1, (os.cpu_count() or 4) - 2))
    stage("dataset", t)

    t = time.monotonic()
    latents = work / "latents.safetensors"
    if not latents.is_file():
        _encode(data, latents, args.device, args.init)
    for name in variants:
        (work / name / "unet").mkdir(parents=True, exist_ok=True)
        if not (work / name / "dataset").exists():
            (work / name / "dataset").symlink_to(data.resolve())
        target = work / name / "unet" / "latents.safetensors"
        if not target.exists():
            os.link(latents, target)
    stage("latents", t)

    t = time.monotonic()
    threads = str(max(1, ((os.cpu_count() or 2) - 1) // len(variants)))
    env = {**os.environ, "TQDM_MININTERVAL": "5", "OMP_NUM_THREADS": threads}
    probes = [subprocess.Popen([sys.executable, __file__, "--probe-step", args.init, args.device, str(args.batch),
                                str(args.probe_seconds), *flags], stdout=subprocess.PIPE, text=True, env=env)
              for flags in variants.values()]
    s_per_step = max(float(p.communicate()[0].strip().splitlines()[-1]) for p in probes)
    if args.deadline_minutes is not None:  # the runs' start-up, export and packing take about a minute
        args.train_minutes = min(args.train_minutes, args.deadline_minutes - (time.monotonic() - t0) / 60 - 1.5)
    # the probe leaves out data loading and the per-step record keeping: take 20 % off what it allows
    steps = int(0.8 * args.train_minutes * 60 / s_per_step)
    summary.update(probe_s_per_step=round(s_per_step, 4), unet_steps=steps)
    stage("probe", t)
    if args.probe_only:
        return 0

    t = time.monotonic()
    runs = {}
    for name, flags in variants.items():
        cmd = [sys.executable, "-m", "brushwork", "train", "recipe", "--work", str(work / name), "--init", args.init,
               "--images", str(args.images), "--seed", str(args.data_seed), "--unet-steps", str(steps),
               "--unet-batch", str(args.batch), "--unet-lr", str(args.lr), "--device", args.device,
               "--max-minutes", f"{args.train_minutes + 0.5:.2f}",
               *flags]
        log = open(out / f"{name}.log", "w")
        runs[name] = (subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env), cmd)
    for name, (p, cmd) in runs.items():
        summary.setdefault("runs", {})[name] = {"command": " ".join(cmd[1:]), "rc": p.wait()}
    stage("train", t)

    for name in variants:
        folder = work / name
        tar = out / f"{name}.tar"
        with tarfile.open(tar, "w") as tf:
            for rel in ("model/unet", "model/text_encoder", "model/brushwork_training.json", "times.json",
                        "unet/unet_loss.png", "recipe.json"):
                if (folder / rel).exists():
                    tf.add(folder / rel, arcname=f"{name}/{rel}")
        blob = tar.read_bytes()
        tar.unlink()
        for i in range(0, len(blob), PART):
            (out / f"{name}.tar.part-{i // PART}").write_bytes(blob[i:i + PART])
    stage("pack", t0)
    return 0


def _variant(text: str) -> tuple[str, list[str]]:
    name, _, flags = text.partition("=")
    if not name.isidentifier():
        raise SystemExit(f"--variant {text!r}: NAME must be letters, digits and _")
    return name, [f for f in flags.split(",") if f]


def _encode(data: Path, path: Path, device: str, init: str) -> None:
    import torch
    from safetensors.torch import save_file

    from brushwork.train.data import load_imagefolder
    from brushwork.train.init import load_start
    from brushwork.train.vae import encode_all

    vae = load_start(init).vae.to(device).eval()
    mean, std = encode_all(vae, load_imagefolder(data).load_images(), batch=1024)
    save_file({"mean": mean.contiguous(), "std": std.contiguous()}, path)
    del vae
    torch.cuda.empty_cache() if device.startswith("cuda") else None


def probe_step(init: str, device: str, batch: int, seconds: float, flags: list[str]) -> float:
    """Seconds per training step of the model ``init`` at ``batch`` on ``device`` (synthetic latents and captions):
    the UNet, and the text encoder when ``--train-text-encoder`` is among ``flags``, forward and backward, AdamW and
    the EMA, timed after 5 warm-up steps for about ``seconds``."""
    import torch

    from brushwork.train.checkpoint import EMA
    from brushwork.train.init import load_start

    torch.backends.cuda.matmul.allow_tf32 = True
    s = load_start(init)
    unet, te = s.unet.to(device).train(), s.text_encoder.to(device)
    train_te = "--train-text-encoder" in flags
    te.requires_grad_(train_te)
    params = list(unet.parameters()) + (list(te.parameters()) if train_te else [])
    opt = torch.optim.AdamW(params, lr=1e-5, fused=device.startswith("cuda") or None)
    emas = [EMA(unet), EMA(te)]
    c = unet.config.in_channels
    lat = torch.randn(batch, c, unet.config.sample_size, unet.config.sample_size, device=device)
    ids = torch.randint(0, len(s.tokenizer), (batch, s.tokenizer.model_max_length), device=device)
    cond_fixed = None if train_te else te(ids).last_hidden_state.detach()
    n, start = -5, None  # 5 warm-up steps, then timed ones
    while True:
        t = torch.randint(0, 1000, (batch,), device=device)
        cond = te(ids).last_hidden_state if train_te else cond_fixed
        loss = (unet(lat, t, cond).sample - lat).pow(2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        emas[0].update(unet, n)
        emas[1].update(te, n)
        loss.item()
        n += 1
        if n == 0:
            torch.cuda.synchronize() if device.startswith("cuda") else None
            start = time.monotonic()
        elif n > 0 and time.monotonic() - start > seconds:
            return (time.monotonic() - start) / n


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--probe-step":
        print(probe_step(sys.argv[2], sys.argv[3], int(sys.argv[4]), float(sys.argv[5]), sys.argv[6:]))
        sys.exit(0)
    sys.exit(main())
