"""Seconds per image at default settings: brushwork's engine vs plain diffusers, same weights.

    .venv/bin/python benchmarks/generate_speed.py [--model PATH] [--images 8] [--repeats 3]

Both run the same model, sampler (DPM++ 2M, Karras: brushwork's default), 20 steps, CFG 7 and
seeds, on this CPU in fp32, one image at a time, alternating so that machine noise hits both.
The ratio brushwork/diffusers is the figure to watch (1.00 = no overhead).
"""

import argparse
import statistics
import time

import torch


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=None, help="default: the bundled model")
    ap.add_argument("--images", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()

    from diffusers import StableDiffusionPipeline

    from brushwork.engine.api import Studio
    from brushwork.engine.params import GenerationParams
    from brushwork.engine.samplers import make_scheduler

    studio = Studio()
    loaded = studio.model(args.model)
    pipe = StableDiffusionPipeline.from_pretrained(str(loaded.path), torch_dtype=torch.float32, safety_checker=None)
    pipe.set_progress_bar_config(disable=True)
    defaults = GenerationParams()
    pipe.scheduler = make_scheduler(defaults.sampler, defaults.scheduler, pipe.scheduler.config)
    size = loaded.native_size
    prompts = ["a red circle above a blue square", "three green stars", "a small yellow heart on the left",
               "a cross and a triangle on a white background"]
    ours, theirs = [], []
    for r in range(args.repeats):
        for i in range(args.images):
            p = prompts[i % len(prompts)]
            t = time.perf_counter()
            studio.generate(GenerationParams.build(prompt=p, seed=i, model=args.model))
            ours.append(time.perf_counter() - t)
            t = time.perf_counter()
            pipe(p, num_inference_steps=defaults.steps, guidance_scale=defaults.cfg_scale, height=size, width=size,
                 generator=torch.Generator().manual_seed(i))
            theirs.append(time.perf_counter() - t)
    a, b = statistics.median(ours), statistics.median(theirs)
    print(f"model {loaded.name} at {size}x{size}, {defaults.steps} steps, {defaults.sampler} {defaults.scheduler}, "
          f"CFG {defaults.cfg_scale:g}, {torch.get_num_threads()} threads")
    print(f"brushwork: {a:.3f} s/image (median of {len(ours)})")
    print(f"diffusers StableDiffusionPipeline: {b:.3f} s/image (median of {len(theirs)})")
    print(f"ratio brushwork/diffusers: {a / b:.2f}")


if __name__ == "__main__":
    main()
