"""What a set of tensors *is* (checkpoint, VAE, LoRA, embedding, ControlNet), from names and shapes.

``classify(tensors)`` takes ``{name: {"dtype": str, "shape": tuple}}`` (a safetensors header is
enough, so no weight is read) and returns ``(kind, base, architecture)``:

- kind: ``sd1`` / ``sd2`` / ``sdxl`` (full checkpoints), ``vae``, ``lora``, ``textual-inversion``,
  ``controlnet`` or ``unknown``;
- base: the architecture a non-checkpoint belongs to (``sd1``/``sd2``/``sdxl``) where the shapes
  tell, else ``None``; for checkpoints it equals ``kind``;
- architecture: cross-attention width, parameter count, dtype, layout details.

The cross-attention width decides between SD1 (768), SD2 (1024) and SDXL (2048), as diffusers'
``infer_diffusers_model_type`` does; when the width is none of those (tiny test models) the text
encoder's layout decides (CLIP ``cond_stage_model.transformer`` = SD1, OpenCLIP
``cond_stage_model.model`` = SD2, ``conditioner.embedders`` = SDXL).
"""

from __future__ import annotations

import re
from collections import Counter

WIDTH_TO_BASE = {768: "sd1", 1024: "sd2", 2048: "sdxl"}
UNET = "model.diffusion_model."
_ATTN2_K = re.compile(r"attn2[._]to_k(\.weight|\.lora_down\.weight|\.lora_A\.weight|\.lora\.down\.weight|_lora_down\.weight|\.lora_A\.default\.weight)?$")


def classify(tensors: dict[str, dict]) -> tuple[str, str | None, dict]:
    keys = list(tensors)
    arch = _summary(tensors)
    if not keys:
        return "unknown", None, arch
    if any(k.startswith(UNET) for k in keys):
        return _checkpoint(tensors, arch)
    if any(k.startswith("control_model.") for k in keys) or "controlnet_cond_embedding.conv_in.weight" in tensors:
        return _controlnet(tensors, arch)
    if any(_is_lora_key(k) for k in keys):
        return _lora(tensors, arch)
    ti = _textual_inversion(tensors, arch)
    if ti:
        return ti
    if _is_vae(keys):
        return _vae(tensors, arch)
    return "unknown", None, arch


# ---------------------------------------------------------------- pieces


def _summary(tensors: dict[str, dict]) -> dict:
    params = 0
    by_dtype: Counter = Counter()
    for info in tensors.values():
        n = 1
        for d in info["shape"]:
            n *= d
        params += n
        by_dtype[info["dtype"]] += n
    dtype = by_dtype.most_common(1)[0][0] if by_dtype else None
    return {"parameters": params, "tensors": len(tensors), "dtype": dtype, "dtypes": dict(by_dtype)}


def _width(tensors: dict[str, dict], prefix: str = "") -> int | None:
    for k, info in tensors.items():
        if k.startswith(prefix) and _ATTN2_K.search(k) and len(info["shape"]) >= 2:
            return int(info["shape"][1])
    return None


def _checkpoint(tensors: dict[str, dict], arch: dict) -> tuple[str, str | None, dict]:
    keys = tensors.keys()
    width = _width(tensors, UNET)
    if any(k.startswith("conditioner.embedders.") for k in keys):
        by_layout = "sdxl"
        if not any(k.startswith("conditioner.embedders.1.") for k in keys):
            arch["variant"] = "refiner"
    elif any(k.startswith("cond_stage_model.model.") for k in keys):
        by_layout = "sd2"
    elif any(k.startswith("cond_stage_model.transformer.") for k in keys):
        by_layout = "sd1"
    elif f"{UNET}label_emb.0.0.weight" in keys:
        by_layout = "sdxl"
    else:
        by_layout = "sd1"
    kind = WIDTH_TO_BASE.get(width, by_layout) if "variant" not in arch else "sdxl"
    conv_in = tensors.get(f"{UNET}input_blocks.0.0.weight")
    in_ch = int(conv_in["shape"][1]) if conv_in else None
    arch.setdefault("variant", {9: "inpainting", 8: "instruct-pix2pix"}.get(in_ch, "base"))
    components = ["unet"]
    if any(k.startswith("first_stage_model.") for k in keys):
        components.append("vae")
    if any(k.startswith(("cond_stage_model.", "conditioner.embedders.")) for k in keys):
        components.append("text_encoder")
    arch.update(
        {
            "layout": "original (CompVis/A1111)",
            "cross_attention_dim": width,
            "unet_in_channels": in_ch,
            "components": components,
            "ema": any(k.startswith("model_ema.") for k in keys),
        }
    )
    return kind, kind, arch


def _controlnet(tensors: dict[str, dict], arch: dict) -> tuple[str, str | None, dict]:
    ldm = any(k.startswith("control_model.") for k in tensors)
    width = _width(tensors)
    if "add_embedding.linear_1.weight" in tensors:
        base = "sdxl"
    else:
        base = WIDTH_TO_BASE.get(width)
    arch.update({"layout": "original" if ldm else "diffusers", "cross_attention_dim": width})
    return "controlnet", base, arch


def _is_lora_key(k: str) -> bool:
    return (
        ".lora_down." in k or ".lora_up." in k or ".lora_A." in k or ".lora_B." in k
        or ".lora.down." in k or ".lora.up." in k or ".hada_w1_a" in k or ".lokr_w1" in k
        or k.startswith(("lora_unet_", "lora_te_", "lora_te1_", "lora_te2_"))
    )


