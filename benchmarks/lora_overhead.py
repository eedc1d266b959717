"""Seconds per image with LoRAs applied against none, in one process (the bundled model by default).

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/lora_overhead.py [--model default] [--images 12] [--steps 20]
        [--lora FILE ...] [--threads 2]

Without ``--lora``, two random kohya LoRAs (rank 8, every attention projection of the UNet and text encoder) are
written to a temporary folder. Rounds alternate (none, one LoRA, two stacked) so that machine noise falls on all
three alike; the first image of each setting (loading the adapters) is timed apart as ``first_s``. Prints JSON:
seconds per image for each setting and the ratios to no LoRA.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path


def random_lora(pipe, path: Path, seed: int, rank: int = 8) -> Path:
    import torch
    from safetensors.torch import save_file

    g = torch.Generator().manual_seed(seed)
    sd = {}
    for prefix, module, ends in (("lora_unet_", pipe.unet, ("to_q", "to_k", "to_v", "to_out.0")),
                                 ("lora_te_text_model_", pipe.text_encoder, ("q_proj", "k_proj", "v_proj",
                                                                              "out_proj"))):
        for name, mod in module.named_modules():
            if name.endswith(ends) and isinstance(mod, torch.nn.Linear):
                key = prefix + name.replace(".", "_")
                sd[f"{key}.lora_down.weight"] = torch.randn(rank, mod.in_features, generator=g) * 0.05
                sd[f"{key}.lora_up.weight"] = torch.randn(mod.out_features, rank, generator=g) * 0.05
                sd[f"{key}.alpha"] = torch.tensor(float(rank))
    save_file(sd, str(path))
    return path


def main() -> int:
    import torch

    from brushwork.engine.api import Studio
    from brushwork.engine.params import GenerationParams

    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="default")
    ap.add_argument("--images", type=int, default=12, help="timed images per setting")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--lora", action="append", default=None, help="LoRA files to use (two are stacked)")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    studio = Studio()
    loaded = studio.model(args.model)
    tmp = Path(tempfile.mkdtemp(prefix="lora-overhead-"))
    files = args.lora or [str(random_lora(loaded.pipe, tmp / f"r{i}.safetensors", i)) for i in range(2)]
    settings = {"none": [], "one": [files[0]], "two": files[:2]}

    def one(setting: str, seed: int) -> float:
        loras = [{"name": f, "weight": 0.8} for f in settings[setting]]
        p = GenerationParams.build(prompt="a red circle above a blue square", seed=seed, steps=args.steps,
                                   model=args.model, loras=loras)
        t = time.perf_counter()
        studio.generate(p)
        return time.perf_counter() - t

    first = {s: round(one(s, 0), 3) for s in settings}  # loads each LoRA set once
    times: dict[str, list[float]] = {s: [] for s in settings}
    for i in range(args.images):
        for s in settings:
            times[s].append(one(s, i + 1))
    med = {s: statistics.median(v) for s, v in times.items()}
    print(json.dumps({"model": loaded.name, "steps": args.steps, "images": args.images, "threads": args.threads,
                      "files": [Path(f).name for f in files], "first_s": first,
                      "s_per_image": {s: round(v, 3) for s, v in med.items()},
                      "ratio_one_lora": round(med["one"] / med["none"], 3),
                      "ratio_two_loras": round(med["two"] / med["none"], 3)}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
