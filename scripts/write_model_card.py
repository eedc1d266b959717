"""Write the bundled model's README.md (model card) from an adherence report.json.

    python scripts/write_model_card.py --report outputs/eval-default/report.json \
        --model brushwork/default_model [--training runs/default/model/brushwork_training.json] \
        [--project-readme README.md] [--versions docs/default-model-versions.jsonl] \
        [--why-bundled "it is the best model measured so far"]

The adherence table is generated from the report, never typed by hand: in the card, and in the
project README between the ``<!-- adherence:start -->`` and ``<!-- adherence:end -->`` markers.
The card lists the chain of training runs from the model's ``brushwork_training.json``. With
``--versions`` the model is recorded as a bundled version (one JSON line: recipe, init, steps,
minutes, scores; rewritten in place when the same model is carded again), and the table of all
versions goes into the card and between the README's ``<!-- versions:start/end -->`` markers.
"""

import argparse
import json
from pathlib import Path

from brushwork.evaluate.adherence import floors_missed, markdown_table
from brushwork.world.holdout import DEFAULT_HOLDOUT, load_holdout

START, END = "<!-- adherence:start -->\n", "<!-- adherence:end -->"
VSTART, VEND = "<!-- versions:start -->\n", "<!-- versions:end -->"


def chain_table(training: dict) -> str:
    """One row per training run of the model's chain (older records without a chain: one row from the recipe)."""
    chain = training.get("chain") or [{"command": "brushwork train recipe", "init": None,
                                       "data_seed": training["recipe"]["seed"], "step_offset": 0,
                                       "unet_steps": training["unet_steps_done"], "complete": training["complete"]}]
    lines = ["| run | command | init model | data seed | UNet steps (batches) | batch | device | minutes | s / UNet step |",
             "|---|---|---|---|---|---|---|---|---|"]
    for i, r in enumerate(chain, 1):
        off, n = r.get("step_offset", 0), r["unet_steps"]
        mins = r.get("minutes")
        spent = "–" if not mins else f"{r['total_minutes']:g} (" + ", ".join(f"{k} {v:g}" for k, v in mins.items()) + ")"
        steps = f"{n:,} ({off:,}–{off + n:,})" + ("" if r.get("complete", True) else ", stopped early")
        init = r.get("init") or "none (from scratch)"
        lines.append(f"| {i} | `{r['command']}` | {init} | {r.get('data_seed', '–')} | {steps} "
                     f"| {r.get('unet_batch', '–')} | {r.get('device', '–')} | {spent} "
                     f"| {r.get('unet_s_per_step', '–')} |")
    return "\n".join(lines) + "\n"


def record_version(path: Path, training: dict, report: dict) -> list[dict]:
    """Add (or refresh, for the same chain) this model's row in the versions file; return all rows."""
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.is_file() else []
    chain = training.get("chain", [])
    runs, steps = len(chain) or 1, training.get("unet_steps_total", training["unet_steps_done"])
    same = bool(rows) and rows[-1]["unet_steps_total"] == steps and rows[-1]["runs"] == runs
    earlier = rows[:-1] if same else rows
    # the version's init is that of its first run: the first after the previous version's runs
    first = chain[min(earlier[-1]["runs"] if earlier else 0, len(chain) - 1)] if chain else {}
    row = {"recipe_version": training.get("recipe_version"), "init": first.get("init"),
           "runs": runs, "unet_steps_total": steps,
           "total_minutes": training.get("total_minutes"), "overall": report["overall"], "unseen": report["unseen"],
           "categories": report["categories"]}
    if same:
        row["version"] = rows[-1]["version"]
        rows[-1] = row
    else:
        row["version"] = len(rows) + 1
        rows.append(row)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return rows


