"""Write the bundled model's README.md (model card) from an adherence report.json.

    python scripts/write_model_card.py --report outputs/eval-default/report.json \
        --model brushwork/default_model [--training runs/default/model/brushwork_training.json] \
        [--project-readme README.md] [--why-bundled "it is the best model measured so far"]

The adherence table is generated from the report, never typed by hand: in the card, and in the
project README between the ``<!-- adherence:start -->`` and ``<!-- adherence:end -->`` markers.
"""

import argparse
import json
from pathlib import Path

from brushwork.evaluate.adherence import floors_missed, markdown_table
from brushwork.world.holdout import DEFAULT_HOLDOUT, load_holdout

START, END = "<!-- adherence:start -->\n", "<!-- adherence:end -->"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--report", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--training", default=None)
    ap.add_argument("--produced-by", default="the CPU recipe on a 2-core machine")
    ap.add_argument("--project-readme", default=None, help="also refresh the table in this README")
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
    held = sorted(load_holdout().pairs)
    rec = training["recipe"]
    missed = floors_missed(report)
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

- **Training data:** {rec["images"]:,} shapes-world images (seed {rec["seed"]}), made by
  `brushwork dataset make`; the reserved shapes (diamond, crescent) never appear.
- **Held out by scene** (no training image contains them; see `{DEFAULT_HOLDOUT.name}`):
  {", ".join(f"{c} {s}" for c, s in held)}.
- **Recipe:** `brushwork train recipe --work runs/default --max-minutes 120` (resumable; run
  again to continue). VAE {rec["vae_steps"]} steps; UNet + text encoder
  {training["unet_steps_done"]} of {rec["unet_steps"]} steps at batch {rec["unet_batch"]}
  ({"complete" if training["complete"] else "partial: training was stopped at this step"}).
  Produced by {args.produced_by}.

## Adherence

{markdown_table(report, floors=True)}
{verdict}
"""
    (model / "README.md").write_text(card)
    print(model / "README.md")
    if args.project_readme:
        head, rest = readme_text.split(START, 1)
        block = markdown_table(report, floors=True) + "\n" + verdict + "\n"
        readme.write_text(head + START + block + END + rest.split(END, 1)[1])
        print(readme)


if __name__ == "__main__":
    main()
