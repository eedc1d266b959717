"""Real-size single-file load: an SD1.5-architecture checkpoint (random fp16 weights, ~2.1 GB).

Not part of CI. Makes the file itself (streamed tensor by tensor, so making it needs little RAM),
then, in a fresh process with the network made unreachable and ``HF_HUB_OFFLINE=1``, loads it
with ``load_pipeline(..., dtype=fp16)`` from the shipped SD1 configs and reports:

- peak RSS growth during the load (VmHWM after minus VmRSS before, imports excluded) against the
  file size (target <= 1.5x);
- the same after one tiny generation step, which touches every weight the UNet, text encoder and
  VAE decoder use (memory-mapped pages count in RSS only once read);
- load time and sha256 time.

With ``--inpainting`` the checkpoint is an SD-1.5 *inpainting* one (a UNet with 9 input channels); it must be
detected as such, load, and inpaint a masked region through the engine with every pixel outside the mask kept.

    nice -n 19 .venv/bin/python benchmarks/load_real_size.py [--dir /tmp/bw-bench] [--keep] [--inpainting]
"""

from __future__ import annotations

import argparse
import json
import os
import struct
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def ldm_shapes(inpainting: bool = False) -> dict[str, tuple[int, ...]]:
    """Every tensor name and shape of an SD1.5 (inpainting) single-file checkpoint, from the shipped configs."""
    import torch
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from brushwork.models import ldm
    from brushwork.models.load import CONFIGS

    cfg = CONFIGS / "sd1"
    unet_cfg = json.loads((cfg / "unet" / "config.json").read_text())
    if inpainting:
        unet_cfg["in_channels"] = 9
    vae_cfg = json.loads((cfg / "vae" / "config.json").read_text())
    with torch.device("meta"):
        unet = UNet2DConditionModel.from_config(unet_cfg)
        vae = AutoencoderKL.from_config(vae_cfg)
        te = CLIPTextModel(CLIPTextConfig.from_dict(json.loads((cfg / "text_encoder" / "config.json").read_text())))
    flat = ldm.unet_to_ldm(unet.state_dict(), unet_cfg)
    flat.update(ldm.vae_to_ldm(vae.state_dict(), vae_cfg))
    flat.update(ldm.clip_to_ldm({k: v for k, v in te.state_dict().items() if not k.endswith("position_ids")},
                                ldm.CLIP_PREFIX["sd1"]))
    return {k: tuple(v.shape) for k, v in flat.items()}


def write_checkpoint(path: Path, seed: int = 0, inpainting: bool = False) -> int:
    """Stream a random fp16 safetensors file; returns its size."""
    import torch

    shapes = ldm_shapes(inpainting)
    header, offset = {}, 0
    for k in sorted(shapes):
        n = 1
        for d in shapes[k]:
            n *= d
        header[k] = {"dtype": "F16", "shape": list(shapes[k]), "data_offsets": [offset, offset + 2 * n]}
        offset += 2 * n
    header["__metadata__"] = {"format": "pt", "brushwork.benchmark": "random weights"}
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    g = torch.Generator().manual_seed(seed)
    tmp = path.with_name(path.name + ".partial")
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(raw)) + raw)
        for k in sorted(shapes):
            t = (torch.randn(shapes[k], generator=g) * 0.02).to(torch.float16)
            if k.endswith(("norm.weight", "norm1.weight", "norm2.weight", "in_layers.0.weight", "out_layers.0.weight")):
                t = torch.ones_like(t)
            f.write(t.numpy().tobytes())
    os.replace(tmp, path)
    return path.stat().st_size


