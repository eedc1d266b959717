"""Random LoRA and embedding files at the real key names of a given pipeline (kohya, peft), for tests."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import save_file

UNET_TARGETS = ("attn1.to_q", "attn1.to_k", "attn1.to_v", "attn1.to_out.0", "attn2.to_q", "attn2.to_k",
                "attn2.to_v", "attn2.to_out.0")
TE_TARGETS = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.out_proj")


def _modules(module, targets):
    return [(n, m) for n, m in module.named_modules() if n.endswith(targets)]


def kohya_lora(pipe, path: Path, *, rank: int = 4, alpha: float = 2.0, seed: int = 0, scale: float = 0.3,
               text_encoder: bool = True, conv: bool = False, metadata: dict | None = None) -> Path:
    """A kohya/A1111 LoRA (``lora_unet_…``, ``lora_te_text_model_…``, ``alpha``) for ``pipe``'s modules; with
    ``conv``, LoCon layers on the resnets' 3×3 convolutions too."""
    g = torch.Generator().manual_seed(seed)
    sd = {}
    pairs = [("lora_unet_", n, m) for n, m in _modules(pipe.unet, UNET_TARGETS)]
    if text_encoder:
        pairs += [("lora_te_text_model_", n, m) for n, m in _modules(pipe.text_encoder, TE_TARGETS)]
    if conv:
        pairs += [("lora_unet_", n, m) for n, m in pipe.unet.named_modules() if n.endswith(("conv1", "conv2"))
                  and "resnets" in n]
    for prefix, name, mod in pairs:
        key = prefix + name.replace(".", "_")
        if isinstance(mod, torch.nn.Conv2d):
            down = torch.randn(rank, mod.in_channels, *mod.kernel_size, generator=g) * scale
            up = torch.randn(mod.out_channels, rank, 1, 1, generator=g) * scale
        else:
            down = torch.randn(rank, mod.in_features, generator=g) * scale
            up = torch.randn(mod.out_features, rank, generator=g) * scale
        sd[f"{key}.lora_down.weight"], sd[f"{key}.lora_up.weight"] = down, up
        sd[f"{key}.alpha"] = torch.tensor(alpha)
    save_file(sd, str(path), metadata=metadata)
    return path


def peft_lora(pipe, path: Path, *, rank: int = 4, seed: int = 0, scale: float = 0.3, old: bool = False) -> Path:
    """A diffusers/peft LoRA (``unet.….lora_A.weight`` / ``lora_B``), as ``save_lora_weights`` writes it; with
    ``old``, diffusers' earlier layout (``unet.….lora.down.weight`` / ``lora.up``)."""
    g = torch.Generator().manual_seed(seed)
    sd = {}
    a, b = ("lora.down", "lora.up") if old else ("lora_A", "lora_B")
    for name, mod in _modules(pipe.unet, UNET_TARGETS):
        sd[f"unet.{name}.{a}.weight"] = torch.randn(rank, mod.in_features, generator=g) * scale
        sd[f"unet.{name}.{b}.weight"] = torch.randn(mod.out_features, rank, generator=g) * scale
    save_file(sd, str(path))
    return path


def embedding(pipe, path: Path, *, vectors: int = 2, seed: int = 0, a1111: bool = True) -> Path:
    """A textual-inversion file: A1111's ``emb_params`` [vectors, width], or diffusers' one-key layout."""
    g = torch.Generator().manual_seed(seed)
    width = pipe.text_encoder.get_input_embeddings().weight.shape[1]
    emb = torch.randn(vectors, width, generator=g)
    save_file({"emb_params": emb} if a1111 else {path.stem: emb}, str(path))
    return path
