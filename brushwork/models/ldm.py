"""The original (CompVis / A1111 / SGM) single-file key layout, in both directions.

Reading (original → diffusers) reuses diffusers' own converters from
``diffusers.loaders.single_file_utils``, so brushwork loads a checkpoint exactly as diffusers
would. Writing (diffusers → original) is the inverse, used by ``models convert``, by the tests to
make tiny single-file fixtures and by ``benchmarks/load_real_size.py``; a test checks that
``from_ldm(to_ldm(x)) == x`` for every component.
"""

from __future__ import annotations

import re
from typing import Any

UNET_PREFIX = "model.diffusion_model."
VAE_PREFIX = "first_stage_model."
CLIP_PREFIX = {"sd1": "cond_stage_model.transformer.", "sdxl": "conditioner.embedders.0.transformer."}
OPENCLIP_PREFIX = {"sd2": "cond_stage_model.model.", "sdxl": "conditioner.embedders.1.model."}

_RESNET = [("norm1", "in_layers.0"), ("conv1", "in_layers.2"), ("norm2", "out_layers.0"),
           ("conv2", "out_layers.3"), ("time_emb_proj", "emb_layers.1"), ("conv_shortcut", "skip_connection")]


# ---------------------------------------------------------------- original -> diffusers


def unet_from_ldm(checkpoint: dict, config: dict) -> dict:
    from diffusers.loaders.single_file_utils import convert_ldm_unet_checkpoint

    return convert_ldm_unet_checkpoint(checkpoint, config=dict(config))


def vae_from_ldm(checkpoint: dict, config: dict) -> dict:
    from diffusers.loaders.single_file_utils import convert_ldm_vae_checkpoint

    return convert_ldm_vae_checkpoint(checkpoint, dict(config))


def clip_from_ldm(checkpoint: dict, prefix: str, model: Any) -> dict:
    """CLIP ViT-L text encoder (SD1, SDXL's first) from ``prefix`` + ``text_model.*`` keys."""
    wrapped = hasattr(model, "text_model")
    out = {}
    for k, v in checkpoint.items():
        if k.startswith(prefix) and not k.endswith("position_ids"):
            key = k[len(prefix):]
            out[key if wrapped else key.removeprefix("text_model.")] = v
    return out


def openclip_from_ldm(checkpoint: dict, prefix: str, model: Any) -> dict:
    """OpenCLIP text encoder (SD2, SDXL's second), via diffusers' converter."""
    from diffusers.loaders.single_file_utils import convert_open_clip_checkpoint

    converted = convert_open_clip_checkpoint(model, checkpoint, prefix=prefix)
    if not hasattr(model, "text_model"):
        converted = {k.removeprefix("text_model."): v for k, v in converted.items()}
        converted.pop("text_projection.weight", None)
    return converted


# ---------------------------------------------------------------- diffusers -> original


def unet_to_ldm(sd: dict, config: dict, prefix: str = UNET_PREFIX) -> dict:
    lpb = int(config["layers_per_block"])
    up_has_attn = ["CrossAttn" in t for t in config["up_block_types"]]
    fixed = {
        "time_embedding.linear_1": "time_embed.0", "time_embedding.linear_2": "time_embed.2",
        "conv_in": "input_blocks.0.0", "conv_norm_out": "out.0", "conv_out": "out.2",
        "add_embedding.linear_1": "label_emb.0.0", "add_embedding.linear_2": "label_emb.0.2",
    }
    out = {}
    for key, value in sd.items():
        head, _, leaf = key.rpartition(".")
        if head in fixed:
            out[f"{prefix}{fixed[head]}.{leaf}"] = value
            continue
        m = re.match(r"(down|up)_blocks\.(\d+)\.(resnets|attentions|downsamplers|upsamplers)\.(\d+)\.(.*)", key)
        if m:
            side, b, part, j, rest = m.group(1), int(m.group(2)), m.group(3), int(m.group(4)), m.group(5)
            if side == "down":
                if part == "downsamplers":
                    new = f"input_blocks.{(b + 1) * (lpb + 1)}.0.op.{rest.removeprefix('conv.')}"
                else:
                    new = f"input_blocks.{b * (lpb + 1) + j + 1}.{0 if part == 'resnets' else 1}.{_res(rest, part)}"
            else:
                if part == "upsamplers":
                    new = f"output_blocks.{b * (lpb + 1) + lpb}.{2 if up_has_attn[b] else 1}.{rest}"
                else:
                    new = f"output_blocks.{b * (lpb + 1) + j}.{0 if part == 'resnets' else 1}.{_res(rest, part)}"
            out[prefix + new] = value
            continue
        m = re.match(r"mid_block\.(resnets|attentions)\.(\d+)\.(.*)", key)
        if m:
            part, j, rest = m.group(1), int(m.group(2)), m.group(3)
            idx = 2 * j if part == "resnets" else 1
            out[f"{prefix}middle_block.{idx}.{_res(rest, part)}"] = value
            continue
        raise ValueError(f"unexpected UNet key {key!r}")
    return out


