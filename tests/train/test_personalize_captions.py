"""Several captions per training image (one per line of ``x.txt``): each step draws one of them per row."""

import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import personalize_tiny as tiny  # noqa: E402

from brushwork.train.personal.base import Objective, load_base  # noqa: E402
from brushwork.train.personal.dreambooth import write_metadata  # noqa: E402
from brushwork.train.personal.inputs import Settings  # noqa: E402
from brushwork.train.personal.lora import train_lora  # noqa: E402

CAPTIONS = [["a red diamond"], ["a diamond", "a small diamond", "a diamond on the left"], ["a blue diamond"]]


def test_each_row_draws_one_of_its_images_captions(tmp_path):
    base = load_base(str(tiny.make_shapes_model(tmp_path / "shapes")))
    pixels = np.random.default_rng(0).integers(0, 255, (3, tiny.NATIVE, tiny.NATIVE, 3), dtype=np.uint8)
    assert len(Objective(base, pixels, CAPTIONS, seed=0).mean) == 3  # no mirror images unless asked (--flip)
    obj = Objective(base, pixels, CAPTIONS, seed=0, flip=True)
    assert obj.texts == ["a red diamond", "a diamond", "a small diamond", "a diamond on the left", "a blue diamond"]
    assert len(obj.mean) == 5  # images 0 and 2 and their mirror images; image 1 names a side, so it is not mirrored
    assert torch.allclose(obj.mean[3], Objective(base, pixels[:, :, ::-1].copy(), CAPTIONS, seed=0).mean[0])
    rows = torch.arange(5)
    drawn = torch.stack([obj.caption_index(rows, step) for step in range(60)])
    assert set(drawn[:, 0].tolist()) == {0} and set(drawn[:, 3].tolist()) == {0}
    assert set(drawn[:, 2].tolist()) == {4} and set(drawn[:, 4].tolist()) == {4}
    assert set(drawn[:, 1].tolist()) == {1, 2, 3}  # every caption of image 1 is used
    assert torch.equal(obj.caption_index(rows, 7), drawn[7])  # a resumed run draws the same


def test_a_lora_trains_on_caption_files_of_several_lines(tmp_path):
    model = tiny.make_shapes_model(tmp_path / "shapes")
    images = tiny.diamonds(tmp_path / "diamonds", n=3)
    for png in images.glob("*.png"):
        png.with_suffix(".txt").write_text("a diamond\na small diamond\n")
    out = tmp_path / "d.safetensors"
    res = train_lora(Settings(method="lora", images=str(images), out=str(out), model=str(model), steps=3, batch=4,
                              rank=2, sample_every=0, progress=False, words=["diamond"]))
    assert res["done"] and out.is_file()


def test_dreambooth_rows_share_their_images_weight(tmp_path):
    write_metadata(tmp_path, CAPTIONS, "a square", 4, 1.0)
    rows = [json.loads(line) for line in (tmp_path / "metadata.jsonl").read_text().splitlines()]
    weight: dict[str, float] = {}
    for r in rows:
        weight[r["file_name"]] = weight.get(r["file_name"], 0.0) + r["weight"]
    assert [r["text"] for r in rows if r["file_name"] == "instance_01.png"] == CAPTIONS[1]
    assert all(abs(weight[f"instance_{i:02d}.png"] - 1 / 3) < 1e-9 for i in range(3))
    assert abs(sum(weight.values()) - 2.0) < 1e-9  # the class rows weigh as much as the instances together
