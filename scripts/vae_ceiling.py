"""The VAE's ceiling on adherence: judge ground-truth renders after an encode/decode round trip.

    .venv/bin/python scripts/vae_ceiling.py --vae runs/default/vae/vae [--images-per-prompt 2] [--limit N]

A text-to-image model can score no better than its VAE lets it: if a perfect latent of "a small
star" decodes to a pentagon, the judge fails it whatever the UNet does. This prints, per benchmark
category, the share of round-tripped ground-truth renders that still pass, at the VAE's own size.
Run it before spending hours on a UNet.
"""

import argparse
import json

import numpy as np
import torch


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--vae", required=True, help="a diffusers AutoencoderKL folder")
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--images-per-prompt", type=int, default=2)
    ap.add_argument("--limit", type=int, default=None)
    args = ap.parse_args()

    from diffusers import AutoencoderKL

    from brushwork.evaluate.adherence import renderer_generate, run_adherence
    from brushwork.evaluate.prompt_sets import load_prompts
    from brushwork.train.vae import to_tensor

    vae = AutoencoderKL.from_pretrained(args.vae).eval()
    truth = renderer_generate(args.size)

    @torch.no_grad()
    def round_trip(bp, seed, n):
        x = to_tensor(np.stack(truth(bp, seed, n)))
        y = vae.decode(vae.encode(x).latent_dist.mode()).sample.clamp(-1, 1)
        return list(((y + 1) * 127.5).round().byte().permute(0, 2, 3, 1).numpy())

    prompts = load_prompts()[: args.limit]
    rep = run_adherence(prompts, round_trip, images_per_prompt=args.images_per_prompt, seed=0)
    print(json.dumps({"vae": args.vae, "images_per_prompt": args.images_per_prompt, "overall": rep["overall"],
                      "categories": rep["categories"], "unseen": rep["unseen"]}, indent=1))


if __name__ == "__main__":
    main()
