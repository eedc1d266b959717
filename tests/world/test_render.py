import io

import numpy as np
import pytest
from PIL import Image

from brushwork.world import vocab
from brushwork.world.dataset import make_dataset, make_item
from brushwork.world.grammar import parse
from brushwork.world.holdout import Holdout, load_holdout
from brushwork.world.render import render, to_png_bytes
from brushwork.world.scene import sample_scene


def test_same_seed_same_bytes_other_seed_differs():
    spec = parse("two red stars and a blue heart on a white background")
    a = to_png_bytes(render(sample_scene(spec, 7, width=64)))
    b = to_png_bytes(render(sample_scene(spec, 7, width=64)))
    c = to_png_bytes(render(sample_scene(spec, 8, width=64)))
    assert a == b and a != c


def test_scene_respects_spec_and_policy():
    spec = parse("a small red circle in the top left corner on a black background")
    for seed in range(20):
        s = sample_scene(spec, seed, width=128)
        (o,) = s.objects
        assert (o.shape, o.colour, o.size, s.background) == ("circle", "red", "small", "black")
        lo, hi = vocab.SIZE_RANGES["small"]
        assert lo <= o.scale <= hi and o.cx < 0.4 and o.cy < 0.4
        assert abs(o.rotation) <= vocab.MAX_ROTATION_DEG


def test_objects_never_touch_and_render_any_size():
    spec = parse("four large stars")
    for seed in range(10):
        img = render(sample_scene(spec, seed, width=96, height=80))
        assert img.shape == (80, 96, 3)


def test_default_holdout_excluded_by_scene():
    holdout = load_holdout()
    assert ("blue", "star") in holdout.pairs and len(holdout.pairs) >= 5
    for i in range(400):
        _, row = make_item(3, i, 32, holdout)
        for o in row["scene"]["objects"]:
            assert (o["colour"], o["shape"]) not in holdout.pairs, row["text"]
            assert o["shape"] in vocab.TRAIN_SHAPES


def test_custom_holdout_file_and_bad_line(tmp_path):
    f = tmp_path / "h.txt"
    f.write_text("# comment\nred circle\nstar above heart\n")
    h = load_holdout(f)
    assert h == Holdout(frozenset({("red", "circle")}), frozenset({("star", "above", "heart")}))
    f.write_text("red circle\nmauve blob\n")
    import pytest

    from brushwork.errors import InvalidParameter
    with pytest.raises(InvalidParameter, match=r"h.txt:2"):
        load_holdout(f)


def test_dataset_is_deterministic_imagefolder(tmp_path):
    a = make_dataset(tmp_path / "a", 20, seed=5, size=48, holdout=load_holdout(), workers=1)
    b = make_dataset(tmp_path / "b", 20, seed=5, size=48, holdout=load_holdout(), workers=2, chunk=6)
    meta = (a / "metadata.jsonl").read_text()
    assert meta == (b / "metadata.jsonl").read_text()
    import json
    rows = [json.loads(line) for line in meta.splitlines()]
    assert len(rows) == 20 and {"file_name", "text", "scene"} <= set(rows[0])
    for r in rows:
        assert (a / r["file_name"]).read_bytes() == (b / r["file_name"]).read_bytes()
        assert Image.open(io.BytesIO((a / r["file_name"]).read_bytes())).size == (48, 48)
    assert len({r["text"] for r in rows}) == 20  # captions vary


def test_captions_vary_and_sometimes_omit_details():
    rows = [make_item(9, i, 32, load_holdout())[1] for i in range(300)]
    texts = [r["text"] for r in rows]
    assert any(t.startswith(("a picture of", "an image of", "a drawing of", "a render of", "a photo of")) for t in texts)
    named_bg = sum("background" in t for t in texts)
    assert 0.2 * len(texts) < named_bg < 0.9 * len(texts)
    assert any(w in t for t in texts for w in ("tiny", "big", "little"))
    assert np.mean(["small" in t or "large" in t or "tiny" in t or "big" in t or "little" in t for t in texts]) < 0.5


def test_short_prompts_are_common_in_training_captions():
    """The benchmark asks "a star", "two circles", "a square and a triangle": such captions must not be rare."""
    import re

    from brushwork.world.dataset import describe_item

    rows = [describe_item(3, i, 32, load_holdout())[1] for i in range(600)]
    single = [r["text"].rstrip(".") for r in rows if r["category"] == "single"]
    colourless = [t for t in single if not set(re.findall(r"\w+", t)) & set(vocab.COLOURS)]
    assert 0.15 < len(colourless) / len(single) < 0.6
    assert any(re.fullmatch(r"an? \w+", t) for t in single)  # a bare "a star" occurs


def test_recaption_rewrites_captions_keeps_images_and_old_metadata(tmp_path):
    import json

    from brushwork.errors import InvalidParameter
    from brushwork.world.dataset import recaption

    d = make_dataset(tmp_path / "d", 12, seed=4, size=32, holdout=load_holdout(), workers=1)
    before = (d / "metadata.jsonl").read_text()
    pngs = {p.name: p.read_bytes() for p in d.glob("*.png")}
    rows = [json.loads(line) for line in before.splitlines()]
    for r in rows:
        r["text"] = "stale"
    (d / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert recaption(d, seed=4, size=32, holdout=load_holdout()) == 12
    assert (d / "metadata.jsonl").read_text() == before  # the same captions make_dataset writes
    assert "stale" in (d / "metadata.jsonl.previous").read_text()
    assert {p.name: p.read_bytes() for p in d.glob("*.png")} == pngs
    with pytest.raises(InvalidParameter, match="not made with seed 5"):
        recaption(d, seed=5, size=32, holdout=load_holdout())
    assert (d / "metadata.jsonl").read_text() == before  # a refused recaption changes nothing


def test_recaption_refuses_a_foreign_metadata_file(tmp_path):
    from brushwork.errors import InvalidParameter
    from brushwork.world.dataset import recaption

    (tmp_path / "metadata.jsonl").write_text('{"file_name": "cat.png", "text": "a cat"}\n')
    with pytest.raises(InvalidParameter, match="without make_dataset's file_name and scene"):
        recaption(tmp_path)
    assert (tmp_path / "metadata.jsonl").read_text() == '{"file_name": "cat.png", "text": "a cat"}\n'
