"""Trained words: a LoRA run that also learns the token embeddings of its trigger words (``--train-word``; what
diffusers' advanced DreamBooth-LoRA script calls pivotal tuning).

A word the captions use whose embedding the base model never learnt (the bundled model's "diamond") reaches the
UNet as noise, and the words after it are encoded in a context the model never saw. Training the LoRA alone then
learns the training captions, not the word. Here each word gets vectors of its own, one per token of the word,
started from the word's own embedding (or ``--init-word``'s), and trained with the LoRA.

They are saved in the LoRA file as A1111/kohya bundled embeddings, ``bundle_emb.WORD.string_to_param.*``
(``[tokens, width]``), so a client that knows the format applies them where the prompt says WORD; brushwork does
(``engine.networks``). In training the word is replaced in each caption by a private token ``<WORD>`` whose rows
come from the vectors (a forward hook on the token embedding, as ``embedding`` does).
"""

from __future__ import annotations

import re

import torch

from brushwork.engine.prompts import word_pattern
from brushwork.errors import InvalidParameter

WORD = re.compile(r"[a-z0-9][a-z0-9_-]{0,31}")
BUNDLE_KEY = "bundle_emb.{}.string_to_param.*"


def check_words(words: list[str], captions: list[list[str]], files: list[str]) -> None:
    """Each ``--train-word`` is one lower-case word, given once, used by some caption (``captions[i]``: image
    ``i``'s); ``InvalidParameter`` else."""
    seen = set()
    for w in words:
        if not WORD.fullmatch(w):
            raise InvalidParameter(f"--train-word {w!r} must be one lower-case word (letters, digits, - or _; at "
                                   "most 32 characters)")
        if w in seen:
            raise InvalidParameter(f"--train-word {w} is given twice")
        seen.add(w)
        if not any(word_pattern(w).search(c) for options in captions for c in options):
            shown = ", ".join(f"{f}: {options[0]!r}" for f, options in list(zip(files, captions))[:3])
            raise InvalidParameter(f"--train-word {w}: no caption uses that word ({shown})")


class TrainedWords:
    """The vectors of each trained word, hooked into ``text_encoder`` under private tokens."""

    def __init__(self, tokenizer, text_encoder, words: list[str], init_word: str | None = None):
        from brushwork.train.personal.embedding import add_tokens, initial_vectors, inject_vectors, token_names

        self.text_encoder, self.words = text_encoder, list(words)
        self.vectors: dict[str, torch.nn.Parameter] = {}
        self.first: dict[str, int] = {}
        self.names: dict[str, list[str]] = {}
        table = text_encoder.get_input_embeddings().weight.detach().float()
        for w in self.words:
            ids = tokenizer(w, add_special_tokens=False).input_ids
            init = initial_vectors(tokenizer, text_encoder, init_word, len(ids)) if init_word else table[ids].clone()
            self.names[w] = token_names(tokenizer, f"<{w}>", len(ids))
            self.first[w] = add_tokens(tokenizer, text_encoder, self.names[w])
            self.vectors[w] = torch.nn.Parameter(init)
        emb = text_encoder.get_input_embeddings()
        self.hooks = [emb.register_forward_hook(inject_vectors(self.first[w], self.vectors[w])) for w in self.words]

    def rewrite(self, texts: list[str]) -> list[str]:
        """``texts`` with each trained word replaced by its private token(s)."""
        out = []
        for t in texts:
            for w in self.words:
                t = word_pattern(w).sub(" ".join(self.names[w]), t)
            out.append(t)
        return out

    def params(self) -> dict[str, torch.nn.Parameter]:
        return {f"words.{w}": v for w, v in self.vectors.items()}

    def bundle(self) -> dict[str, torch.Tensor]:
        """The vectors under kohya/A1111's bundled-embedding keys."""
        return {BUNDLE_KEY.format(w): v.detach().float().contiguous().clone() for w, v in self.vectors.items()}

    def settle(self) -> None:
        """Write the vectors into the embedding table and drop the hooks (the pipeline then needs neither)."""
        for h in self.hooks:
            h.remove()
        self.hooks = []
        with torch.no_grad():
            table = self.text_encoder.get_input_embeddings().weight
            for w, v in self.vectors.items():
                table[self.first[w]:self.first[w] + len(v)] = v.to(table.dtype)
