import io

import numpy as np
import pytest
from PIL import Image

from brushwork.world.dataset import make_item
from brushwork.world.degrade import DEGRADATIONS
from brushwork.world.grammar import parse
from brushwork.world.holdout import load_holdout
from brushwork.world.judge import judge
from brushwork.world.negatives import negative
from brushwork.world.render import render
from brushwork.world.scene import sample_scene

# prompt -> the negative kinds that apply to it (every attribute the prompt names)
CASES = {
    "a red circle": ["wrong_shape", "wrong_colour"],
    "a small blue square": ["wrong_shape", "wrong_colour", "wrong_size"],
    "a large heart": ["wrong_shape", "wrong_size"],
    "a yellow star on a black background": ["wrong_shape", "wrong_colour", "wrong_background"],
    "two green triangles": ["wrong_shape", "wrong_colour", "wrong_count"],
    "three stars": ["wrong_shape", "wrong_count"],
    "one red heart": ["wrong_count", "wrong_colour"],
    "four crosses": ["wrong_count"],
    "a red circle on the left": ["wrong_region", "wrong_colour"],
    "a star at the top": ["wrong_region"],
    "a square in the top left corner": ["wrong_region"],
    "a cross in the center": ["wrong_region"],
    "a red circle above a blue square": ["swapped_relation", "wrong_shape", "wrong_colour"],
    "a heart below a cross": ["swapped_relation"],
    "a heart to the left of a cross": ["swapped_relation"],
    "a triangle to the right of a circle": ["swapped_relation"],
    "a red circle and a blue square": ["wrong_shape", "wrong_colour"],
}


@pytest.mark.parametrize("prompt", list(CASES))
def test_true_renders_pass(prompt):
    for seed in range(6):
        v = judge(render(sample_scene(parse(prompt), seed, width=64)), prompt)
        assert v.passed, (seed, [c.to_dict() for c in v.checks])


@pytest.mark.parametrize("prompt, kind", [(p, k) for p, ks in CASES.items() for k in ks + ["blank", "noise"]])
def test_each_violation_fails_with_the_right_check(prompt, kind):
    spec = parse(prompt)
    for seed in range(4):
        img = negative(spec, kind, seed, 64)
        assert img is not None
        v = judge(img, spec)
        assert not v.passed, (kind, seed)
    failed = {c.name for c in v.checks if not c.passed}
    expected = {"wrong_shape": {"object"}, "wrong_colour": {"object"}, "wrong_count": {"count", "object"},
                "swapped_relation": {"relation"}, "wrong_region": {"position"}, "wrong_size": {"size"},
                "wrong_background": {"background"}}.get(kind)
    if expected:
        assert failed & expected, (kind, failed)


def test_extra_objects_do_not_fail_but_exact_counts_do():
    img = render(sample_scene(parse("a red circle, a blue square and a green star"), 1, width=64))
    assert judge(img, "a red circle").passed
    assert judge(img, "a blue square and a green star").passed
    assert judge(img, "one red circle").passed
    assert not judge(img, "two red circles").passed


def test_a_means_at_least_one():
    img = render(sample_scene(parse("three purple hearts"), 2, width=64))
    assert judge(img, "a purple heart").passed
    assert judge(img, "three hearts").passed
    assert not judge(img, "one heart").passed
    assert not judge(img, "four hearts").passed


def test_two_groups_need_distinct_objects():
    img = render(sample_scene(parse("a red circle"), 3, width=64))
    assert not judge(img, "a red circle and a circle").passed


@pytest.mark.parametrize("name", list(DEGRADATIONS))
def test_degraded_renders_still_pass(name):
    ok = []
    for prompt in ["a red circle", "two green triangles", "a heart below a cross", "a large star on a white background"]:
        for seed in range(3):
            ok.append(judge(DEGRADATIONS[name](render(sample_scene(parse(prompt), seed, width=128))), prompt).passed)
    assert np.mean(ok) >= 0.9


def test_training_captions_are_true_of_their_images():
    holdout = load_holdout()
    for i in range(150):
        png, row = make_item(11, i, 64, holdout)
        img = np.asarray(Image.open(io.BytesIO(png)))
        assert judge(img, row["text"]).passed, row["text"]


def test_reserved_shapes_are_judged():
    for prompt in ["a pink diamond", "a white crescent on a blue background"]:
        img = render(sample_scene(parse(prompt), 0, width=64))
        assert judge(img, prompt).passed
        assert not judge(render(sample_scene(parse("a pink square"), 0, width=64)), "a pink diamond").passed
