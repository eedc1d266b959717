"""Measure the judge itself: accuracy on true renders (clean and degraded) and false passes.

For every prompt, ``renders`` true renders at each of ``seeds`` seeds are judged clean and after
each degradation (``world.degrade``); negatives (``world.negatives``) that violate exactly one
named attribute, plus blank and noise images, are judged too and must fail.
"""

from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor

from brushwork.evaluate.prompt_sets import BenchPrompt
from brushwork.world.degrade import DEGRADATIONS
from brushwork.world.judge import judge
from brushwork.world.negatives import KINDS, negative
from brushwork.world.render import render
from brushwork.world.scene import sample_scene


def _evaluate_prompt(args) -> dict:
    j, bp, seeds, renders, size = args
    out = {"truth": [0, 0], "degraded": {k: [0, 0] for k in DEGRADATIONS}, "neg": {k: [0, 0] for k in KINDS},
           "failures": []}
    for s in seeds:
        for r in range(renders):
            seed = (s * 1_000_003 + j * 101 + r) % 2**31
            img = render(sample_scene(bp.spec, seed, width=size))
            ok = judge(img, bp.spec).passed
            out["truth"][0] += ok
            out["truth"][1] += 1
            if not ok:
                out["failures"].append({"prompt": bp.prompt, "seed": seed, "as": "truth"})
            for name, fn in DEGRADATIONS.items():
                ok = judge(fn(img), bp.spec).passed
                out["degraded"][name][0] += ok
                out["degraded"][name][1] += 1
                if not ok:
                    out["failures"].append({"prompt": bp.prompt, "seed": seed, "as": name})
        for kind in KINDS:
            for r in range(2):
                seed = (s * 1_000_003 + j * 101 + 50 + r) % 2**31
                img = negative(bp.spec, kind, seed, size)
                if img is None:
                    continue
                passed = judge(img, bp.spec).passed
                out["neg"][kind][0] += passed
                out["neg"][kind][1] += 1
                if passed:
                    out["failures"].append({"prompt": bp.prompt, "seed": seed, "as": kind})
    return out


def evaluate_judge(prompts: list[BenchPrompt], *, seeds=(0, 1, 2), renders: int = 4, size: int = 64,
                   workers: int | None = None) -> dict:
    workers = workers or min(os.cpu_count() or 1, 4)
    jobs = [(j, bp, tuple(seeds), renders, size) for j, bp in enumerate(prompts)]
    if workers == 1:
        results = list(map(_evaluate_prompt, jobs))
    else:
        with ProcessPoolExecutor(workers) as pool:
            results = list(pool.map(_evaluate_prompt, jobs, chunksize=8))
    truth = [sum(r["truth"][i] for r in results) for i in (0, 1)]
    deg = {k: [sum(r["degraded"][k][i] for r in results) for i in (0, 1)] for k in DEGRADATIONS}
    neg = {k: [sum(r["neg"][k][i] for r in results) for i in (0, 1)] for k in KINDS}
    deg_total = [sum(v[i] for v in deg.values()) for i in (0, 1)]
    neg_total = [sum(v[i] for v in neg.values()) for i in (0, 1)]
    return {
        "prompts": len(prompts),
        "size": size,
        "seeds": list(seeds),
        "renders_per_seed": renders,
        "accuracy_on_truth": truth[0] / truth[1],
        "accuracy_on_degraded": deg_total[0] / deg_total[1],
        "accuracy_by_degradation": {k: v[0] / v[1] for k, v in deg.items()},
        "false_pass_rate": neg_total[0] / max(neg_total[1], 1),
        "false_pass_by_type": {k: (v[0] / v[1] if v[1] else None) for k, v in neg.items()},
        "negatives_by_type": {k: v[1] for k, v in neg.items()},
        "images_judged": truth[1] + deg_total[1] + neg_total[1],
        "failures": [f for r in results for f in r["failures"]][:50],
    }