def _res(rest: str, part: str) -> str:
    if part != "resnets":
        return rest
    first, _, tail = rest.partition(".")
    for new, old in _RESNET:
        if first == new:
            return f"{old}.{tail}"
    return rest


def vae_to_ldm(sd: dict, config: dict, prefix: str = VAE_PREFIX) -> dict:
    n = len(config["up_block_types"])
    out = {}
    for key, value in sd.items():
        new = key
        m = re.match(r"(encoder|decoder)\.(down|up)_blocks\.(\d+)\.(resnets|downsamplers|upsamplers)\.(\d+)\.(.*)", key)
        if m:
            side, _, i, part, j, rest = m.groups()
            i, j = int(i), int(j)
            level = f"down.{i}" if side == "encoder" else f"up.{n - 1 - i}"
            if part == "resnets":
                new = f"{side}.{level}.block.{j}.{rest.replace('conv_shortcut', 'nin_shortcut')}"
            else:
                new = f"{side}.{level}.{'downsample' if part == 'downsamplers' else 'upsample'}.{rest}"
        elif ".mid_block.resnets." in key:
            side, _, rest = key.partition(".mid_block.resnets.")
            j, _, rest = rest.partition(".")
            new = f"{side}.mid.block_{int(j) + 1}.{rest.replace('conv_shortcut', 'nin_shortcut')}"
        elif ".mid_block.attentions.0." in key:
            side, _, rest = key.partition(".mid_block.attentions.0.")
            names = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out"}
            layer, _, leaf = rest.rpartition(".")
            new = f"{side}.mid.attn_1.{names[layer]}.{leaf}"
            if leaf == "weight" and layer != "group_norm":
                value = value[:, :, None, None]
        elif key.endswith(("conv_norm_out.weight", "conv_norm_out.bias")):
            new = key.replace("conv_norm_out", "norm_out")
        out[prefix + new] = value
    return out


def clip_to_ldm(sd: dict, prefix: str) -> dict:
    return {f"{prefix}{k if k.startswith('text_model.') else 'text_model.' + k}": v for k, v in sd.items()}


def openclip_to_ldm(sd: dict, prefix: str) -> dict:
    import torch

    sd = {k.removeprefix("text_model."): v for k, v in sd.items()}
    out: dict[str, Any] = {}
    qkv: dict[str, dict[str, Any]] = {}
    top = {"embeddings.token_embedding.weight": "token_embedding.weight",
           "embeddings.position_embedding.weight": "positional_embedding",
           "final_layer_norm.weight": "ln_final.weight", "final_layer_norm.bias": "ln_final.bias"}
    for key, value in sd.items():
        if key in top:
            out[prefix + top[key]] = value
        elif key == "text_projection.weight":
            out[prefix + "text_projection"] = value.T.contiguous()
        elif key.startswith("encoder.layers."):
            rest = key.removeprefix("encoder.layers.")
            m = re.match(r"(\d+)\.self_attn\.([qkv])_proj\.(weight|bias)", rest)
            if m:
                qkv.setdefault(f"{m.group(1)}.{m.group(3)}", {})[m.group(2)] = value
                continue
            rest = (rest.replace("self_attn", "attn").replace("layer_norm1", "ln_1").replace("layer_norm2", "ln_2")
                    .replace("mlp.fc1", "mlp.c_fc").replace("mlp.fc2", "mlp.c_proj"))
            out[f"{prefix}transformer.resblocks.{rest}"] = value
        elif key.endswith("position_ids"):
            continue
        else:
            raise ValueError(f"unexpected OpenCLIP key {key!r}")
    for idx, parts in qkv.items():
        layer, leaf = idx.split(".")
        out[f"{prefix}transformer.resblocks.{layer}.attn.in_proj_{leaf}"] = torch.cat([parts["q"], parts["k"], parts["v"]])
    return out


def pipeline_to_ldm(pipe: Any, kind: str) -> dict:
    """A whole SD1/SD2/SDXL pipeline as one original-layout state dict."""
    out = unet_to_ldm(pipe.unet.state_dict(), pipe.unet.config)
    out.update(vae_to_ldm(pipe.vae.state_dict(), pipe.vae.config))
    te = _no_buffers(pipe.text_encoder.state_dict())
    if kind == "sd2":
        out.update(openclip_to_ldm(te, OPENCLIP_PREFIX["sd2"]))
    else:
        out.update(clip_to_ldm(te, CLIP_PREFIX[kind]))
    if kind == "sdxl":
        out.update(openclip_to_ldm(_no_buffers(pipe.text_encoder_2.state_dict()), OPENCLIP_PREFIX["sdxl"]))
    return out


def _no_buffers(sd: dict) -> dict:
    return {k: v for k, v in sd.items() if not k.endswith("position_ids")}
