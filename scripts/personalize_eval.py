"""Personalisation measured with the judge: a shape the model never saw, learnt from 5 renders.

    HF_HUB_OFFLINE=1 .venv/bin/python scripts/personalize_eval.py --work runs/personalize \\
        --scores outputs/eval-default/report.json [--model default] [--only lora,stack,embedding,dreambooth]
        [--benchmark] [--images-per-prompt 4] [--steps N] [--class-images K] [--captions] [--varied]
        [--varied-backgrounds] [--partner SHAPE[,SHAPE...]] [--seed N]
        [--train-word [--init-class]] [--lora-layers attention|all|cross] [--lora-lr LR] [--lora-batch B]
        [--lora-class-prompts N [--lora-class-images K] [--lora-prior-target noise|base] [--lora-prior-weight W]]
        [--dreambooth-train-word [--word-lr LR]] [--class-prompts N] [--prior-weight W]
        [--dreambooth-prior-target noise|base] [--dreambooth-lr LR] [--embedding-shape SHAPE]

1. Renders 5 images each of "a <colour> diamond" and "a <colour> crescent" (red, blue, green, yellow, purple;
   neither shape is in the default model's training data) at the model's native size; with ``--varied``, of
   several sizes on backgrounds of those 5 colours ("a large red diamond on a blue background"), with
   ``--varied-backgrounds`` on those backgrounds only ("a red diamond on a blue background"); with ``--partner
   SHAPE``, 3 of the 5 beside a SHAPE of another colour ("a red diamond and a green circle", a shape the model
   knows; the judged set then leaves SHAPE out of its two-object and position prompts); with
   ``--captions``, each with its own caption file saying so, instead of the instance prompt "a diamond".
2. Trains, timing each run (``brushwork train`` defaults unless ``--steps``): a diamond LoRA, a crescent LoRA (for
   stacking; ``--lora-class-prompts N``: with prior preservation over N world training captions), a
   textual-inversion token ``<diamond>``, and a DreamBooth of diamonds (class prompt "a square"; with
   ``--class-prompts N``, N captions of the default model's own training distribution, the world's captioner with
   its holdout, so the prior covers every shape, colour, count and layout it knows).
3. Judges 4 images per prompt of a 43-prompt diamond set in five categories (single_object, colors, counting,
   two_object, position), with colours, counts and layouts the 5 images never show:
   - the base model alone (what it does without being taught), the LoRA at weight 1, the LoRA at weight 0
     (bit-identical to the base: checked image by image), the DreamBooth model, and the embedding (prompts with
     ``<diamond>`` for "diamond", judged as the diamond prompt; the same prompts without it as a control;
     ``--embedding-shape SHAPE`` trains it on a shape the model knows instead, as the token ``<sks>``, to show
     what textual inversion does where the frozen UNet can draw the shape);
   - stacking: 10 prompts naming a diamond and a crescent, with both LoRAs at weight 1 (``--stack-weight``);
     before it, the crescent LoRA alone on the crescent's single-object, colour and two-object prompts.
4. With ``--benchmark``, the whole benchmark (``brushwork eval adherence``'s prompts) with the diamond LoRA at
   weight 1 and with the DreamBooth model, against ``--scores`` (the model's own report): the forgetting check.

Floors (issue 21), against the model's own scores from ``--scores``: LoRA single_object ≥ 0.8 × single_object;
stacking ≥ 0.5 × two_object; embedding single_object ≥ 0.5 × single_object; DreamBooth single_object ≥ 0.8 ×
single_object; forgetting: overall drop ≤ 0.03, any category ≤ 0.08. Time limits: LoRA and embedding ≤ 5 minutes,
DreamBooth ≤ 15. Writes ``WORK/report.json`` and prints it.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

COLOURS = ("red", "blue", "green", "yellow", "purple")  # the training renders' colours
LIMITS = {"lora": 5, "embedding": 5, "dreambooth": 15}
TOKEN = "<diamond>"
VARIED_SIZES = ("large ", "small ", "", "large ", "small ")
CLASS_WORD = {"diamond": "square", "crescent": "circle"}  # the nearest shape the model knows
# LoRAs and embeddings train on mirror images too (--flip) only of the shape that looks the same mirrored: the
# crescent's horns point right in every render, and the judge reads a mirrored crescent as no crescent
FLIP = {"diamond": True, "crescent": False}


def partner_shapes(partner: str | None) -> list[str]:
    """``--partner``'s shapes: "circle,square" → ["circle", "square"]; none → []."""
    return partner.split(",") if partner else []


