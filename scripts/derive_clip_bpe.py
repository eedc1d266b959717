"""Derive the CLIP tokenizer files (``vocab.json``, ``merges.txt``) that brushwork ships.

Source: ``open_clip/bpe_simple_vocab_16e6.txt.gz`` from the ``open_clip_torch`` wheel on PyPI
(MIT licence; the same BPE data OpenAI released with CLIP, also MIT). Fetch and run::

    pip download --no-deps open_clip_torch==3.3.0 -d /tmp/oc
    unzip -o /tmp/oc/open_clip_torch-3.3.0-py3-none-any.whl open_clip/bpe_simple_vocab_16e6.txt.gz -d /tmp/oc
    python scripts/derive_clip_bpe.py /tmp/oc/open_clip/bpe_simple_vocab_16e6.txt.gz

The derivation is the one in CLIP's ``simple_tokenizer.py``: 256 byte symbols, the same with
``</w>``, the first 48,894 merges, then ``<|startoftext|>`` and ``<|endoftext|>`` (49,408 ids).
SD1's CLIP ViT-L, SD2's OpenCLIP ViT-H and SDXL's two encoders all use this one vocabulary;
they differ only in ``tokenizer_config.json`` (the padding token).
"""

from __future__ import annotations

import gzip
import json
import sys
from pathlib import Path

from transformers.convert_slow_tokenizer import bytes_to_unicode  # GPT-2/CLIP byte table

OUT = Path(__file__).resolve().parent.parent / "brushwork" / "models" / "configs" / "clip_bpe"
N_MERGES = 49152 - 256 - 2


def main(src: str) -> None:
    lines = gzip.open(src, "rt", encoding="utf-8").read().split("\n")
    merges = [tuple(line.split()) for line in lines[1 : N_MERGES + 1]]
    symbols = list(bytes_to_unicode().values())
    tokens = symbols + [s + "</w>" for s in symbols] + ["".join(m) for m in merges]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    vocab = {tok: i for i, tok in enumerate(tokens)}
    assert len(vocab) == 49408, len(vocab)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    with open(OUT / "merges.txt", "w", encoding="utf-8", newline="\n") as f:
        f.write("#version: 0.2\n")
        for a, b in merges:
            f.write(f"{a} {b}\n")
    print(f"wrote {OUT}/vocab.json ({len(vocab)} tokens) and merges.txt ({len(merges)} merges)")


if __name__ == "__main__":
    main(sys.argv[1])
