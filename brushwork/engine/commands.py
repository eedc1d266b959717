"""CLI: ``brushwork generate`` (txt2img, hires fix), ``img2img`` (and inpainting), ``outpaint``, ``samplers``,
``png-info``."""

from __future__ import annotations

import json
import sys

from brushwork.engine.params import (CFG_RANGE, COUNT_RANGE, FILL_MODES, HIRES_UPSCALERS, HR_SCALE_RANGE,
                                     RESIZE_MODES, STEPS_RANGE)
from brushwork.errors import InvalidParameter


def _common(g) -> None:
    """The flags generate, img2img and outpaint share."""
    g.add_argument("prompt", nargs="?", default=None, help="prompt text; empty means unconditional")
    g.add_argument("-n", "--count", dest="n", type=int, default=None, help=f"images, {COUNT_RANGE[0]}-{COUNT_RANGE[1]} (default 1)")
    g.add_argument("--seed", type=int, default=None, help="seed of image 0 (image i uses seed+i); default random")
    g.add_argument("--steps", type=int, default=None, help=f"denoising steps, {STEPS_RANGE[0]}-{STEPS_RANGE[1]} (default 20)")
    g.add_argument("--cfg", type=float, default=None, help=f"guidance scale, {CFG_RANGE[0]:g}-{CFG_RANGE[1]:g} (default 7)")
    g.add_argument("--sampler", default=None, help="A1111 sampler name (see 'brushwork samplers'); default DPM++ 2M")
    g.add_argument("--scheduler", default=None, help="schedule type: Automatic, Karras, Exponential, …")
    g.add_argument("--negative", default=None, help="negative prompt")
    g.add_argument("--width", type=int, default=None)
    g.add_argument("--height", type=int, default=None)
    g.add_argument("--model", default=None, help="registry name, diffusers folder or single file (default: bundled)")
    g.add_argument("--out", default="outputs", help="output folder (default ./outputs)")
    g.add_argument("--grid", action="store_true", help="also write a contact sheet of the batch")
    g.add_argument("--from-png", metavar="FILE", help="re-make an image from its PNG metadata")
    g.add_argument("--commercial", action="store_true", help="refuse models whose licence forbids commercial use")
    g.add_argument("--allow-pickle", action="store_true", help="read pickled weights (weights_only=True only)")
    g.add_argument("--dtype", default="fp32", help="fp32 (default), bf16 or fp16")
    g.add_argument("--lora", action="append", default=None, metavar="NAME_OR_FILE[:WEIGHT]",
                   help="apply a LoRA (weight 1 by default); repeat to stack. <lora:NAME:WEIGHT> in the prompt "
                        "works too")
    g.add_argument("--embedding", action="append", default=None, metavar="NAME_OR_FILE",
                   help="load a textual-inversion embedding; write its name in the prompt. Embeddings in "
                        "$BRUSHWORK_HOME/embeddings load when the prompt names them")
    g.set_defaults(handler=_generate, image=None, mask=None)


def _image_flags(g) -> None:
    g.add_argument("--image", required=True, metavar="FILE", help="the init image")
    g.add_argument("--strength", type=float, default=None,
                   help="denoising strength 0-1: how much is re-drawn (default 0.75)")
    g.add_argument("--resize-mode", default=None, help=f"how the image fits the size: {', '.join(RESIZE_MODES)}")


def register(sub) -> None:
    g = sub.add_parser("generate", help="generate images from a prompt (txt2img)")
    _common(g)
    g.add_argument("--hires", type=float, default=None, metavar="SCALE",
                   help=f"hires fix: upscale by SCALE ({HR_SCALE_RANGE[0]:g}-{HR_SCALE_RANGE[1]:g}) and re-draw")
    g.add_argument("--hires-steps", type=int, default=None, help="steps of the second pass (default: --steps)")
    g.add_argument("--hires-upscaler", default=None, help=f"{', '.join(HIRES_UPSCALERS)} (default Latent)")
    g.add_argument("--hires-strength", type=float, default=None, help="second pass strength 0-1 (default 0.75)")

    i = sub.add_parser("img2img", help="re-draw an image from a prompt; with --mask, repaint only the masked area")
    _common(i)
    _image_flags(i)
    i.add_argument("--mask", default=None, metavar="FILE", help="white = repaint (same size as the image)")
    i.add_argument("--mask-blur", type=int, default=None, help="mask blur radius in pixels (default 4)")
    i.add_argument("--fill", default=None, help=f"what the masked area starts from: {', '.join(FILL_MODES)} "
                                                "(default original)")
    i.add_argument("--only-masked", action="store_true", help="inpaint only the masked region, at full size")
    i.add_argument("--padding", type=int, default=None, help="pixels around the region for --only-masked (32)")
    i.add_argument("--invert-mask", action="store_true", help="repaint the black part of the mask")

    o = sub.add_parser("outpaint", help="extend the canvas and paint the new area")
    _common(o)
    _image_flags(o)
    o.add_argument("--extend", required=True, metavar="SIDES", help="pixels per side, e.g. left=32,right=32")

    s = sub.add_parser("samplers", help="list sampler names and schedule types")
    s.add_argument("--json", action="store_true")
    s.set_defaults(handler=_samplers)

    p = sub.add_parser("png-info", help="print an image's A1111 parameters and brushwork JSON")
    p.add_argument("file")
    p.set_defaults(handler=_png_info)


