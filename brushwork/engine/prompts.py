"""A1111 prompt attention syntax, and prompts longer than one CLIP window.

Syntax (A1111 semantics):

- ``(text)`` multiplies the attention of ``text`` by 1.1, ``[text]`` divides it by 1.1; nesting
  multiplies, so ``((text))`` is 1.21.
- ``(text:1.3)`` sets the factor of that bracket to 1.3 instead of 1.1. Inside round brackets the
  text after a ``:`` up to the closing ``)`` must be a number, or ``PromptError`` names its
  position; write ``\\:`` for a literal colon there. Colons outside round brackets are text.
- ``\\(`` ``\\)`` ``\\[`` ``\\]`` ``\\:`` ``\\\\`` are literal characters.
- Unbalanced brackets behave as in A1111: an unmatched closer is text, an unclosed opener is
  closed at the end of the prompt.
- ``BREAK`` (upper case, as a word) ends the current 75-token chunk.

Long prompts are split into chunks of ``model_max_length - 2`` tokens; each chunk is wrapped in
BOS/EOS, padded, encoded on its own, and the chunk embeddings are concatenated along the sequence
(A1111's scheme). Nothing is ever truncated. The comma back-tracking A1111 does at chunk edges is
not done here.
"""

from __future__ import annotations

import re

from brushwork.errors import ModelFileError, PromptError

ROUND = 1.1
SQUARE = 1 / 1.1
BREAK = ("BREAK", -1.0)  # marker fragment in parse_prompt_attention's output


def word_pattern(word: str) -> re.Pattern:
    """``word`` as a whole word of a prompt, in any case (CLIP tokenizers lower-case prompts); not inside
    ``<…>`` tokens nor joined to other words by ``-``."""
    return re.compile(rf"(?<![\w<>-]){re.escape(word)}(?![\w<>-])", re.IGNORECASE)


_ESCAPABLE = "()[]:\\"
_BREAK_RE = re.compile(r"\s*\bBREAK\b\s*")
_NUMBER_RE = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)")


def is_break(fragment: tuple[str, float]) -> bool:
    return tuple(fragment) == BREAK


def _weight_end(text: str, colon: int) -> int | None:
    """Index of the ``)`` closing a weight that starts after ``colon`` (``len(text)`` if the
    prompt ends first), or ``None`` if the colon is plain text: another ``:`` or a bracket comes
    before the closing ``)``."""
    j = colon + 1
    while j < len(text):
        ch = text[j]
        if ch == "\\" and j + 1 < len(text) and text[j + 1] in _ESCAPABLE:
            j += 2
            continue
        if ch == ")":
            return j
        if ch in ":([]":
            return None
        j += 1
    return len(text)


def _parse_weight(text: str, start: int, end: int) -> float:
    raw = text[start:end]
    stripped = raw.strip()
    if not _NUMBER_RE.fullmatch(stripped):
        position = start + (len(raw) - len(raw.lstrip())) + 1  # 1-based
        raise PromptError(f"cannot parse attention weight {stripped!r} at position {position}")
    return float(stripped)


def parse_prompt_attention(text: str) -> list[tuple[str, float]]:
    """Split a prompt into ``(text, weight)`` fragments; ``BREAK`` is the ``BREAK`` marker.

    >>> parse_prompt_attention("a (cat:1.3) [dog]")
    [('a ', 1.0), ('cat', 1.3), (' ', 1.0), ('dog', 0.9090909090909091)]
    """
    res: list[list] = []
    rounds: list[int] = []  # index into res where each open "(" starts
    squares: list[int] = []
    buf: list[str] = []

    def flush() -> None:
        if not buf:
            return
        for k, part in enumerate(_BREAK_RE.split("".join(buf))):
            if k:
                res.append(list(BREAK))
            if part:
                res.append([part, 1.0])
        buf.clear()

    def multiply(start: int, factor: float) -> None:
        for item in res[start:]:
            if tuple(item) != BREAK:
                item[1] *= factor

    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch == "\\" and i + 1 < n and text[i + 1] in _ESCAPABLE:
            buf.append(text[i + 1])
            i += 2
            continue
        if ch == "(":
            flush()
            rounds.append(len(res))
        elif ch == "[":
            flush()
            squares.append(len(res))
        elif ch == ")" and rounds:
            flush()
            multiply(rounds.pop(), ROUND)
        elif ch == "]" and squares:
            flush()
            multiply(squares.pop(), SQUARE)
        elif ch == ":" and rounds and (end := _weight_end(text, i)) is not None:
            flush()
            multiply(rounds.pop(), _parse_weight(text, i + 1, end))
            i = end  # skip the weight and its ")"
        else:
            buf.append(ch)
        i += 1
    flush()
    for start in reversed(rounds):
        multiply(start, ROUND)
    for start in reversed(squares):
        multiply(start, SQUARE)

    merged: list[list] = []
    for item in res:
        mergeable = merged and tuple(item) != BREAK and tuple(merged[-1]) != BREAK
        if mergeable and item[1] == merged[-1][1]:
            merged[-1][0] += item[0]
        else:
            merged.append(item)
    return [(t, w) for t, w in merged] or [("", 1.0)]