def render_shapes(folder: Path, shape: str, size: int, seed: int = 0, captions: bool = False,
                  varied: bool = False, word: str | None = None, variants: int = 1,
                  backgrounds: bool = False, partner: str | None = None) -> Path:
    """5 renders of ``shape``, one per training colour. Plain: "a <colour> <shape>" (size, place and background
    drawn by the scene sampler, so any colour may be the background). ``varied``: sizes and backgrounds chosen
    too, every background one of the 5 training colours (so no colour the judged set asks for appears);
    ``backgrounds``: only the backgrounds chosen so, the sizes still drawn by the sampler. The
    captions name the shape as ``word`` (an embedding's token) when given. ``partner`` (a shape the model knows):
    renders 1, 3 and 5 show one beside the new shape, in another training colour ("a red diamond and a green
    circle"), so the new shape is seen sharing a picture; several shapes, comma-separated, take turns.
    ``variants`` > 1: each caption file holds that many distinct lines, the first the plain caption and the rest
    the world captioner's phrasings of the same scene (some leave the colour out, some name the background)."""
    import numpy as np
    from PIL import Image

    from brushwork.world.captions import caption
    from brushwork.world.grammar import parse
    from brushwork.world.render import render
    from brushwork.world.scene import sample_scene

    folder.mkdir(parents=True, exist_ok=True)
    for p in folder.iterdir():
        p.unlink()
    partners = partner_shapes(partner)
    for i, colour in enumerate(COLOURS):
        text = f"a {VARIED_SIZES[i] if varied else ''}{colour} {shape}"
        if partners and i % 2 == 0:
            text += f" and a {COLOURS[(i + 2) % len(COLOURS)]} {partners[i // 2 % len(partners)]}"
        if varied or backgrounds:
            text += f" on a {COLOURS[(i + 1) % len(COLOURS)]} background"
        spec = parse(text)
        scene = sample_scene(spec, seed + i, width=size)
        Image.fromarray(render(scene)).save(folder / f"{shape}_{colour}.png")
        if captions:  # what a user would write beside each picture: what it shows, with the new word
            lines, rng = [text], np.random.default_rng([seed, i])
            for _ in range(50 * variants):
                if len(lines) >= variants:
                    break
                line = caption(spec, scene, rng).rstrip(".")
                if line not in lines:
                    lines.append(line)
            (folder / f"{shape}_{colour}.txt").write_text("".join(t.replace(shape, word or shape) + "\n"
                                                                  for t in lines))
    return folder


def world_prompts(n: int, size: int, seed: int = 1) -> list[str]:
    """``n`` distinct captions drawn as the default model's training data draws them (its holdout kept out)."""
    from brushwork.world.dataset import describe_item
    from brushwork.world.holdout import load_holdout

    holdout, out, i = load_holdout(), [], 0
    while len(out) < n:
        text = describe_item(seed, i, size, holdout)[1]["text"]
        if text not in out:
            out.append(text)
        i += 1
    return out


def shape_prompts(shape: str = "diamond", partner: str | None = None) -> list[tuple[str, str]]:
    """43 ``(prompt, category)`` pairs about ``shape``; colours other than the training renders' come first. With
    ``partner`` (the shapes, comma-separated, that the training renders show beside it) the two-object and
    position prompts leave them out, pairings those renders show (42 pairs with one partner, 41 with two)."""
    from brushwork.world.vocab import PALETTE, TRAIN_SHAPES

    new = [c for c in PALETTE if c not in COLOURS]
    colours = new + list(COLOURS)
    others = [s for s in TRAIN_SHAPES if s not in partner_shapes(partner)]
    plural = shape + "s"
    out = [(f"a {shape}", "single_object"), (f"a small {shape}", "single_object"), (f"a large {shape}", "single_object")]
    out += [(f"a {shape} on a {c} background", "single_object") for c in new[:7]]
    out += [(f"a {c} {shape}", "colors") for c in colours[:10]]
    out += [(f"{n} {plural}", "counting") for n in ("two", "three")]
    out += [(f"{n} {c} {plural}", "counting") for n, c in zip(("two", "three", "two", "four", "three", "two"), new)]
    out += [(f"a {shape} and a {o}", "two_object") for o in others]
    out += [(f"a {o} and a {shape}", "two_object") for o in others[:4]]
    rel = ("above", "below", "to the left of", "to the right of")
    out += [(f"a {shape} {r} a {o}", "position") for r, o in zip(rel, others)]
    out += [(f"a {o} {r} a {shape}", "position") for r, o in zip(rel, reversed(others))]
    return out


