"""A small BPE vocabulary built for a caption corpus, saved as files a ``CLIPTokenizer`` loads.

Every word of the corpus becomes one token (merges build it from its characters); any other
text still tokenizes, into characters, because every byte-level character is in the vocabulary.
"""

from __future__ import annotations

import json
from pathlib import Path

from transformers import CLIPTokenizer
from transformers.convert_slow_tokenizer import bytes_to_unicode

BOS, EOS = "<|startoftext|>", "<|endoftext|>"


def _chain(word: str) -> list[tuple[str, str]]:
    symbols = list(word[:-1]) + [word[-1] + "</w>"]
    merges, left = [], symbols[0]
    for right in symbols[1:]:
        merges.append((left, right))
        left = left + right
    return merges


def build_tokenizer(words: set[str], out_dir: str | Path, max_length: int = 77) -> CLIPTokenizer:
    """Write ``vocab.json``, ``merges.txt`` and a tokenizer config for ``words`` into ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    chars = list(bytes_to_unicode().values())
    vocab: list[str] = chars + [c + "</w>" for c in chars]
    merges: list[tuple[str, str]] = []
    seen = set(vocab)

    def add_merge(a: str, b: str) -> None:
        if (a, b) not in merges:
            merges.append((a, b))
        if a + b not in seen:
            seen.add(a + b)
            vocab.append(a + b)

    for w in sorted(w for w in words if len(w) > 1):
        for a, b in _chain(w):
            add_merge(a, b)
    for _ in range(8):  # fix-up rounds: join whatever fragments a word still falls into
        tok = _save_and_load(out_dir, vocab, merges, max_length)
        broken = [w for w in words if len(tok.tokenize(w)) != 1]
        if not broken:
            return tok
        for w in broken:
            parts = tok.tokenize(w)
            left = parts[0]
            for right in parts[1:]:
                add_merge(left, right)
                left = left + right
    raise RuntimeError(f"could not make single tokens for {broken[:5]}")


def _save_and_load(out_dir: Path, vocab: list[str], merges, max_length: int) -> CLIPTokenizer:
    full = vocab + [BOS, EOS]
    (out_dir / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(full)}, ensure_ascii=False))
    (out_dir / "merges.txt").write_text("#version: 0.2\n" + "\n".join(f"{a} {b}" for a, b in merges) + "\n")
    config = {"model_max_length": max_length, "bos_token": BOS, "eos_token": EOS, "unk_token": EOS,
              "pad_token": EOS, "do_lower_case": True, "tokenizer_class": "CLIPTokenizer"}
    (out_dir / "tokenizer_config.json").write_text(json.dumps(config, indent=1))
    (out_dir / "special_tokens_map.json").write_text(json.dumps(
        {"bos_token": BOS, "eos_token": EOS, "unk_token": EOS, "pad_token": EOS}, indent=1))
    return CLIPTokenizer.from_pretrained(str(out_dir))


def corpus_words(texts) -> set[str]:
    """Words as CLIP's pre-tokenizer splits them (lower case; punctuation separate)."""
    import re

    pat = re.compile(r"[a-z]+|[0-9]|[^\sa-z0-9]+")
    return {w for t in texts for w in pat.findall(t.lower())}