def _status(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(field)


def measure(path: str, inpainting: bool = False) -> None:
    """Runs in a fresh process: load offline in fp16 and report memory."""
    import socket

    import torch

    def refuse(*a, **k):
        raise OSError("network unreachable (benchmark)")

    socket.socket.connect = lambda self, *a, **k: refuse()
    socket.create_connection = refuse
    import diffusers  # noqa: F401 - imports are not part of the load
    import transformers  # noqa: F401

    from brushwork.models.load import load_pipeline

    size = Path(path).stat().st_size
    rss0 = _status("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
    t = time.perf_counter()
    m = load_pipeline(path, dtype=torch.float16, hash=False)
    load_s = time.perf_counter() - t
    peak_load = _status("VmHWM") - rss0
    rss_load = _status("VmRSS") - rss0
    t = time.perf_counter()
    extra = {}
    if inpainting:  # diffusers' text-to-image pipeline cannot drive a 9-channel UNet: the engine's inpainting does
        extra = inpaint_check(m, path)
    else:
        g = torch.Generator().manual_seed(0)
        with torch.no_grad():
            m.pipe(prompt="a red cube", num_inference_steps=1, height=64, width=64, guidance_scale=1.0,
                   generator=g, output_type="np")
    step_s = time.perf_counter() - t
    peak_step = _status("VmHWM") - rss0
    t = time.perf_counter()
    from brushwork.models.inspect import sha256_file

    digest = sha256_file(path)
    hash_s = time.perf_counter() - t
    print(json.dumps({
        **extra, "file_bytes": size, "load_seconds": round(load_s, 2), "peak_rss_growth_load_bytes": peak_load,
        "rss_growth_after_load_bytes": rss_load, "ratio_load": round(peak_load / size, 3),
        "peak_rss_growth_after_1_step_bytes": peak_step, "ratio_after_1_step": round(peak_step / size, 3),
        "step_seconds": round(step_s, 2), "sha256_seconds": round(hash_s, 2), "short_hash": digest[:10],
        "kind": m.kind, "unet_dtype": str(next(m.pipe.unet.parameters()).dtype),
    }))


def inpaint_check(m, path: str) -> dict:
    """Detected as inpainting, and a masked region repainted through the engine with the rest kept."""
    import numpy as np
    from PIL import Image

    from brushwork.engine.api import Studio
    from brushwork.engine.images import ImageInputs
    from brushwork.engine.params import GenerationParams
    from brushwork.models.inspect import inspect_model

    variant = inspect_model(path)["architecture"]["variant"]
    studio = Studio(dtype="fp16")
    studio._models[path] = m
    src = np.zeros((64, 64, 3), np.uint8)
    src[:] = (30, 60, 160)
    mask = np.zeros((64, 64), np.uint8)
    mask[:, :32] = 255
    t = time.perf_counter()
    out = studio.generate(GenerationParams.build(prompt="a red cube", model=path, seed=1, steps=2, width=64, height=64,
                                                 mask_blur=0, denoising_strength=1.0),
                          images=ImageInputs(Image.fromarray(src), Image.fromarray(mask, "L")))
    got = np.asarray(out.images[0]).astype(int)
    return {"variant": variant, "unet_in_channels": m.pipe.unet.config.in_channels,
            "inpaint_seconds": round(time.perf_counter() - t, 2),
            "outside_mask_max_abs_diff": int(np.abs(got[:, 32:] - src[:, 32:]).max()),
            "inside_mask_mean_abs_diff": round(float(np.abs(got[:, :32] - src[:, :32]).mean()), 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dir", default="/tmp/bw-bench")
    ap.add_argument("--keep", action="store_true", help="keep the 2 GB file")
    ap.add_argument("--inpainting", action="store_true", help="an SD-1.5 inpainting checkpoint, and inpaint with it")
    ap.add_argument("--measure", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.measure:
        measure(args.measure, args.inpainting)
        return
    d = Path(args.dir)
    d.mkdir(parents=True, exist_ok=True)
    path = d / ("sd15-inpainting-random-fp16.safetensors" if args.inpainting else "sd15-random-fp16.safetensors")
    if not path.exists():
        t = time.perf_counter()
        size = write_checkpoint(path, inpainting=args.inpainting)
        print(f"wrote {path} ({size / 1e9:.2f} GB) in {time.perf_counter() - t:.1f} s", flush=True)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "BRUSHWORK_HOME": str(d / "home")}
    out = subprocess.run([sys.executable, __file__, "--measure", str(path), *(["--inpainting"] * args.inpainting)],
                         env=env, capture_output=True,
                         text=True, check=False)
    if out.returncode != 0:
        print(out.stderr[-3000:], file=sys.stderr)
        sys.exit(out.returncode)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    for k, v in result.items():
        print(f"{k:38s} {v}")
    verdict = "PASS" if result["ratio_load"] <= 1.5 else "FAIL"
    print(f"peak RSS growth during load / file size = {result['ratio_load']:.3f} (target <= 1.5): {verdict}")
    if not args.keep:
        path.unlink()


if __name__ == "__main__":
    main()