def _window(tokenizer, text_encoder) -> int:
    """Tokens per chunk including BOS/EOS (77 for CLIP)."""
    length = int(tokenizer.model_max_length)
    limit = getattr(getattr(text_encoder, "config", None), "max_position_embeddings", None)
    return min(length, int(limit)) if limit else length


def tokenize_prompt(tokenizer, prompt: str, *, window: int | None = None):
    """Token ids and per-token weights, one row per chunk: two tensors of shape ``[k, window]``.

    Each row is ``BOS, tokens…, EOS, pad…`` (the layout the tokenizer itself produces with
    ``padding="max_length"``); BOS, EOS and padding have weight 1.
    """
    import torch

    window = int(window or tokenizer.model_max_length)
    if not 3 <= window <= 4096:  # an unset model_max_length is 1e30
        raise ModelFileError(f"tokenizer model_max_length {window} is not a usable window")
    per_chunk = window - 2
    fragments = parse_prompt_attention(prompt)
    texts = [t for t, w in fragments if not is_break((t, w))]
    encoded = []
    if texts:
        encoded = tokenizer(texts, add_special_tokens=False, truncation=False, verbose=False).input_ids

    chunks: list[tuple[list[int], list[float]]] = []
    ids: list[int] = []
    weights: list[float] = []
    tokens_of = iter(encoded)
    for fragment in fragments:
        if is_break(fragment):
            if ids:
                chunks.append((ids, weights))
                ids, weights = [], []
            continue
        for token in next(tokens_of):
            if len(ids) == per_chunk:
                chunks.append((ids, weights))
                ids, weights = [], []
            ids.append(token)
            weights.append(fragment[1])
    if ids or not chunks:
        chunks.append((ids, weights))

    bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos
    id_rows, weight_rows = [], []
    for chunk_ids, chunk_weights in chunks:
        fill = per_chunk - len(chunk_ids)
        id_rows.append([bos, *chunk_ids, eos] + [pad] * fill)
        weight_rows.append([1.0, *chunk_weights, 1.0] + [1.0] * fill)
    return torch.tensor(id_rows, dtype=torch.long), torch.tensor(weight_rows, dtype=torch.float32)


def encode_prompt(tokenizer, text_encoder, prompt: str, *, device, dtype):
    """Encode a weighted prompt of any length to ``[1, window * k, hidden]``.

    Each chunk is encoded on its own (``last_hidden_state``); where a chunk has weights other
    than 1, its embeddings are multiplied by them and rescaled so that the chunk's mean is what it
    was (A1111's emphasis). The empty prompt gives one chunk: the unconditional embedding.
    Gradients are not switched off here; wrap inference in ``torch.inference_mode()``.

    Args:
        tokenizer: a CLIP tokenizer (``model_max_length`` 77 for Stable Diffusion).
        text_encoder: a ``CLIPTextModel`` (or anything returning ``last_hidden_state``).
        prompt: text in A1111 attention syntax.
        device: where to run the text encoder.
        dtype: dtype of the returned embeddings.
    """
    import torch

    ids, weights = tokenize_prompt(tokenizer, prompt, window=_window(tokenizer, text_encoder))
    hidden = text_encoder(ids.to(device)).last_hidden_state.float()
    weights = weights.to(hidden.device)
    out = []
    for chunk, w in zip(hidden, weights):
        if bool((w != 1.0).any()):
            original_mean = chunk.mean()
            chunk = chunk * w.unsqueeze(-1)
            new_mean = chunk.mean()
            if new_mean.abs() > 1e-12:
                chunk = chunk * (original_mean / new_mean)
        out.append(chunk)
    return torch.cat(out, dim=0).unsqueeze(0).to(dtype)


def encode_pair(tokenizer, text_encoder, prompt: str, negative: str = "", *, device, dtype):
    """``(cond, uncond)`` embeddings with the same number of chunks, ready for CFG.

    The shorter one is padded with copies of the empty prompt's chunk, as A1111 does.
    """
    import torch

    cond = encode_prompt(tokenizer, text_encoder, prompt, device=device, dtype=dtype)
    uncond = encode_prompt(tokenizer, text_encoder, negative, device=device, dtype=dtype)
    if cond.shape[1] != uncond.shape[1]:
        empty = encode_prompt(tokenizer, text_encoder, "", device=device, dtype=dtype)
        window = empty.shape[1]

        def pad(x):
            missing = (max(cond.shape[1], uncond.shape[1]) - x.shape[1]) // window
            return torch.cat([x] + [empty] * missing, dim=1)

        cond, uncond = pad(cond), pad(uncond)
    return cond, uncond
