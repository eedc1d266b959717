"""The adherence benchmark: generate for every prompt, judge every image, report GenEval-style.

``overall`` is the mean of the six GenEval category accuracies (each the fraction of images
that pass); ``absolute_position`` is reported beside them; ``unseen`` is the accuracy on prompts
tagged unseen (they also count in their own categories).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image, ImageDraw

from brushwork.evaluate.prompt_sets import EXTRA_CATEGORIES, GENEVAL_CATEGORIES, BenchPrompt
from brushwork.world.judge import judge

# generate(prompt, first_seed, n) -> n images as (h, w, 3) uint8 arrays, image i from seed first_seed + i
Generate = Callable[[BenchPrompt, int, int], list[np.ndarray]]


def prompt_seed(base: int, index: int) -> int:
    return base + 1000 * index


def renderer_generate(size: int = 64) -> Generate:
    """The ground-truth renderer as a "perfect model"."""
    from brushwork.world.render import render
    from brushwork.world.scene import sample_scene

    def gen(bp: BenchPrompt, seed: int, n: int) -> list[np.ndarray]:
        return [render(sample_scene(bp.spec, seed + i, width=size)) for i in range(n)]

    return gen


def run_adherence(prompts: list[BenchPrompt], generate: Generate, *, images_per_prompt: int = 4, seed: int = 0,
                  model: str = "", settings: dict | None = None, out_dir: str | Path | None = None,
                  progress=None) -> dict:
    """Judge ``images_per_prompt`` images per prompt; ``settings`` (the sampling settings) goes into the report."""
    rows, samples = [], {}
    for j, bp in enumerate(prompts):
        s = prompt_seed(seed, j)
        images = generate(bp, s, images_per_prompt)
        passes = [judge(img, bp.spec).passed for img in images]
        rows.append({"prompt": bp.prompt, "category": bp.category, "unseen": bp.unseen, "seed": s,
                     "passes": passes, "accuracy": float(np.mean(passes))})
        samples.setdefault(bp.category, []).append((images[0], passes[0]))
        if progress:
            progress(j + 1, len(prompts))
    report = summarize(rows, model=model, settings=settings, images_per_prompt=images_per_prompt, seed=seed)
    if out_dir:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / "report.json").write_text(json.dumps(report, indent=1))
        (out / "report.md").write_text(markdown_table(report))
        sample_grid(samples).save(out / "samples.png")
    return report


def summarize(rows: list[dict], **info) -> dict:
    def acc(sel):
        vals = [p for r in rows if sel(r) for p in r["passes"]]
        return float(np.mean(vals)) if vals else None

    cats = {c: acc(lambda r, c=c: r["category"] == c) for c in GENEVAL_CATEGORIES + EXTRA_CATEGORIES}
    cats = {c: v for c, v in cats.items() if v is not None}
    geneval = [cats[c] for c in GENEVAL_CATEGORIES if c in cats]
    return {
        **info,
        "overall": float(np.mean(geneval)) if geneval else None,
        "categories": cats,
        "unseen": acc(lambda r: r["unseen"]),
        "n_prompts": len(rows),
        "n_unseen_prompts": sum(r["unseen"] for r in rows),
        "per_prompt": rows,
    }


def markdown_table(report: dict) -> str:
    about = [f"{report['n_prompts']} prompts, {report.get('images_per_prompt')} images each, "
             f"seed {report.get('seed')}", "judged by brushwork's shapes-world judge"]
    st = report.get("settings")
    if st:
        about.append(f"{st['sampler']}, schedule {st['scheduler']}, {st['steps']} steps, CFG {st['cfg_scale']:g}")
    lines = [f"Adherence of `{report.get('model', '')}` ({'; '.join(about)})", "",
             "| category | accuracy |", "|---|---|"]
    for c, v in report["categories"].items():
        lines.append(f"| {c}{' (not in overall)' if c in EXTRA_CATEGORIES else ''} | {v:.3f} |")
    if report["overall"] is not None:
        lines.append(f"| **overall (GenEval mean of six)** | **{report['overall']:.3f}** |")
    if report["unseen"] is not None:
        lines.append(f"| unseen colour–shape pairs ({report['n_unseen_prompts']} prompts) | {report['unseen']:.3f} |")
    return "\n".join(lines) + "\n"


def sample_grid(samples: dict, per_row: int = 8, scale: int = 2) -> Image.Image:
    """One row per category: first image of its first prompts, green frame = pass, red = fail."""
    rows = []
    for cat, items in samples.items():
        tiles = []
        for img, ok in items[:per_row]:
            t = Image.fromarray(img).resize((img.shape[1] * scale, img.shape[0] * scale), Image.NEAREST)
            framed = Image.new("RGB", (t.width + 4, t.height + 4), (0, 170, 0) if ok else (220, 0, 0))
            framed.paste(t, (2, 2))
            tiles.append(framed)
        rows.append((cat, tiles))
    tw = max(t.width for _, ts in rows for t in ts)
    th = max(t.height for _, ts in rows for t in ts)
    grid = Image.new("RGB", (per_row * tw, len(rows) * (th + 14)), "white")
    d = ImageDraw.Draw(grid)
    for r, (cat, tiles) in enumerate(rows):
        d.text((2, r * (th + 14)), cat, fill="black")
        for c, t in enumerate(tiles):
            grid.paste(t, (c * tw, r * (th + 14) + 14))
    return grid