def _lora(tensors: dict[str, dict], arch: dict) -> tuple[str, str | None, dict]:
    keys = list(tensors)
    if any(".hada_w1_a" in k or ".lokr_w1" in k for k in keys):
        style = "lycoris"
    elif any(k.startswith(("lora_unet_", "lora_te")) for k in keys):
        style = "kohya"
    elif any(".lora_A." in k or ".lora_B." in k for k in keys):
        style = "peft"
    else:
        style = "diffusers"
    downs = [v["shape"] for k, v in tensors.items() if (".lora_down." in k or ".lora_A." in k or ".lora.down." in k)]
    rank = int(downs[0][0]) if downs else None
    width = _width(tensors)
    te2 = any(k.startswith(("lora_te2_", "text_encoder_2.", "te2.")) for k in keys)
    unet_xl = any("label_emb" in k or "add_embedding" in k for k in keys)
    base = "sdxl" if te2 or unet_xl else WIDTH_TO_BASE.get(width)
    targets = sorted(
        {
            "unet" if k.startswith(("lora_unet_", "unet.")) else "text_encoder_2" if k.startswith(("lora_te2_", "text_encoder_2."))
            else "text_encoder" if k.startswith(("lora_te", "text_encoder.")) else "unet"
            for k in keys
            if _is_lora_key(k)
        }
    )
    modules = {k.split(".lora")[0].split(".hada")[0].split(".lokr")[0] for k in keys if _is_lora_key(k)}
    arch.update({"style": style, "rank": rank, "cross_attention_dim": width, "targets": targets, "modules": len(modules)})
    bundled = sorted({k.split(".", 2)[1] for k in keys if k.startswith("bundle_emb.") and k.count(".") >= 2})
    if bundled:  # kohya/A1111 bundled embeddings: words whose token embeddings the LoRA trained
        arch["embeddings"] = bundled
    return "lora", base, arch


def _textual_inversion(tensors: dict[str, dict], arch: dict) -> tuple[str, str | None, dict] | None:
    keys = set(tensors)
    vectors = None
    if keys == {"emb_params"}:
        shape = tensors["emb_params"]["shape"]
        widths = {"emb_params": shape[-1]}
    elif keys >= {"clip_l", "clip_g"} and keys <= {"clip_l", "clip_g"}:
        widths = {k: tensors[k]["shape"][-1] for k in ("clip_l", "clip_g")}
        shape = tensors["clip_l"]["shape"]
        base = "sdxl"
        vectors = shape[0] if len(shape) == 2 else 1
        arch.update({"vectors": vectors, "widths": widths, "style": "sdxl (clip_l + clip_g)"})
        return "textual-inversion", base, arch
    elif any(k.startswith("string_to_param.") for k in keys):
        key = next(k for k in keys if k.startswith("string_to_param."))
        shape = tensors[key]["shape"]
        widths = {key: shape[-1]}
    elif len(keys) == 1 and len(tensors[next(iter(keys))]["shape"]) in (1, 2):
        key = next(iter(keys))
        shape = tensors[key]["shape"]
        if shape[-1] > 4096:
            return None
        widths = {key: shape[-1]}
    else:
        return None
    width = int(shape[-1])
    vectors = shape[0] if len(shape) == 2 else 1
    base = {768: "sd1", 1024: "sd2"}.get(width)
    arch.update({"vectors": int(vectors), "width": width, "style": "a1111" if "emb_params" in keys or
                 any(k.startswith("string_to_param.") for k in keys) else "diffusers"})
    return "textual-inversion", base, arch


def _is_vae(keys: list[str]) -> bool:
    ks = set(keys)
    for pre in ("", "first_stage_model.", "vae."):
        if f"{pre}encoder.conv_in.weight" in ks and f"{pre}decoder.conv_out.weight" in ks:
            return True
    return False


def _vae(tensors: dict[str, dict], arch: dict) -> tuple[str, str | None, dict]:
    keys = list(tensors)
    diffusers_layout = any(".down_blocks." in k or k.startswith("encoder.down_blocks") for k in keys)
    latent = None
    for k, info in tensors.items():
        if k.endswith("post_quant_conv.weight"):
            latent = int(info["shape"][1])
    arch.update({"layout": "diffusers" if diffusers_layout else "original", "latent_channels": latent})
    return "vae", None, arch


# ---------------------------------------------------------------- diffusers' opinion

DIFFUSERS_TO_KIND = {"v1": "sd1", "v2": "sd2", "xl_base": "sdxl", "xl_refiner": "sdxl", "controlnet": "controlnet",
                     "controlnet_xl_small": "controlnet", "controlnet_xl_mid": "controlnet",
                     "controlnet_xl_large": "controlnet", "inpainting": "sd1", "inpainting_v2": "sd2",
                     "xl_inpaint": "sdxl"}


def diffusers_model_type(tensors: dict[str, dict]) -> str:
    """diffusers' own single-file guess (``infer_diffusers_model_type``), on shapes only.

    diffusers answers ``v1`` for anything it does not recognise, so this only means something
    for full checkpoints and ControlNets. Imports diffusers: use in tests and diagnostics.
    """
    import torch
    from diffusers.loaders.single_file_utils import infer_diffusers_model_type

    fake = {k: torch.empty(v["shape"], device="meta") for k, v in tensors.items()}
    return infer_diffusers_model_type(fake)
