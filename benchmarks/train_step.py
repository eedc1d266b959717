"""Seconds per training step of the default recipe's UNet + text encoder: fp32 vs bf16 autocast.

    .venv/bin/python benchmarks/train_step.py [--batch 64] [--steps 8] [--repeats 2]

One step is what ``train.diffusion.train_unet`` does: text encoder and UNet forward (the
recipe's configs, 8×16×16 latents, 77 tokens), loss, backward, clipping, AdamW. Random data:
the speed does not depend on it. The two precisions alternate so that machine noise hits both;
the ratio fp32/bf16 is the figure to read (above 1: bf16 autocast helps on this CPU, which is
what ``cpu_has_fast_bf16`` below predicts from the CPU's flags). ``train unet --bf16`` turns it on;
the recipe leaves it off (recipe v4, with bf16 among its changes, trained a much worse model: README).
"""

import argparse
import statistics
import time

import torch


def cpu_has_fast_bf16() -> bool:
    """True where the CPU does bf16 matrix maths natively (AVX512-BF16 or AMX); elsewhere bf16 is emulated."""
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, name, lambda: False)() for name in checks)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()

    from diffusers import UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from brushwork.train.diffusion import DEFAULT_TEXT_CONFIG, DEFAULT_UNET_CONFIG

    torch.manual_seed(0)
    unet = UNet2DConditionModel(**{**DEFAULT_UNET_CONFIG, "in_channels": 8, "out_channels": 8})
    te = CLIPTextModel(CLIPTextConfig(vocab_size=750, bos_token_id=0, eos_token_id=1, pad_token_id=1,
                                      **DEFAULT_TEXT_CONFIG))
    params = list(unet.parameters()) + list(te.parameters())
    opt = torch.optim.AdamW(params, lr=1e-4)
    b = args.batch

    def step(bf16: bool):
        lat, tok, t = torch.randn(b, 8, 16, 16), torch.randint(0, 750, (b, 77)), torch.randint(0, 1000, (b,))
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            pred = unet(lat, t, te(tok).last_hidden_state).sample.float()
        loss = (pred - lat).pow(2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()

    times = {False: [], True: []}
    for bf16 in (False, True):
        for _ in range(2):
            step(bf16)  # warm-up: oneDNN picks its kernels
    for _ in range(args.repeats):
        for bf16 in (False, True):
            t0 = time.perf_counter()
            for _ in range(args.steps):
                step(bf16)
            times[bf16].append((time.perf_counter() - t0) / args.steps)
    fp32, bf16 = statistics.median(times[False]), statistics.median(times[True])
    print(f"UNet {sum(p.numel() for p in unet.parameters()) / 1e6:.2f}M params, batch {b}, "
          f"{torch.get_num_threads()} threads; cpu_has_fast_bf16: {cpu_has_fast_bf16()}")
    print(f"fp32  {fp32:.3f} s/step  ({3600 / fp32:.0f} steps/h)")
    print(f"bf16  {bf16:.3f} s/step  ({3600 / bf16:.0f} steps/h)")
    print(f"ratio fp32/bf16: {fp32 / bf16:.2f}")


if __name__ == "__main__":
    main()
