"""LoRAs and textual-inversion embeddings, applied to a loaded model for one request.

    prompt ─► split_lora_tags (``<lora:NAME:WEIGHT>`` taken out of the text)
           ─► resolve (files found by name or hash: ``models.networks``)
           ─► apply (diffusers/peft adapters on the UNet and text encoder; embeddings as new tokens)
           ─► the prompt text the encoder sees

A LoRA is loaded into a model once, as a peft adapter named after its hash, and stays loaded: a later request
with the same LoRAs only re-weights them (``set_adapters``), and a request without any disables them. A LoRA at
weight 0 is not applied at all, so its images are bit-identical to none. Kohya files are converted here to
peft's key names with ``alpha / rank`` folded into ``lora_B`` (diffusers 0.42's own kohya path drops the text
encoder's attention LoRAs under transformers 5); every other layout goes to diffusers as it is.

An embedding is written in the prompt by its name (the file's, as A1111 does); one that ``brushwork train
embedding`` made may be written as the token it was trained as too (``<diamond>``).

A LoRA's bundled embeddings (``bundle_emb.WORD.string_to_param.*``, as kohya and A1111 write them; ``brushwork
train lora --train-word`` makes them) are loaded as private tokens ``<WORD-HASH>`` and, while the LoRA is applied
(weight not 0), take the place of WORD in both prompts.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

from brushwork.engine.params import GenerationParams, LoraUse
from brushwork.engine.prompts import word_pattern
from brushwork.errors import InvalidParameter, ModelFileError
from brushwork.models.networks import NetworkFile, check_family, find_network, model_family, read_network

LORA_TAG = re.compile(r"<lora:([^<>]*)>", re.IGNORECASE)
MAX_ADAPTERS = 8  # adapters kept loaded per model; the least recently used inactive one goes first
_KOHYA_PREFIXES = {"lora_unet_": "unet", "lora_te_": "text_encoder", "lora_te1_": "text_encoder",
                   "lora_te2_": "text_encoder_2"}


def split_lora_tags(text: str, field_name: str = "prompt") -> tuple[str, list[LoraUse]]:
    """``text`` without its ``<lora:NAME[:WEIGHT]>`` tags, and the LoRAs they name (weight 1 when left out)."""
    uses = []
    for m in LORA_TAG.finditer(text):
        parts = [p.strip() for p in m.group(1).split(":")]
        if not parts[0]:
            raise InvalidParameter(f"{field_name}: {m.group(0)} names no LoRA (write <lora:NAME:WEIGHT>)",
                                   field=field_name)
        if len(parts) > 2:
            raise InvalidParameter(f"{field_name}: {m.group(0)} has more than one weight (write <lora:NAME:WEIGHT>)",
                                   field=field_name)
        weight = 1.0
        if len(parts) == 2:
            try:
                weight = float(parts[1])
            except ValueError:
                weight = math.nan
            if not math.isfinite(weight):
                raise InvalidParameter(f"{field_name}: {m.group(0)}: the weight {parts[1]!r} is not a number",
                                       field=field_name)
        try:
            uses.append(LoraUse(name=parts[0], weight=weight))
        except ValueError as exc:
            raise InvalidParameter(f"{field_name}: {m.group(0)}: {exc.errors()[0]['msg']}", field=field_name) from None
    cleaned = re.sub(r"\s{2,}", " ", LORA_TAG.sub("", text)).strip() if uses else text
    return cleaned, uses


@dataclass
class Networks:
    """What one request applies: the LoRA files with weights, the embeddings, and the text to encode."""

    loras: list[tuple[NetworkFile, float]] = field(default_factory=list)
    embeddings: list[NetworkFile] = field(default_factory=list)
    prompt: str = ""
    negative_prompt: str = ""

    def hashes(self) -> dict:
        """``lora_hashes`` / ``ti_hashes`` for the parameters (``None`` when there are none)."""
        loras = {f.name: f.hash12 for f, _ in self.loras} or None
        tis = {f.name: f.hash12 for f in self.embeddings} or None
        return {"lora_hashes": loras, "ti_hashes": tis}

    def infotext(self) -> dict:
        """``Lora hashes`` and ``TI hashes`` as A1111 writes them: ``"name: hash, name: hash"``."""
        out = {}
        for key, pairs in (("Lora hashes", [(f.name, f.hash12) for f, _ in self.loras]),
                           ("TI hashes", [(f.name, f.hash12) for f in self.embeddings])):
            if pairs:
                out[key] = ", ".join(f"{n}: {h}" for n, h in pairs)
        return out

    def licenses(self) -> list[tuple[str, str]]:
        return [(f.name, f.license) for f, _ in self.loras] + [(f.name, f.license) for f in self.embeddings]


def resolve(params: GenerationParams, *, home=None, allow_paths: bool = False,
            known_embeddings=None) -> Networks:
    """The LoRAs ``params`` asks for (``--lora`` and prompt tags, weights of a repeated name added) and the
    embeddings (``--embedding`` and, from ``known_embeddings``, every name the prompt uses), found as files."""
    prompt, in_prompt = split_lora_tags(params.prompt, "prompt")
    negative, in_negative = split_lora_tags(params.negative_prompt, "negative_prompt")
    weights: dict[str, float] = {}
    for use in [*params.loras, *in_prompt, *in_negative]:
        weights[use.name] = weights.get(use.name, 0.0) + use.weight
    hashes = params.lora_hashes or {}
    loras = [(find_network("lora", name, home=home, allow_paths=allow_paths, want_hash=hashes.get(name)), w)
             for name, w in weights.items()]
    names = list(dict.fromkeys(params.embeddings))
    text = f"{prompt} {negative}"
    for name in known_embeddings or ():
        if name not in names and re.search(rf"(?<![\w<-]){re.escape(name)}(?![\w>-])", text):
            names.append(name)
    ti_hashes = params.ti_hashes or {}
    embeddings = [find_network("textual-inversion", n, home=home, allow_paths=allow_paths,
                               want_hash=ti_hashes.get(n)) for n in names]
    return Networks(loras, embeddings, prompt, negative)


def apply(loaded, nets: Networks, *, allow_pickle: bool = False) -> Networks:
    """Make ``loaded`` (a ``models.load.LoadedModel``) apply exactly ``nets``; returns ``nets`` with the prompts
    rewritten for multi-vector embeddings. Loads each file once per model."""
    pipe = loaded.pipe
    state = loaded.networks
    family = model_family(pipe, loaded.kind)
    for f, _ in nets.loras:
        check_family(f, family, loaded.name)
    for f in nets.embeddings:
        _load_embedding(pipe, state, f, family, loaded.name, allow_pickle)
    active = []
    for f, weight in nets.loras:
        if weight == 0:
            continue
        adapter = f"lora-{f.hash12}"
        if adapter not in state.setdefault("adapters", []):
            _load_lora(pipe, state, f, adapter, allow_pickle)
        state["adapters"].remove(adapter)
        state["adapters"].append(adapter)  # most recently used last
        active.append((adapter, weight))
    wanted = tuple(active)
    if wanted != state.get("active", ()):
        if wanted:
            pipe.enable_lora()
            pipe.set_adapters([a for a, _ in wanted], adapter_weights=[w for _, w in wanted])
        elif state.get("adapters"):
            pipe.disable_lora()
        state["active"] = wanted
    words = _bundled_words(pipe, state, active) | _embedding_triggers(nets.embeddings)
    for word, token in words.items():
        pattern = word_pattern(word)
        nets.prompt, nets.negative_prompt = pattern.sub(token, nets.prompt), pattern.sub(token, nets.negative_prompt)
    if nets.embeddings or words:
        nets.prompt = pipe.maybe_convert_prompt(nets.prompt, pipe.tokenizer)
        nets.negative_prompt = pipe.maybe_convert_prompt(nets.negative_prompt, pipe.tokenizer)
    return nets


def _load_lora(pipe, state: dict, f: NetworkFile, adapter: str, allow_pickle: bool) -> None:
    if f.architecture.get("style") == "lycoris":
        raise ModelFileError(f"LoRA {f.name!r}: LyCORIS (LoHa/LoKr) files are not supported; use a LoRA/LoCon file")
    tensors, bundles = split_bundles(read_network(f, allow_pickle=allow_pickle), f.name)
    if bundles and getattr(pipe, "text_encoder_2", None) is not None:
        raise ModelFileError(f"LoRA {f.name!r} bundles embeddings ({', '.join(bundles)}); brushwork applies bundled "
                             "embeddings on Stable Diffusion 1.x/2.x-style models only")
    if any(".lora_mid." in k for k in tensors):
        raise ModelFileError(f"LoRA {f.name!r}: LoCon files with a middle (Tucker) layer are not supported")
    tensors = kohya_to_peft(tensors, pipe) or tensors
    inactive = [a for a in state["adapters"] if a not in dict(state.get("active") or ())]
    while len(state["adapters"]) >= MAX_ADAPTERS and inactive:
        old = inactive.pop(0)
        pipe.delete_adapters(old)
        state["adapters"].remove(old)
        state.get("bundles", {}).pop(old, None)
    try:
        pipe.load_lora_weights(tensors, adapter_name=adapter)
    except (ValueError, RuntimeError, KeyError, TypeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelFileError(f"LoRA {f.name!r} does not fit this model: {first[:300]}") from None
    state["adapters"].append(adapter)
    state.setdefault("bundles", {})[adapter] = {"file": f.name, "hash": f.hash12, "words": bundles}
    state["active"] = None  # the new adapter is active until set_adapters runs


def split_bundles(tensors: dict, name: str) -> tuple[dict, dict]:
    """A LoRA file's tensors without its bundled embeddings, and those as ``{word: [vectors, width]}``. Only the
    SD1.x/2.x layout (``bundle_emb.WORD.string_to_param.*``) is read; another one is refused, naming its key."""
    rest, words = {}, {}
    for key, value in tensors.items():
        if not key.startswith("bundle_emb."):
            rest[key] = value
            continue
        word, _, part = key[len("bundle_emb."):].partition(".")
        if part != "string_to_param.*" or not word or value.ndim != 2:
            raise ModelFileError(f"LoRA {name!r}: bundled embedding {key!r} is not in the SD1.x/2.x layout "
                                 "(bundle_emb.WORD.string_to_param.*, [vectors, width])")
        words[word] = value
    return rest, words


def _bundled_words(pipe, state: dict, active: list[tuple[str, float]]) -> dict[str, str]:
    """``{word: private token}`` for the bundled embeddings of the applied LoRAs, each loaded once per model."""
    words, owner = {}, {}
    loaded = state.setdefault("bundle_tokens", set())
    for adapter, _ in active:
        info = state.get("bundles", {}).get(adapter) or {}
        for word, vectors in info.get("words", {}).items():
            if word in owner:
                raise InvalidParameter(f"LoRAs {owner[word]!r} and {info['file']!r} both carry an embedding for the "
                                       f"word {word!r}; apply one of them", field="prompt")
            owner[word] = info["file"]
            token = f"<{word}-{info['hash']}>"
            if token not in loaded:
                width = pipe.text_encoder.get_input_embeddings().weight.shape[1]
                if vectors.shape[1] != width:
                    raise ModelFileError(f"LoRA {info['file']!r}: its embedding for {word!r} has vectors of width "
                                         f"{vectors.shape[1]}; this model needs {width}")
                pipe.load_textual_inversion({"emb_params": vectors}, token=token)
                loaded.add(token)
            words[word] = token
    return words


def _embedding_triggers(embeddings: list[NetworkFile]) -> dict[str, str]:
    """``{token: name}`` for embeddings that ``brushwork train embedding`` made: the token they were trained as
    (``brushwork.token`` in the header, e.g. ``<diamond>``) means them too, besides their name (the file's)."""
    out: dict[str, str] = {}
    for f in embeddings:
        token = (f.metadata or {}).get("brushwork.token")
        if not token or token == f.name:
            continue
        if out.get(token, f.name) != f.name:
            raise InvalidParameter(f"embeddings {out[token]!r} and {f.name!r} were both trained as {token!r}; write "
                                   "their names in the prompt instead", field="embeddings")
        out[token] = f.name
    return out


def kohya_to_peft(tensors: dict, pipe) -> dict | None:
    """A kohya/A1111 LoRA (``lora_unet_…``/``lora_te_…`` with ``lora_down``/``lora_up``/``alpha``) under peft's
    names for this pipeline's modules, each ``lora_B`` scaled by ``alpha / rank``. ``None`` when the file is not
    kohya or names a module the pipeline lacks (diffusers' converters then get the file as it is)."""
    groups: dict[tuple[str, str], dict] = {}
    for key, value in tensors.items():
        stem, _, part = key.partition(".")
        prefix = next((p for p in _KOHYA_PREFIXES if stem.startswith(p)), None)
        if prefix is None or part not in ("lora_down.weight", "lora_up.weight", "alpha"):
            return None
        groups.setdefault((prefix, stem[len(prefix):]), {})[part] = value
    if not groups:
        return None
    lookups: dict[str, dict[str, str]] = {}
    out = {}
    for (prefix, flat), parts in groups.items():
        component = _KOHYA_PREFIXES[prefix]
        module = getattr(pipe, component, None)
        if module is None or "lora_down.weight" not in parts or "lora_up.weight" not in parts:
            return None
        names = lookups.setdefault(component, {n.replace(".", "_"): n for n, _ in module.named_modules() if n})
        name = names.get(flat) or names.get(flat.removeprefix("text_model_"))
        if name is None:
            return None
        down, up = parts["lora_down.weight"], parts["lora_up.weight"]
        rank = down.shape[0]
        alpha = float(parts["alpha"]) if "alpha" in parts else float(rank)
        out[f"{component}.{name}.lora_A.weight"] = down
        out[f"{component}.{name}.lora_B.weight"] = up * (alpha / rank)
    return out


def _load_embedding(pipe, state: dict, f: NetworkFile, family: str, model_name: str, allow_pickle: bool) -> None:
    loaded = state.setdefault("embeddings", {})
    if loaded.get(f.name) == f.hash12:
        return
    if f.name in loaded:
        raise InvalidParameter(f"embedding {f.name!r}: another file of that name (hash {loaded[f.name]}) is loaded "
                               "in this model; rename one of them", field="embeddings")
    width = pipe.text_encoder.get_input_embeddings().weight.shape[1]
    got = f.architecture.get("width")
    if got is not None and got != width:
        raise InvalidParameter(f"embedding {f.name!r} has vectors of width {got}; {model_name!r} ({family}) "
                               f"needs {width}", field="embeddings")
    if f.name in pipe.tokenizer.get_vocab():
        raise InvalidParameter(f"embedding {f.name!r}: that name is already a word of the model's tokenizer; "
                               "rename the file", field="embeddings")
    tensors = read_network(f, allow_pickle=allow_pickle)
    try:
        pipe.load_textual_inversion(tensors, token=f.name)
    except (ValueError, RuntimeError, KeyError, TypeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelFileError(f"embedding {f.name!r} does not fit this model: {first[:300]}") from None
    loaded[f.name] = f.hash12