def versions_table(rows: list[dict]) -> str:
    cats = ("single_object", "two_object", "counting", "colors", "position", "color_attr")
    lines = ["| version | recipe | init model | runs | UNet steps | minutes | overall | " + " | ".join(cats) +
             " | unseen |", "|---" * (8 + len(cats)) + "|"]
    for r in rows:
        c = r["categories"]
        lines.append(f"| {r['version']} | v{r['recipe_version']} | {r['init'] or 'none'} | {r['runs']} | "
                     f"{r['unet_steps_total']:,} | {r['total_minutes']} | {r['overall']:.3f} | " +
                     " | ".join(f"{c[k]:.3f}" if k in c else "–" for k in cats) + f" | {r['unseen']:.3f} |")
    return "\n".join(lines) + "\n"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--report", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--training", default=None)
    ap.add_argument("--produced-by", default="the CPU recipe on a 2-core machine")
    ap.add_argument("--project-readme", default=None, help="also refresh the table in this README")
    ap.add_argument("--versions", default=None, help="record the model as a bundled version in this JSONL file")
    ap.add_argument("--why-bundled", default="it is the best model measured so far",
                    help="the reason given for bundling a model that misses a floor (ends the verdict's sentence)")
    args = ap.parse_args()
    if not args.why_bundled.strip(" ."):
        ap.error("--why-bundled must state a reason (got an empty one)")
    report = json.loads(Path(args.report).read_text())
    model = Path(args.model)
    if args.project_readme:  # checked before anything is written
        readme = Path(args.project_readme)
        readme_text = readme.read_text()
        if START not in readme_text or END not in readme_text:
            raise SystemExit(f"error: {readme} has no {START.strip()} ... {END} block")
    training = json.loads(Path(args.training).read_text()) if args.training else json.loads(
        (model / "brushwork_training.json").read_text())
    rows = record_version(Path(args.versions), training, report) if args.versions else []
    held = sorted(load_holdout().pairs)
    rec = training["recipe"]
    missed = floors_missed(report)
    by_seed: dict[int, int] = {}  # the most images any run drew from each data seed
    for r in training.get("chain") or [{"data_seed": rec["seed"], "images": rec["images"]}]:
        seed = r.get("data_seed", rec["seed"])
        by_seed[seed] = max(by_seed.get(seed, 0), r.get("images", rec["images"]))
    data = " and ".join(f"{n:,} of seed {seed}" for seed, n in sorted(by_seed.items()))
    verdict = ("It meets every adherence floor brushwork sets for its default model." if not missed else
               "**It does not meet brushwork's adherence floors for a default model** (" + "; ".join(missed) +
               "): it is bundled because " + args.why_bundled.rstrip(".") + ".")
    card = f"""---
license: apache-2.0
tags:
- text-to-image
- stable-diffusion-architecture
- shapes-world
- brushwork
library_name: diffusers
pipeline_tag: text-to-image
brushwork:
  native_size: {rec["size"]}
  max_size: {rec["size"]}
  holdout: {json.dumps([f"{c} {s}" for c, s in held])}
---
# brushwork default model

A small Stable-Diffusion-architecture model (CLIP text encoder, UNet, VAE; diffusers layout)
trained from scratch on brushwork's procedural **shapes world**: 6 shapes (circle, square,
triangle, star, heart, cross), 10 colours, counts 1–4, sizes, absolute positions and relations,
on plain backgrounds. Native size {rec["size"]}×{rec["size"]} px. Licence: Apache-2.0.

- **Training data:** shapes-world images, {data}, made by
  `brushwork dataset make`; image *i* depends only on the seed and *i*, so a run that used fewer images used the
  first ones (each run's count is in `brushwork_training.json`). The reserved shapes (diamond, crescent) never appear.
- **Held out by scene** (no training image contains them; see `{DEFAULT_HOLDOUT.name}`):
  {", ".join(f"{c} {s}" for c, s in held)}.
- **Recipe** (version {training.get("recipe_version", "?")}): VAE {rec["vae_steps"]} steps; UNet
  {training.get("unet_steps_total", training["unet_steps_done"]):,} steps in all (batch sizes per run below).
  Produced by {args.produced_by}. How each recipe was chosen: `docs/training-log.md` in the brushwork repository.

## How it was trained: the chain of runs

Each run continued from the previous one's model (`--init`), so its batches follow on from those already seen.

{chain_table(training)}
## Adherence

{markdown_table(report, floors=True)}
{verdict}
""" + (f"""
## Versions bundled so far

{versions_table(rows)}""" if rows else "")
    (model / "README.md").write_text(card)
    print(model / "README.md")
    if args.project_readme:
        head, rest = readme_text.split(START, 1)
        block = markdown_table(report, floors=True) + "\n" + verdict + "\n"
        text = head + START + block + END + rest.split(END, 1)[1]
        if rows and VSTART in text and VEND in text:
            vhead, vrest = text.split(VSTART, 1)
            text = vhead + VSTART + versions_table(rows) + VEND + vrest.split(VEND, 1)[1]
        readme.write_text(text)
        print(readme)


if __name__ == "__main__":
    main()