def params_from_args(args):
    from brushwork.engine.metadata import params_from_infotext, read_png_info
    from brushwork.engine.params import GenerationParams

    base: dict = {}
    if args.from_png:
        info = read_png_info(args.from_png)
        if info.get("brushwork") and isinstance(info["brushwork"].get("params"), dict):
            base = GenerationParams.from_json(json.dumps(info["brushwork"]["params"])).model_dump()
        elif info.get("parameters"):
            base = params_from_infotext(info["parameters"]).model_dump()
        else:
            raise InvalidParameter(f"{args.from_png} carries no generation parameters")
    flags = {"prompt": args.prompt, "n": args.n, "seed": args.seed, "steps": args.steps, "cfg_scale": args.cfg,
             "sampler": args.sampler, "scheduler": args.scheduler, "negative_prompt": args.negative,
             "width": args.width, "height": args.height, "model": args.model,
             "denoising_strength": _first_given(getattr(args, "strength", None), getattr(args, "hires_strength", None))}
    from brushwork.engine.images import parse_extend, parse_fill, parse_resize_mode

    if getattr(args, "resize_mode", None) is not None:

        flags["resize_mode"] = parse_resize_mode(args.resize_mode)
    if getattr(args, "hires", None) is not None:
        flags.update(enable_hr=True, hr_scale=args.hires, hr_second_pass_steps=args.hires_steps,
                     hr_upscaler=args.hires_upscaler)
    if getattr(args, "mask", None) is not None or getattr(args, "image", None) is not None:
        flags.update(mask_blur=getattr(args, "mask_blur", None), inpaint_full_res_padding=getattr(args, "padding", None))
        if getattr(args, "fill", None) is not None:
            flags["inpainting_fill"] = parse_fill(args.fill)
        if getattr(args, "only_masked", False):
            flags["inpaint_full_res"] = True
        if getattr(args, "invert_mask", False):
            flags["inpainting_mask_invert"] = True
    if getattr(args, "extend", None) is not None:
        flags["outpaint"] = parse_extend(args.extend)
    if getattr(args, "lora", None):
        flags["loras"] = [*base.get("loras", []), *(parse_lora_flag(v) for v in args.lora)]
    if getattr(args, "embedding", None):
        flags["embeddings"] = [*base.get("embeddings", []), *args.embedding]
    values = {**base, **{k: v for k, v in flags.items() if v is not None}}
    if args.commercial:
        values["commercial"] = True
    return GenerationParams.build(**values)


def parse_lora_flag(value: str) -> dict:
    """``--lora NAME_OR_FILE[:WEIGHT]`` → ``{"name", "weight"}``; a weight that is not a number is refused."""
    name, sep, weight = value.rpartition(":")
    if not sep or "/" in weight or "\\" in weight:
        return {"name": value, "weight": 1.0}
    try:
        number = float(weight)
    except ValueError:
        raise InvalidParameter(f"--lora {value}: the weight {weight!r} is not a number (write NAME:WEIGHT)",
                               field="lora") from None
    if not name:
        raise InvalidParameter(f"--lora {value}: no LoRA name before the weight", field="lora")
    return {"name": name, "weight": number}


def _first_given(*values):
    return next((v for v in values if v is not None), None)


def image_inputs(args):
    """The ``ImageInputs`` of ``--image`` and ``--mask``, or ``None`` for txt2img."""
    from brushwork.engine.images import ImageInputs, read_image

    if args.image is None:
        return None
    init, init_hash = read_image(args.image, field="image")
    mask, mask_hash = read_image(args.mask, field="mask") if args.mask is not None else (None, None)
    return ImageInputs(init, mask, init_hash, mask_hash)


def _generate(args) -> int:
    from tqdm.auto import tqdm

    from brushwork.engine.api import Studio, writable_dir

    params = params_from_args(args)
    inputs = image_inputs(args)
    writable_dir(args.out)  # refuse before spending time on generation
    studio = Studio(dtype=args.dtype, allow_pickle=args.allow_pickle)
    bars = []  # made at the first step, so that errors before it print alone

    def on_step(i, total, _latents):
        if not bars:
            bars.append(tqdm(total=total, desc="generate", file=sys.stderr, leave=False))
        bars[0].n = i
        bars[0].refresh()

    try:
        gen = studio.generate(params, images=inputs, on_step=on_step)
    finally:
        for bar in bars:
            bar.close()
    for path in studio.save(gen, args.out, grid=args.grid):
        print(path)
    print(f"seed {gen.params.seed}, model {gen.model_name}", file=sys.stderr)
    return 0


def _samplers(args) -> int:
    from brushwork.engine.samplers import list_samplers, list_schedule_types

    samplers, schedules = list_samplers(), list_schedule_types()
    if args.json:
        print(json.dumps({"samplers": samplers, "schedule_types": schedules}, indent=1))
        return 0
    for s in samplers:
        print(f"{s['name']:<12} schedules: {', '.join(s['schedule_types'])}{'  (stochastic, seeded)' if s['stochastic'] else ''}")
    print("schedule types: " + ", ".join(t["label"] for t in schedules))
    return 0


def _png_info(args) -> int:
    from brushwork.engine.metadata import read_png_info

    info = read_png_info(args.file)
    print(info.get("parameters") or "(no A1111 parameters chunk)")
    print(json.dumps(info.get("brushwork"), indent=1, sort_keys=True) if info.get("brushwork") else "(no brushwork chunk)")
    return 0
