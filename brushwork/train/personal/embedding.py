"""``brushwork train embedding``: textual inversion. A new token (``--token``; ``--vectors`` N of them, named as
diffusers names a multi-vector embedding: TOKEN, TOKEN_1, …) is added to the tokenizer and only its embedding
vectors train; the UNet, the VAE and every other row of the text encoder stay frozen.

Output: A1111's format, a ``.safetensors`` file holding one tensor ``emb_params`` of shape ``[N, hidden]``, the
token in its metadata (``name``, ``modelspec.trigger_phrase``), and a model card beside it. diffusers'
``load_textual_inversion(file, token=TOKEN)`` gives the model the trained vectors.
"""

from __future__ import annotations

import time
from datetime import date
from pathlib import Path

import torch

from brushwork.errors import InvalidParameter
from brushwork.train.personal import DEFAULTS
from brushwork.train.personal.base import Objective, check_run, fit, load_base, write_card
from brushwork.train.personal.inputs import Settings, check_out, check_settings, read_folder
from brushwork.train.personal.lora import encode_unique, samples_every, save_atomic, tokenize


def train_embedding(s: Settings, *, start: float | None = None) -> dict:
    """Train (or continue) a textual-inversion embedding as ``s`` says. Returns {"done", "step", "minutes", "work",
    and when done "out", "card", "samples", "token", "pipe" (the base pipeline knowing the token)}."""
    start = time.monotonic() if start is None else start
    check_settings(s)
    check_out(s)
    prompt = s.prompt or f"a {s.token}"
    inputs = read_folder(s.images, prompt)
    for name, options in zip(inputs.files, inputs.captions):
        for caption in options:
            if s.token not in caption:
                raise InvalidParameter(f"--images: the caption of {name} ({caption!r}) does not contain --token "
                                       f"{s.token}")
    base = load_base(s.model)
    pipe = base.pipe
    names = token_names(pipe.tokenizer, s.token, s.vectors)
    init = initial_vectors(pipe.tokenizer, pipe.text_encoder, s.init_word, s.vectors)
    first = add_tokens(pipe.tokenizer, pipe.text_encoder, names)
    work = s.work_dir
    check_run(work, {"method": "embedding", "base_sha256": base.sha256, "inputs_sha256": inputs.sha256,
                     "token": s.token, "vectors": s.vectors, "init_word": s.init_word, "batch": s.batch,
                     "seed": s.seed, **({} if s.flip else {"flip": False})})
    vectors = torch.nn.Parameter(init.clone())
    hook = pipe.text_encoder.get_input_embeddings().register_forward_hook(inject_vectors(first, vectors))
    size = base.native_size
    pixels = inputs.pixels(size)
    obj = Objective(base, pixels, inputs.captions, s.seed, flip=s.flip)
    ids = tokenize(pipe.tokenizer, pipe.maybe_convert_prompt(obj.texts, pipe.tokenizer))

    def loss_at(step: int) -> torch.Tensor:
        rows = obj.rows(step, s.batch)
        return obj.loss(pipe.unet, rows, encode_unique(pipe.text_encoder, ids[obj.caption_index(rows, step)]), step)

    try:
        res = fit(work, {"vectors": vectors}, loss_at, steps=s.steps, lr=s.lr, warmup=DEFAULTS["embedding"]["warmup"],
                  start=start, max_minutes=s.max_minutes, desc="embedding",
                  title=f"textual inversion loss ({s.token}, {s.vectors} vectors, min-SNR-5)",
                  on_save=samples_every(s, pipe, prompt, pixels, size, work), ckpt_every=s.sample_every or 100,
                  progress=s.progress)
    finally:
        hook.remove()
    with torch.no_grad():  # the vectors into the embedding table, so the pipeline needs no hook
        pipe.text_encoder.get_input_embeddings().weight[first:first + s.vectors] = vectors
    res["work"] = str(work)
    if not res["done"]:
        return res
    out = Path(s.out)
    emb = vectors.detach().float().contiguous().clone()
    minutes = res["minutes"]
    meta = {"name": s.token, "modelspec.sai_model_spec": "1.0.0", "modelspec.title": out.stem,
            "modelspec.architecture": f"{base.family}/textual-inversion", "modelspec.license": base.license,
            "modelspec.trigger_phrase": s.token, "modelspec.date": date.today().isoformat(),
            "ss_base_model_version": base.family, "brushwork.token": s.token, "brushwork.vectors": str(s.vectors),
            "brushwork.base_model": base.name, "brushwork.base_sha256": base.sha256,
            "brushwork.steps": str(res["step"]), "brushwork.minutes": f"{minutes:.2f}",
            "brushwork.images": str(len(pixels))}
    save_atomic({"emb_params": emb}, out, meta)
    card = write_card(out.with_suffix(".md"), f"Textual inversion: {s.token}", base, {
        "Trigger word": f"`{s.token}` ({s.vectors} vectors; e.g. `{prompt}`)",
        "Steps": f"{res['step']} at batch {s.batch}, lr {s.lr:g}", "Minutes": f"{minutes:.1f}",
        "Training images": f"{len(pixels)} at {size}×{size} px",
        "Format": "A1111 embedding (.safetensors, `emb_params` [vectors, hidden]); diffusers "
                  f"`load_textual_inversion(file, token=\"{s.token}\")`",
    }, front={"tags": ["textual-inversion", "brushwork"], "instance_prompt": prompt})
    return {**res, "out": str(out), "card": str(card), "samples": str(work / "samples.png"), "token": s.token,
            "pipe": pipe}