def stack_prompts() -> list[tuple[str, str]]:
    """The 10 stacking prompts: a diamond and a crescent, with and without colours (none of them the background)."""
    pairs = [(f"a diamond and a {c} crescent", "two_object") for c in ("red", "blue", "green")]
    pairs += [("a diamond and a crescent", "two_object"), ("a crescent and a diamond", "two_object")]
    pairs += [(f"a {a} diamond and a {b} crescent", "two_object")
              for a, b in (("orange", "white"), ("pink", "black"), ("white", "orange"), ("black", "pink"),
                           ("purple", "yellow"))]
    return pairs


def bench_prompts(pairs, replace: tuple[str, str] | None = None):
    """``BenchPrompt``s judged against each pair's own text; with ``replace`` (old, new) the text the model gets has
    ``old`` swapped for ``new`` (the embedding's token), while the judge still reads the original."""
    from brushwork.evaluate.prompt_sets import BenchPrompt
    from brushwork.world.grammar import parse

    out = []
    for text, category in pairs:
        shown = text.replace(*replace) if replace else text
        out.append(BenchPrompt(shown, category, False, parse(text)))
    return out


def train(method: str, images: Path, out: Path, args, **kw) -> dict:
    from brushwork.train.personal import run
    from brushwork.train.personal.inputs import Settings

    s = Settings(method=method, images=str(images), model=args.model, steps=args.steps, out=str(out),
                 work=str(out.parent / f"{out.name}.work"), progress=False, seed=args.seed, **kw)
    t = time.monotonic()
    res = run(s, start=t)
    size = out.stat().st_size if out.is_file() else sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    return {"done": res["done"], "steps": res["step"], "minutes_this_run": round((time.monotonic() - t) / 60, 2),
            "minutes_total": round(res["minutes"], 2), "limit_minutes": LIMITS[method],
            "within_limit": res["minutes"] <= LIMITS[method], "bytes": size, "out": str(out)}


def judged(prompts, generate, n: int, out_dir: Path | None = None) -> dict:
    from brushwork.evaluate.adherence import run_adherence

    rep = run_adherence(prompts, generate, images_per_prompt=n, seed=0, out_dir=out_dir)
    return {"overall": rep["overall"], "categories": rep["categories"], "failure_kinds": rep.get("failure_kinds")}


