"""Memory of a server that is asked for one model after another: the worker's model LRU (``--max-models``).

    .venv/bin/python benchmarks/model_memory.py [--models 5] [--max-models 1]

Builds ``--models`` pipelines of random weights in the SD1 layout (SD1's UNet layout at a fifth of its width,
over 100 MB each in fp32), registers them, then, in a fresh process that holds the server's own
model (the tests' tiny model, as ``--model``) the way the worker does, generates one image from
each in turn. It prints the resident memory (VmRSS) after each request, the peak (VmHWM) against
the baseline (after loading the server's model), and how many pipelines were held. Acceptance for
``--max-models 1``: peak ≤ baseline + 3 × one model's size, and never more than 2 pipelines held.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def build(folder: Path, count: int) -> list[Path]:
    import torch
    from diffusers import UNet2DConditionModel

    sys.path.insert(0, str(ROOT / "tests" / "engine"))
    from conftest import build_tiny_model

    base = build_tiny_model(folder / "tiny")
    out = []
    for i in range(count):
        model = shutil.copytree(base, folder / f"big{i}", ignore=shutil.ignore_patterns("unet"))
        torch.manual_seed(i)
        unet = UNet2DConditionModel(  # SD1's block layout, narrower: random weights in a real layout
            sample_size=8, in_channels=4, out_channels=4, layers_per_block=2, block_out_channels=(64, 128, 256, 256),
            down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
            up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3, cross_attention_dim=32,
            attention_head_dim=8, norm_num_groups=32)
        unet.save_pretrained(model / "unet", safe_serialization=True)
        out.append(model)
    return out


def rss() -> dict:
    fields = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines() if ":" in line)
    return {k: int(fields[k].split()[0]) * 1024 for k in ("VmRSS", "VmHWM")}


def measure(home: Path, names: list[str], max_models: int) -> dict:
    from brushwork.engine.api import Studio
    from brushwork.engine.params import GenerationParams

    studio = Studio(home=home, allow_paths=False, max_models=max_models, keep="tiny")
    studio.generate(GenerationParams.build(prompt="a red circle", steps=1, seed=1, model="tiny"))
    baseline = rss()["VmRSS"]
    steps = []
    for name in names:
        studio.generate(GenerationParams.build(prompt="a red circle", steps=1, seed=1, model=name))
        steps.append({"model": name, "rss": rss()["VmRSS"], "held": len(studio.loaded_models())})
    return {"baseline": baseline, "peak": rss()["VmHWM"], "steps": steps}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", type=int, default=5)
    ap.add_argument("--max-models", type=int, default=1)
    ap.add_argument("--measure", nargs="+", help=argparse.SUPPRESS)  # internal: HOME NAME... in a fresh process
    args = ap.parse_args()
    if args.measure:
        print(json.dumps(measure(Path(args.measure[0]), args.measure[1:], args.max_models)))
        return 0

    from brushwork.models.registry import Registry

    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        home.mkdir()
        models = build(Path(tmp), args.models)
        size = sum(f.stat().st_size for f in models[0].rglob("*") if f.is_file())
        with Registry(home) as reg:
            reg.add(Path(tmp) / "tiny", name="tiny")
            for m in models:
                reg.add(m, name=m.name)
        r = subprocess.run([sys.executable, __file__, "--max-models", str(args.max_models), "--measure", str(home),
                            *[m.name for m in models]], capture_output=True, text=True, check=True)
    res = json.loads(r.stdout.strip().splitlines()[-1])
    mib = 2**20
    print(f"{args.models} models of {size / mib:.0f} MiB each (fp32 safetensors), --max-models {args.max_models}")
    for s in res["steps"]:
        print(f"  after {s['model']}: RSS {s['rss'] / mib:,.0f} MiB, pipelines held {s['held']}")
    peak, base = res["peak"], res["baseline"]
    print(f"baseline {base / mib:,.0f} MiB, peak {peak / mib:,.0f} MiB: +{(peak - base) / mib:,.0f} MiB "
          f"= {(peak - base) / size:.2f} x one model (limit 3); most pipelines held: {max(s['held'] for s in res['steps'])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