def token_names(tokenizer, token: str, vectors: int) -> list[str]:
    """TOKEN, TOKEN_1, … TOKEN_{n-1}; refused if any is already in the tokenizer or does not stay one token."""
    names = [token] + [f"{token}_{i}" for i in range(1, vectors)]
    vocab = tokenizer.get_vocab()
    for n in names:
        if n in vocab or f"{n}</w>" in vocab:
            what = "is already a word" if n == token else f"({n!r} for vector 2+) is already a word"
            raise InvalidParameter(f"--token {token} {what} in the model's tokenizer; choose a new one, e.g. "
                                   f"<{token.strip('<>')}>")
    return names


def add_tokens(tokenizer, text_encoder, names: list[str]) -> int:
    """Add ``names`` to the tokenizer (as diffusers' ``load_textual_inversion`` does) and rows for them to the text
    encoder; the id of the first."""
    tokenizer.add_tokens(names)
    ids = tokenizer.convert_tokens_to_ids(names)
    if ids != list(range(ids[0], ids[0] + len(names))):
        raise RuntimeError(f"new token ids are not consecutive: {ids}")
    probe = tokenizer(" ".join(names), add_special_tokens=False).input_ids
    if probe != ids:
        raise InvalidParameter(f"--token {names[0]} does not stay one token in this model's tokenizer (it lowercases "
                               "prompts: use lower case)")
    text_encoder.resize_token_embeddings(len(tokenizer), mean_resizing=False)  # the rows are trained or hooked
    return ids[0]


def initial_vectors(tokenizer, text_encoder, init_word: str | None, n: int) -> torch.Tensor:
    """``[n, hidden]``: ``init_word``'s embedding (the mean of its tokens) or, by default, the mean of the table
    scaled to an average row's length."""
    table = text_encoder.get_input_embeddings().weight.detach().float()
    if init_word is not None:
        ids = tokenizer(init_word, add_special_tokens=False).input_ids
        if not ids:
            raise InvalidParameter(f"--init-word {init_word!r} gives no tokens")
        v = table[ids].mean(0)
    else:
        mean = table.mean(0)
        v = mean * (table.norm(dim=1).mean() / mean.norm().clamp(min=1e-12))
    return v.expand(n, -1).clone()


def inject_vectors(first: int, vectors: torch.nn.Parameter):
    """A forward hook on the token embedding: rows of ids ``first … first+n-1`` come from ``vectors``."""
    n = len(vectors)

    def hook(module, args, out):
        ids = args[0]
        new = (ids >= first) & (ids < first + n)
        if not new.any():
            return out
        rows = vectors[(ids - first).clamp(0, n - 1)].to(out.dtype)
        return torch.where(new.unsqueeze(-1), rows, out)

    return hook
