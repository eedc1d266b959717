"""How far apart a model's text encoder puts prompts that differ in one word (shape, colour, count, relation).

    HF_HUB_OFFLINE=1 .venv/bin/python scripts/text_states.py [--model default]

For each pair: the relative L2 distance ``|a - b| / |a|`` of the last hidden states over the longer prompt's tokens
(what the UNet's cross-attention reads), and at the end token (the pooled state). A text encoder that tells shapes
apart as clearly as colours gives the UNet a usable signal for both. Prints JSON.
"""

from __future__ import annotations

import argparse
import json
import sys

PAIRS = {
    "shape": [("a red circle", "a red square"), ("a red circle", "a red star"), ("a red circle", "a red triangle"),
              ("a blue heart", "a blue cross")],
    "colour": [("a red circle", "a blue circle"), ("a red square", "a green square"),
               ("a blue heart", "a yellow heart")],
    "count": [("a red circle", "two red circles"), ("two blue squares", "three blue squares")],
    "relation": [("a red circle above a blue square", "a red circle below a blue square"),
                 ("a red circle above a blue square", "a blue circle above a red square")],
}


def main() -> int:
    import torch

    from brushwork.models.load import load_pipeline

    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="default")
    args = ap.parse_args()
    pipe = load_pipeline(args.model, dtype=torch.float32, hash=False).pipe
    tok, te = pipe.tokenizer, pipe.text_encoder.eval()

    def states(text):
        ids = tok([text], padding="max_length", max_length=tok.model_max_length, return_tensors="pt").input_ids
        with torch.no_grad():
            return te(ids).last_hidden_state[0], len(tok(text).input_ids)

    out = {}
    for kind, pairs in PAIRS.items():
        rows = []
        for a, b in pairs:
            (ha, na), (hb, nb) = states(a), states(b)
            n = max(na, nb)
            tokens = float((ha[:n] - hb[:n]).norm() / ha[:n].norm())
            end = float((ha[na - 1] - hb[nb - 1]).norm() / ha[na - 1].norm())
            rows.append({"a": a, "b": b, "tokens": round(tokens, 3), "end": round(end, 3)})
        out[kind] = {"pairs": rows, "mean_tokens": round(sum(r["tokens"] for r in rows) / len(rows), 3),
                     "mean_end": round(sum(r["end"] for r in rows) / len(rows), 3)}
    print(json.dumps({"model": args.model, **out}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
