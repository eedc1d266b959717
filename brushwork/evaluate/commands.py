"""CLI: ``brushwork eval adherence`` and ``brushwork eval judge``."""

from __future__ import annotations

import json
import sys

from brushwork.errors import InvalidParameter


def register(sub) -> None:
    p = sub.add_parser("eval", help="measure models and the judge")
    esub = p.add_subparsers(dest="eval_command", metavar="WHAT")
    a = esub.add_parser("adherence", help="generate for a prompt file, judge every image, write a report")
    a.add_argument("--prompts", help="JSONL prompt file (default: the committed benchmark)")
    a.add_argument("--model", default=None,
                   help="model name or path; 'renderer' uses the ground-truth renderer (default: bundled model)")
    a.add_argument("--images-per-prompt", type=int, default=4)
    a.add_argument("--seed", type=int, default=0)
    a.add_argument("--out", default="outputs/eval", help="report folder (report.json, report.md, samples.png)")
    a.add_argument("--limit", type=int, default=None, help="only the first N prompts")
    a.add_argument("--size", type=int, default=64, help="canvas size for --model renderer")
    a.add_argument("--steps", type=int, default=None, help="denoising steps (default: the engine's, 20)")
    a.add_argument("--cfg", type=float, default=None, help="CFG scale (default: the engine's, 7)")
    a.add_argument("--sampler", default=None, help="sampler name (default: the engine's, DPM++ 2M)")
    a.add_argument("--scheduler", default=None, help="schedule type (default: Automatic)")
    a.set_defaults(handler=_adherence)
    j = esub.add_parser("judge", help="measure the judge on true, degraded and negative renders")
    j.add_argument("--prompts", help="JSONL prompt file (default: the committed benchmark)")
    j.add_argument("--seed", type=int, default=0, help="first seed")
    j.add_argument("--seeds", type=int, default=3, help="number of seeds (renders per prompt: 4 per seed)")
    j.add_argument("--size", type=int, default=64)
    j.add_argument("--limit", type=int, default=None)
    j.add_argument("--workers", type=int, default=None)
    j.set_defaults(handler=_judge)
    p.set_defaults(handler=lambda a: p.print_help(sys.stderr) or 2)


def _adherence(args) -> int:
    from brushwork.evaluate.adherence import renderer_generate, run_adherence
    from brushwork.evaluate.prompt_sets import load_prompts

    if not 1 <= args.images_per_prompt <= 64:
        raise InvalidParameter(f"--images-per-prompt must be 1..64 (got {args.images_per_prompt})")
    given = {field: (flag, value) for field, flag, value in (
        ("steps", "--steps", args.steps), ("cfg_scale", "--cfg", args.cfg), ("sampler", "--sampler", args.sampler),
        ("scheduler", "--scheduler", args.scheduler)) if value is not None}
    overrides = {field: value for field, (_, value) in given.items()}
    settings = None
    if args.model != "renderer":
        from brushwork.engine.params import GenerationParams
        from brushwork.engine.samplers import resolve_sampler

        p = GenerationParams.build(**overrides)  # a bad value fails here, before any model loads
        sampler, schedule = resolve_sampler(p.sampler, p.scheduler)
        settings = {"steps": p.steps, "cfg_scale": p.cfg_scale, "sampler": sampler, "scheduler": schedule}
    elif overrides:
        got = ", ".join(flag for flag, _ in given.values())
        raise InvalidParameter(f"--model renderer takes no sampling settings (got {got})")
    prompts = load_prompts(args.prompts, args.limit)
    if args.model == "renderer":
        generate, name = renderer_generate(args.size), "renderer"
    else:
        from brushwork.engine.bench import engine_generate

        generate, name = engine_generate(args.model, **overrides)

    def progress(i, n):
        if i % 25 == 0 or i == n:
            print(f"{i}/{n} prompts", file=sys.stderr, flush=True)

    report = run_adherence(prompts, generate, images_per_prompt=args.images_per_prompt, seed=args.seed,
                           model=name, settings=settings, out_dir=args.out, progress=progress)
    keys = ("model", "settings", "overall", "categories", "unseen", "n_prompts")
    print(json.dumps({k: report[k] for k in keys}, indent=1))
    print(f"{args.out}/report.json", file=sys.stderr)
    return 0


def _judge(args) -> int:
    from brushwork.evaluate.judge_eval import evaluate_judge
    from brushwork.evaluate.prompt_sets import load_prompts

    if args.seeds < 1:
        raise InvalidParameter("--seeds must be at least 1")
    prompts = load_prompts(args.prompts, args.limit)
    res = evaluate_judge(prompts, seeds=tuple(range(args.seed, args.seed + args.seeds)), size=args.size,
                         workers=args.workers)
    print(json.dumps(res, indent=1))
    return 0
