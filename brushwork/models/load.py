"""``load_pipeline``: a registry name, a diffusers folder or a single file → a diffusers pipeline.

Nothing here touches the network. Single files (original CompVis/A1111 layout) are assembled
component by component from the configs shipped in ``brushwork/models/configs/<kind>/`` (or a
folder of the same layout given as ``config=``): each module is built on the ``meta`` device and
the checkpoint's memory-mapped tensors are *assigned* into it, so a checkpoint in the target
dtype is not held twice in RAM. Diffusers folders load through the component classes'
``from_pretrained`` with ``local_files_only=True`` and, unless pickles are allowed,
``use_safetensors=True``. Pickles are refused unless ``allow_pickle=True``, and then are read with
``torch.load(weights_only=True)`` only.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch

from brushwork.errors import InvalidParameter, ModelFileError
from brushwork.models import ldm
from brushwork.models.formats import Sniffed, component_weight_files, pickle_refusal, read_json, sniff
from brushwork.models.kinds import classify
from brushwork.models.licenses import check_commercial, normalize_license
from brushwork.models.modelcard import read_card
from brushwork.models.registry import Registry, resolve_model
from brushwork.models.tensors import read_state_dict, shapes_of
from brushwork.paths import package_data

CONFIGS = package_data("models", "configs")
DTYPES = {"fp32": torch.float32, "float32": torch.float32, "fp16": torch.float16, "float16": torch.float16,
          "bf16": torch.bfloat16, "bfloat16": torch.bfloat16}
CHECKPOINT_KINDS = ("sd1", "sd2", "sdxl")


@dataclass
class LoadedModel:
    """A loaded pipeline and what the rest of brushwork needs to know about it.

    Attributes:
        pipe: ``StableDiffusionPipeline`` (sd1, sd2, the bundled model) or ``StableDiffusionXLPipeline``.
        name: display name (registry name, or file/folder name) for PNG metadata.
        short_hash: A1111 short hash (first 10 hex of sha256), ``None`` when not computed.
        sha256: full hash (of the file, or of the folder manifest; see ``models.inspect``).
        kind: sd1 / sd2 / sdxl.
        license: licence identifier (see ``models.licenses``).
        native_size: the side the model was trained at, in pixels.
        max_size: the largest side it is meant to generate.
        prediction_type: epsilon / v_prediction, as set on the scheduler.
        path: where the weights came from.
        vae: display name of an overriding VAE, if any.
        networks: the LoRA adapters and embeddings loaded into ``pipe`` (kept by ``engine.networks``).
    """

    pipe: Any
    name: str
    short_hash: str | None
    sha256: str | None
    kind: str
    license: str
    native_size: int
    max_size: int
    prediction_type: str
    path: Path
    vae: str | None = None
    networks: dict = field(default_factory=dict)


def parse_dtype(dtype: torch.dtype | str) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        if dtype not in (torch.float32, torch.float16, torch.bfloat16):
            raise InvalidParameter(f"dtype must be fp32, fp16 or bf16, not {dtype}")
        return dtype
    try:
        return DTYPES[str(dtype).lower()]
    except KeyError:
        raise InvalidParameter(f"dtype must be fp32, fp16 or bf16, not {dtype!r}") from None


def load_pipeline(
    model_ref: str | None,
    *,
    dtype: torch.dtype | str = torch.float32,
    device: str | torch.device = "cpu",
    vae: str | None = None,
    allow_pickle: bool = False,
    home: str | os.PathLike | None = None,
    config: str | os.PathLike | None = None,
    commercial: bool = False,
    allow_paths: bool = True,
    hash: bool = True,
) -> LoadedModel:
    """Load a model for generation, offline.

    Args:
        model_ref: registry name, path to a diffusers folder, or path to a single file; ``None``
            means the bundled default model.
        dtype: ``torch.float32`` (default), ``torch.float16`` or ``torch.bfloat16`` (or "fp16"…).
        device: where the pipeline is moved after loading. Default ``"cpu"``.
        vae: optional VAE to use instead of the model's own (registry name, file or folder).
        allow_pickle: read pickled weights with ``torch.load(weights_only=True)``; default refuses.
        home: the brushwork home holding the registry (default ``brushwork_home()``).
        config: a folder laid out like ``brushwork/models/configs/sd1`` to use instead of the
            shipped configs for a single file (checkpoints of unusual shapes, tiny test models).
        commercial: refuse before loading when the licence does not permit commercial use.
        allow_paths: accept filesystem paths (local CLI/API); the server passes ``False`` so only
            names that resolve inside the model home are accepted.
        hash: compute (or fetch from the registry's cache) the sha256 for PNG metadata.
    """
    dtype = parse_dtype(dtype)
    with Registry(home) as reg:
        res = resolve_model(model_ref, registry=reg, allow_paths=allow_paths)
        card = res.entry.card if res.entry else read_card(res.path)
        license_id = res.entry.license if res.entry else normalize_license(card.get("license"))
        if commercial:
            check_commercial(res.name, license_id)
        s = sniff(res.path)
        single = s.format != "diffusers-folder"
        if not single:
            pipe, kind, prediction = _load_folder(res.path, dtype=dtype, allow_pickle=allow_pickle, card=card)
        else:
            pipe, kind, prediction = _load_single_file(s, dtype=dtype, allow_pickle=allow_pickle, config=config,
                                                       override_vae=vae is not None, card=card)
        vae_name = None
        if vae is not None:
            vres = resolve_model(vae, registry=reg, allow_paths=allow_paths)
            pipe.vae = load_vae(vres.path, like=pipe.vae, dtype=dtype, allow_pickle=allow_pickle)
            vae_name = vres.name
        digest = reg.file_hash(res.path) if hash else (res.entry.sha256 if res.entry else None)
    native, max_size = _sizes(pipe, kind, card, prediction, shipped=single and config is None)
    if str(device) != "cpu":
        pipe.to(device)
    return LoadedModel(pipe=pipe, name=res.name, short_hash=digest[:10] if digest else None, sha256=digest,
                       kind=kind, license=license_id, native_size=native, max_size=max_size,
                       prediction_type=prediction, path=res.path, vae=vae_name)


# ---------------------------------------------------------------- single files


def _load_single_file(s: Sniffed, *, dtype, allow_pickle, config, override_vae, card) -> tuple[Any, str, str]:
    tensors, extras = read_state_dict(s, allow_pickle=allow_pickle)
    kind, _base, arch = classify(shapes_of(tensors))
    name = s.path.name
    if kind not in CHECKPOINT_KINDS:
        what = {"textual-inversion": "a textual-inversion embedding"}.get(kind, f"a {kind}")
        raise ModelFileError(f"{name} is {what}, not a full SD1/SD2/SDXL checkpoint; it cannot be loaded as a model")
    variant = arch.get("variant", "base")
    if variant not in ("base", "inpainting"):
        raise ModelFileError(f"{name} is an {kind} {variant} checkpoint; only text-to-image and inpainting "
                             "models load")
    comps = arch.get("components", [])
    if "text_encoder" not in comps:
        raise ModelFileError(f"{name}: this {kind} checkpoint has no text encoder weights; it cannot be loaded alone")
    if "vae" not in comps and not override_vae:
        raise ModelFileError(f"{name}: this {kind} checkpoint has no VAE weights; pass a VAE with --vae")
    cfg = Path(config) if config is not None else CONFIGS / kind
    if not (cfg / "unet" / "config.json").is_file():
        raise ModelFileError(f"{cfg}: not a component config folder (no unet/config.json)")
    return assemble_from_ldm(tensors, kind, cfg, dtype=dtype, extras=extras, card=card, has_vae="vae" in comps,
                             what=name, inpainting=variant == "inpainting")


def assemble_from_ldm(tensors: dict, kind: str, cfg: Path, *, dtype, extras=None, card=None, has_vae=True,
                      what="checkpoint", inpainting: bool = False) -> tuple[Any, str, str]:
    """Build a pipeline from an original-layout state dict and a component config folder (an inpainting
    checkpoint's UNet takes the mask and the masked image's latents as extra input channels)."""
    from diffusers import AutoencoderKL, StableDiffusionPipeline, StableDiffusionXLPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    unet_cfg = read_json(cfg / "unet" / "config.json")
    vae_cfg = read_json(cfg / "vae" / "config.json")
    if inpainting:
        unet_cfg = {**unet_cfg, "in_channels": 2 * vae_cfg.get("latent_channels", 4) + 1}
    unet = build_module(lambda: UNet2DConditionModel.from_config(unet_cfg), lambda m: ldm.unet_from_ldm(tensors, unet_cfg),
                        dtype, f"{what}: UNet")
    vae = None
    if has_vae:
        vae = build_module(lambda: AutoencoderKL.from_config(vae_cfg), lambda m: ldm.vae_from_ldm(tensors, vae_cfg),
                           dtype, f"{what}: VAE")
    te_cfg = CLIPTextConfig.from_dict(read_json(cfg / "text_encoder" / "config.json"))
    if kind == "sd2":
        te = build_module(lambda: CLIPTextModel(te_cfg),
                          lambda m: ldm.openclip_from_ldm(tensors, ldm.OPENCLIP_PREFIX["sd2"], m), dtype,
                          f"{what}: text encoder")
    else:
        te = build_module(lambda: CLIPTextModel(te_cfg), lambda m: ldm.clip_from_ldm(tensors, ldm.CLIP_PREFIX[kind], m),
                          dtype, f"{what}: text encoder")
    scheduler, prediction = _scheduler(cfg, kind, extras or {}, card or {})
    tokenizer = load_tokenizer(cfg / "tokenizer")
    if kind == "sdxl":
        te2_cfg = CLIPTextConfig.from_dict(read_json(cfg / "text_encoder_2" / "config.json"))
        te2 = build_module(lambda: CLIPTextModelWithProjection(te2_cfg),
                           lambda m: ldm.openclip_from_ldm(tensors, ldm.OPENCLIP_PREFIX["sdxl"], m), dtype,
                           f"{what}: second text encoder")
        pipe = StableDiffusionXLPipeline(vae=vae, text_encoder=te, text_encoder_2=te2, tokenizer=tokenizer,
                                         tokenizer_2=load_tokenizer(cfg / "tokenizer_2"), unet=unet,
                                         scheduler=scheduler, force_zeros_for_empty_prompt=True, add_watermarker=False)
    else:
        pipe = StableDiffusionPipeline(vae=vae, text_encoder=te, tokenizer=tokenizer, unet=unet, scheduler=scheduler,
                                       safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    return pipe, kind, prediction


def build_module(make, convert, dtype: torch.dtype, what: str):
    """Build ``make()`` on the meta device and assign the converted tensors into it.

    ``convert(model)`` returns the state dict in the module's own naming. Tensors already in
    ``dtype`` are used as they are (memory-mapped), never copied.
    """
    with torch.device("meta"):
        model = make()
    try:
        sd = convert(model)
    except (KeyError, ValueError, IndexError, RuntimeError) as exc:
        raise ModelFileError(f"{what}: the weights do not fit the expected layout ({exc})") from None
    sd = {k: (v.to(dtype) if v.is_floating_point() and v.dtype != dtype else v).contiguous() for k, v in sd.items()}
    try:
        missing, _unexpected = model.load_state_dict(sd, strict=False, assign=True)
    except RuntimeError as exc:
        first = " ".join(str(exc).split())[:300]
        raise ModelFileError(f"{what}: tensor shapes do not match the configured architecture ({first})") from None
    missing = [k for k in missing if not k.endswith("position_ids")]
    if missing:
        raise ModelFileError(
            f"{what}: {len(missing)} tensors are missing for the configured architecture (e.g. {missing[0]})"
        )
    for name, buf in list(model.named_buffers()):
        if buf.is_meta:
            owner_name, _, leaf = name.rpartition(".")
            owner = model.get_submodule(owner_name) if owner_name else model
            if leaf != "position_ids":
                raise ModelFileError(f"{what}: buffer {name} has no value in the checkpoint")
            owner.register_buffer(leaf, torch.arange(buf.shape[-1]).expand((1, -1)), persistent=False)
    model.requires_grad_(False)
    model.eval()
    return model


@lru_cache(maxsize=1)
def _clip_bpe() -> tuple[dict, tuple]:
    folder = CONFIGS / "clip_bpe"
    vocab = json.loads((folder / "vocab.json").read_text(encoding="utf-8"))
    lines = (folder / "merges.txt").read_text(encoding="utf-8").splitlines()
    merges = tuple(tuple(line.split()) for line in lines[1:] if line and not line.startswith("#"))
    return vocab, merges


def load_tokenizer(folder: Path):
    """A CLIP tokenizer: the folder's own vocabulary if it has one, else the shipped CLIP BPE."""
    from transformers import CLIPTokenizer

    if (folder / "vocab.json").is_file() or (folder / "tokenizer.json").is_file():
        return CLIPTokenizer.from_pretrained(str(folder), local_files_only=True)
    cfg = read_json(folder / "tokenizer_config.json")
    vocab, merges = _clip_bpe()
    return CLIPTokenizer(
        vocab=dict(vocab), merges=list(merges), bos_token=cfg.get("bos_token", "<|startoftext|>"),
        eos_token=cfg.get("eos_token", "<|endoftext|>"), unk_token=cfg.get("unk_token", "<|endoftext|>"),
        pad_token=cfg.get("pad_token", "<|endoftext|>"), model_max_length=int(cfg.get("model_max_length", 77)),
    )


def _scheduler(cfg: Path, kind: str, extras: dict, card: dict):
    import diffusers

    sc = read_json(cfg / "scheduler" / "scheduler_config.json")
    cls = getattr(diffusers, str(sc.get("_class_name")), None)
    if cls is None or not issubclass(cls, diffusers.SchedulerMixin):
        raise ModelFileError(f"{cfg}: unknown scheduler class {sc.get('_class_name')!r}")
    prediction = sc.get("prediction_type", "epsilon")
    if kind == "sd2" and extras.get("global_step") == 875000:
        prediction = "epsilon"  # SD 2.x 512-base; diffusers uses the same tell-tale
    override = (card.get("brushwork") or {}).get("prediction_type")
    if override in ("epsilon", "v_prediction"):
        prediction = override
    sc["prediction_type"] = prediction
    return cls.from_config(sc), prediction


# ---------------------------------------------------------------- folders


def _load_folder(path: Path, *, dtype, allow_pickle, card) -> tuple[Any, str, str]:
    from diffusers import AutoencoderKL, StableDiffusionPipeline, StableDiffusionXLPipeline, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    from brushwork.models.inspect import folder_kind

    if not (path / "model_index.json").is_file():
        raise ModelFileError(f"{path.name}/: a single component folder, not a pipeline (no model_index.json)")
    index = read_json(path / "model_index.json")
    unet_json = path / "unet" / "config.json"
    kind = folder_kind(path, index, read_json(unet_json) if unet_json.is_file() else {})
    if kind not in CHECKPOINT_KINDS:
        raise ModelFileError(f"{path.name}/: a {index.get('_class_name')} folder; only SD1/SD2/SDXL pipelines load")
    names = ["unet", "vae", "text_encoder"] + (["text_encoder_2"] if kind == "sdxl" else [])
    use_st: dict[str, bool] = {}
    for comp in names:
        sub = path / comp
        if not sub.is_dir():
            raise ModelFileError(f"{path.name}/: missing the {comp}/ component")
        files = component_weight_files(sub)
        if not files:
            raise ModelFileError(f"{path.name}/{comp}/: no weight files")
        use_st[comp] = True
        for f in files:
            s = sniff(f)
            if s.format == "pickle":
                if not allow_pickle:
                    raise pickle_refusal(s)
                use_st[comp] = False
            elif s.format != "safetensors":
                raise ModelFileError(f"{path.name}/{comp}/{f.name}: not a weight file (content is {s.format})")

    def opts(comp: str) -> dict:
        return {"subfolder": comp, "local_files_only": True, "use_safetensors": use_st[comp]}

    no_accel = {"low_cpu_mem_usage": False}  # accelerate is not a dependency; say so instead of warning
    try:
        unet = UNet2DConditionModel.from_pretrained(path, torch_dtype=dtype, **opts("unet"), **no_accel)
        vae = AutoencoderKL.from_pretrained(path, torch_dtype=dtype, **opts("vae"), **no_accel)
        te = CLIPTextModel.from_pretrained(path, dtype=dtype, **opts("text_encoder"))
        te2 = (CLIPTextModelWithProjection.from_pretrained(path, dtype=dtype, **opts("text_encoder_2"))
               if kind == "sdxl" else None)
    except (OSError, ValueError, RuntimeError) as exc:
        first = " ".join(str(exc).split())[:300]
        raise ModelFileError(f"{path.name}/: could not load its components ({first})") from None
    for m in (unet, vae, te, te2):
        if m is not None:
            m.requires_grad_(False).eval()
    tok_dir = path / "tokenizer" if (path / "tokenizer").is_dir() else CONFIGS / kind / "tokenizer"
    scheduler, prediction = _scheduler(path if (path / "scheduler").is_dir() else CONFIGS / kind, kind, {}, card)
    if kind == "sdxl":
        tok2_dir = path / "tokenizer_2" if (path / "tokenizer_2").is_dir() else CONFIGS / "sdxl" / "tokenizer_2"
        pipe = StableDiffusionXLPipeline(vae=vae, text_encoder=te, text_encoder_2=te2, tokenizer=load_tokenizer(tok_dir),
                                         tokenizer_2=load_tokenizer(tok2_dir), unet=unet, scheduler=scheduler,
                                         force_zeros_for_empty_prompt=bool(index.get("force_zeros_for_empty_prompt", True)),
                                         add_watermarker=False)
    else:
        pipe = StableDiffusionPipeline(vae=vae, text_encoder=te, tokenizer=load_tokenizer(tok_dir), unet=unet,
                                       scheduler=scheduler, safety_checker=None, feature_extractor=None,
                                       requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    return pipe, kind, prediction


# ---------------------------------------------------------------- VAE override


def load_vae(path: Path, *, like, dtype: torch.dtype, allow_pickle: bool = False):
    """A VAE from a file (original or diffusers layout) or folder, shaped like the model's own ``like``."""
    from diffusers import AutoencoderKL

    from brushwork.models.inspect import inspect_model

    s = sniff(path)
    if s.format == "diffusers-folder":
        info = inspect_model(path, allow_pickle=allow_pickle)
        sub = path / "vae" if (path / "vae" / "config.json").is_file() else path
        if sub == path and info["kind"] != "vae":
            raise ModelFileError(f"{path.name}/ is a {info['kind']}, not a VAE")
        try:
            vae = AutoencoderKL.from_pretrained(sub, torch_dtype=dtype, local_files_only=True,
                                                use_safetensors=not allow_pickle, low_cpu_mem_usage=False)
        except (OSError, ValueError, RuntimeError) as exc:
            raise ModelFileError(f"{path.name}/: could not load the VAE ({' '.join(str(exc).split())[:300]})") from None
        return vae.requires_grad_(False).eval()
    tensors, _ = read_state_dict(s, allow_pickle=allow_pickle)
    kind, _, arch = classify(shapes_of(tensors))
    if kind != "vae":
        raise ModelFileError(f"{path.name} is a {kind}, not a VAE")
    cfg = dict(like.config) if like is not None else read_json(CONFIGS / "sd1" / "vae" / "config.json")
    if arch.get("layout") == "diffusers":
        convert = lambda m: {k.removeprefix("vae."): v for k, v in tensors.items()}  # noqa: E731
    else:
        convert = lambda m: ldm.vae_from_ldm(tensors, cfg)  # noqa: E731
    return build_module(lambda: AutoencoderKL.from_config(cfg), convert, dtype, f"{path.name}: VAE")


# ---------------------------------------------------------------- sizes


def _sizes(pipe, kind: str, card: dict, prediction: str, *, shipped: bool) -> tuple[int, int]:
    bw = card.get("brushwork") or {}
    scale = 2 ** (len(pipe.vae.config.block_out_channels) - 1)
    native = int(bw.get("native_size") or pipe.unet.config.sample_size * scale)
    meta_file = CONFIGS / kind / "brushwork.json"
    if "native_size" not in bw and shipped and meta_file.is_file():
        meta = json.loads(meta_file.read_text())
        native = meta.get("epsilon_native_size", native) if prediction == "epsilon" and kind == "sd2" else meta["native_size"]
    max_size = int(bw.get("max_size") or 2 * native)
    return native, max_size