def main(argv: list[str] | None = None) -> int:
    from brushwork.engine.api import Studio
    from brushwork.engine.bench import engine_generate
    from brushwork.evaluate.prompt_sets import load_prompts
    from brushwork.models.load import load_pipeline

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", required=True)
    ap.add_argument("--model", default="default")
    ap.add_argument("--scores", required=True, help="the model's own benchmark report.json (4 images per prompt)")
    ap.add_argument("--only", default="lora,stack,embedding,dreambooth")
    ap.add_argument("--benchmark", action="store_true", help="also the forgetting checks on the whole benchmark")
    ap.add_argument("--images-per-prompt", type=int, default=4)
    ap.add_argument("--no-base", action="store_true", help="skip judging the base model on the diamond set")
    ap.add_argument("--steps", type=int, default=None, help="override every method's default steps")
    ap.add_argument("--seed", type=int, default=0,
                    help="every training run's seed (initial weights, noise, class images, batch order); the "
                         "training renders and the judged images stay the same")
    ap.add_argument("--class-images", type=int, default=32)
    ap.add_argument("--captions", action="store_true",
                    help="write a caption per training image ('a red diamond'), instead of one instance prompt")
    ap.add_argument("--caption-variants", type=int, default=1,
                    help="with --captions: this many distinct captions per image, one per line (the world captioner's)")
    ap.add_argument("--lora-text-encoder", action="store_true", help="LoRAs train on the text encoder too")
    ap.add_argument("--lora-layers", default="attention",
                    help="LoRAs' UNet layers: attention, all (LoCon) or cross (cross-attention keys and values)")
    ap.add_argument("--lora-class-prompts", type=int, default=0, metavar="N",
                    help="LoRA prior preservation over N world training captions (train lora --class-prompts)")
    ap.add_argument("--lora-class-images", type=int, default=32, help="with --lora-class-prompts: class images")
    ap.add_argument("--lora-lr", type=float, default=None, help="the LoRAs' learning rate (train lora --lr)")
    ap.add_argument("--lora-batch", type=int, default=None, help="the LoRAs' batch (train lora --batch)")
    ap.add_argument("--stack-weight", type=float, default=1.0,
                    help="the weight of each of the two stacked LoRAs (default 1)")
    ap.add_argument("--lora-prior-target", default="noise",
                    help="with --lora-class-prompts: noise or base (train lora --prior-target)")
    ap.add_argument("--lora-prior-weight", type=float, default=1.0,
                    help="with --lora-class-prompts: train lora --prior-weight")
    ap.add_argument("--dreambooth-text-encoder", action="store_true",
                    help="DreamBooth trains the text encoder too (train dreambooth --text-encoder)")
    ap.add_argument("--dreambooth-train-word", action="store_true",
                    help="DreamBooth trains the word diamond's token rows only (train dreambooth --train-word diamond)")
    ap.add_argument("--word-lr", type=float, default=None,
                    help="with --dreambooth-train-word: the word rows' learning rate (train dreambooth --word-lr)")
    ap.add_argument("--dreambooth-lr", type=float, default=None, help="DreamBooth's UNet learning rate (--lr)")
    ap.add_argument("--dreambooth-prior-target", default="noise",
                    help="DreamBooth's class rows learn their noise or the base's prediction (--prior-target)")
    ap.add_argument("--class-prompts", type=int, default=0, metavar="N",
                    help="DreamBooth's prior: N world training captions (--class-prompts FILE) instead of 'a square'")
    ap.add_argument("--prior-weight", type=float, default=1.0, help="DreamBooth's --prior-weight (default 1)")
    ap.add_argument("--varied", action="store_true",
                    help="training renders of several sizes on backgrounds of the training colours")
    ap.add_argument("--varied-backgrounds", action="store_true",
                    help="training renders on backgrounds of the training colours, sizes left to the sampler "
                         "(no background the judged set names is shown)")
    ap.add_argument("--train-word", action="store_true",
                    help="LoRAs also train the shape word's embedding (train lora --train-word diamond|crescent)")
    ap.add_argument("--init-class", action="store_true",
                    help="with --train-word: start the word's vectors from the nearest known shape's "
                         "(--init-word square for diamond, circle for crescent)")
    ap.add_argument("--embedding-shape", default="diamond", metavar="SHAPE",
                    help="the embedding's shape: diamond (default), or one the model knows, trained as <sks> (what "
                         "textual inversion does where the frozen UNet can draw the shape)")
    ap.add_argument("--partner", default=None, metavar="SHAPE[,SHAPE...]",
                    help="3 of the 5 training renders show this known shape beside the new one (several: they take "
                         "turns; the judged set leaves them out of its two-object and position prompts)")
    args = ap.parse_args(argv)
    if args.varied and args.varied_backgrounds:
        ap.error("--varied and --varied-backgrounds: choose one (--varied already varies the backgrounds)")
    from brushwork.world.vocab import TRAIN_SHAPES

    if args.embedding_shape != "diamond" and args.embedding_shape not in TRAIN_SHAPES:
        ap.error(f"--embedding-shape {args.embedding_shape}: diamond or one of the shapes the model knows "
                 f"({', '.join(TRAIN_SHAPES)})")
    for shape in (args.partner.split(",") if args.partner is not None else []):  # "" too is refused
        if shape not in TRAIN_SHAPES:
            ap.error(f"--partner {args.partner}: {shape!r} is not one of the shapes the model knows "
                     f"({', '.join(TRAIN_SHAPES)})")
    if args.caption_variants < 1 or (args.caption_variants > 1 and not args.captions):
        ap.error(f"--caption-variants {args.caption_variants}: a whole number >= 1, above 1 only with --captions")
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    own = json.loads(Path(args.scores).read_text())
    own_cat = own["categories"]
    only = set(args.only.split(","))
    n = args.images_per_prompt
    native = load_pipeline(args.model, hash=False).native_size
    kw = {"captions": args.captions, "varied": args.varied, "variants": args.caption_variants,
          "backgrounds": args.varied_backgrounds, "partner": args.partner}
    diamonds = render_shapes(work / "diamonds", "diamond", native, **kw)
    crescents = render_shapes(work / "crescents", "crescent", native, **kw)
    prompts = bench_prompts(shape_prompts("diamond", args.partner))
    report: dict = {"model": args.model, "images_per_prompt": n, "prompts": len(prompts),
                    "captions": args.captions, "caption_variants": args.caption_variants,
                    "lora_text_encoder": args.lora_text_encoder, "lora_layers": args.lora_layers,
                    "lora_lr": args.lora_lr, "lora_batch": args.lora_batch,
                    "lora_class_prompts": args.lora_class_prompts, "lora_class_images": args.lora_class_images,
                    "lora_prior_target": args.lora_prior_target, "lora_prior_weight": args.lora_prior_weight,
                    "stack_weight": args.stack_weight,
                    "dreambooth_text_encoder": args.dreambooth_text_encoder,
                    "dreambooth_train_word": args.dreambooth_train_word,
                    "dreambooth_prior_target": args.dreambooth_prior_target, "dreambooth_lr": args.dreambooth_lr,
                    "class_prompts": args.class_prompts,
                    "class_images": args.class_images, "prior_weight": args.prior_weight, "word_lr": args.word_lr,
                    "steps": args.steps, "seed": args.seed,
                    "train_word": args.train_word, "varied": args.varied,
                    "varied_backgrounds": args.varied_backgrounds, "partner": args.partner,
                    "init_class": args.init_class,
                    "own": {"overall": own["overall"], "categories": own_cat}, "training": {}, "judged": {}}

    def save():
        (work / "report.json").write_text(json.dumps(report, indent=1))

    studio = Studio()
    gen = lambda **kw: engine_generate(args.model, studio, **kw)[0]  # noqa: E731
    if not args.no_base:
        report["judged"]["base"] = judged(prompts, gen(), n)
    lora = work / "diamond-lora.safetensors"
    lora_kw = {"text_encoder": args.lora_text_encoder, "layers": args.lora_layers}
    if args.lora_lr is not None:
        lora_kw["lr"] = args.lora_lr
    if args.lora_batch is not None:
        lora_kw["batch"] = args.lora_batch
    if args.lora_class_prompts:
        lora_kw |= {"class_prompts": world_prompts(args.lora_class_prompts, native),
                    "class_images": args.lora_class_images, "prior_target": args.lora_prior_target,
                    "prior_weight": args.lora_prior_weight}
    if only & {"lora", "stack"}:
        report["training"]["lora"] = train("lora", diamonds, lora, args, prompt="a diamond", flip=FLIP["diamond"],
                                           **lora_kw,
                                           words=["diamond"] if args.train_word else [],
                                           init_word=CLASS_WORD["diamond"] if args.init_class else None)
        report["judged"]["lora"] = judged(prompts, gen(loras=[{"name": str(lora), "weight": 1}]), n,
                                          work / "judged-lora")
        zero = gen(loras=[{"name": str(lora), "weight": 0}])
        base = gen()
        same = all(np.array_equal(a, b) for bp in prompts[:8] for a, b in zip(zero(bp, 1, 2), base(bp, 1, 2)))
        report["lora_weight_0_bit_identical"] = same
        save()
    if "stack" in only:
        crescent = work / "crescent-lora.safetensors"
        report["training"]["lora_crescent"] = train("lora", crescents, crescent, args, prompt="a crescent",
                                                    flip=FLIP["crescent"], **lora_kw,
                                                    words=["crescent"] if args.train_word else [],
                                                    init_word=CLASS_WORD["crescent"] if args.init_class else None)
        alone = bench_prompts([p for p in shape_prompts("crescent", args.partner)
                               if p[1] in ("single_object", "colors", "two_object")])
        report["judged"]["crescent_lora"] = judged(alone, gen(loras=[{"name": str(crescent), "weight": 1}]), n,
                                                   work / "judged-crescent")
        both = [{"name": str(path), "weight": args.stack_weight} for path in (lora, crescent)]
        report["judged"]["stack"] = judged(bench_prompts(stack_prompts()), gen(loras=both), n, work / "judged-stack")
        save()
    if "embedding" in only:  # written "a red <diamond>", the token it was trained as; judged as "a red diamond"
        shape = args.embedding_shape
        token = TOKEN if shape == "diamond" else "<sks>"
        emb = work / f"{shape}-embedding.safetensors"
        ti_images = render_shapes(work / f"{shape}s-ti", shape, native, word=token, **kw)
        report["training"]["embedding"] = train("embedding", ti_images, emb, args, token=token, prompt=f"a {token}",
                                                flip=FLIP.get(shape, True))
        ti = bench_prompts([p for p in shape_prompts(shape, args.partner) if p[1] in ("single_object", "colors")],
                           replace=(shape, token))
        report["embedding_shape"] = shape
        report["judged"]["embedding"] = judged(ti, gen(embeddings=[str(emb)]), n, work / "judged-embedding")
        report["judged"]["embedding_control"] = judged(ti, gen(), n, work / "judged-embedding-control")
        save()
    if "dreambooth" in only:
        db = work / "diamond-dreambooth"
        classes = {"class_prompts": world_prompts(args.class_prompts, native)} if args.class_prompts else {
            "class_prompt": "a square"}
        report["training"]["dreambooth"] = train("dreambooth", diamonds, db, args, prompt="a diamond",
                                                 class_images=args.class_images, prior_weight=args.prior_weight,
                                                 text_encoder=args.dreambooth_text_encoder,
                                                 words=["diamond"] if args.dreambooth_train_word else [],
                                                 word_lr=args.word_lr, prior_target=args.dreambooth_prior_target,
                                                 **classes,
                                                 **({"lr": args.dreambooth_lr} if args.dreambooth_lr else {}))
        db_gen = lambda: engine_generate(str(db), studio)[0]  # noqa: E731
        report["judged"]["dreambooth"] = judged(prompts, db_gen(), n, work / "judged-dreambooth")
        save()
    if args.benchmark:
        bench = load_prompts()
        if "lora" in only:
            report["benchmark_lora"] = judged(bench, gen(loras=[{"name": str(lora), "weight": 1}]), n,
                                              work / "bench-lora")
            save()
        if "dreambooth" in only:
            report["benchmark_dreambooth"] = judged(bench, engine_generate(str(work / "diamond-dreambooth"),
                                                                           studio)[0], n, work / "bench-dreambooth")
    report["verdict"] = verdict(report, own["overall"], own_cat)
    save()
    print(json.dumps(report, indent=1))
    return 0


def verdict(report: dict, own_overall: float, own: dict) -> dict:
    """Each floor of the issue: the figure, the floor, and whether it holds (absent figures are left out)."""
    out = {}
    j = report["judged"]

    def floor(name, value, bound, ok):
        out[name] = {"value": round(value, 3), "floor": round(bound, 3), "holds": bool(ok)}

    if "lora" in j:
        floor("lora single_object", j["lora"]["categories"]["single_object"], 0.8 * own["single_object"],
              j["lora"]["categories"]["single_object"] >= 0.8 * own["single_object"])
    if "stack" in j:
        floor("stack two_object", j["stack"]["overall"], 0.5 * own["two_object"],
              j["stack"]["overall"] >= 0.5 * own["two_object"])
    if "embedding" in j:
        v = j["embedding"]["categories"]["single_object"]
        shape = report.get("embedding_shape", "diamond")
        floor("embedding single_object" + ("" if shape == "diamond" else f" ({shape}, not the diamond)"), v,
              0.5 * own["single_object"], v >= 0.5 * own["single_object"])
    if "dreambooth" in j:
        v = j["dreambooth"]["categories"]["single_object"]
        floor("dreambooth single_object", v, 0.8 * own["single_object"], v >= 0.8 * own["single_object"])
    for key in ("benchmark_lora", "benchmark_dreambooth"):
        if key in report:
            b = report[key]
            drop = own_overall - b["overall"]
            worst = max(own[c] - b["categories"].get(c, 0.0) for c in own)
            floor(f"{key} overall drop", drop, 0.03, drop <= 0.03)
            floor(f"{key} worst category drop", worst, 0.08, worst <= 0.08)
    for method, t in report["training"].items():
        out[f"{method} minutes"] = {"value": t["minutes_total"], "floor": t["limit_minutes"],
                                    "holds": t["within_limit"]}
    return out


if __name__ == "__main__":
    sys.exit(main())
