"""The UI's edit tabs turn their widgets into request values (no browser, no model)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from brushwork.errors import InvalidParameter
from brushwork.serve.ui import _edit_values


def _layer(painted: bool) -> Image.Image:
    rgba = np.zeros((16, 16, 4), np.uint8)
    if painted:
        rgba[2:6, 3:9] = (255, 255, 255, 255)
    return Image.fromarray(rgba, "RGBA")


def test_inpaint_mask_is_the_painted_strokes():
    background = Image.new("RGB", (16, 16), (10, 20, 30))
    values = _edit_values("inpaint", {"background": background, "layers": [_layer(True), _layer(False)]}, 0.6,
                          "noise")
    mask = np.asarray(values["_mask"])
    assert values["_init"] is background and values["denoising_strength"] == 0.6 and values["inpainting_fill"] == 2
    assert mask.dtype == np.uint8 and (mask[2:6, 3:9] == 255).all() and mask.sum() == 255 * 4 * 6


@pytest.mark.parametrize("kind, image, extra, message", [
    ("inpaint", None, "original", "image: upload an image first"),
    ("inpaint", {"background": None, "layers": []}, "original", "image: upload an image first"),
    ("inpaint", {"background": Image.new("RGB", (16, 16)), "layers": [_layer(False)]}, "original",
     "mask: paint over the area to repaint first"),
    ("inpaint", {"background": Image.new("RGB", (16, 16)), "layers": [_layer(True)]}, "smudge", "unknown fill"),
    ("img2img", None, None, "image: upload an image first"),
    ("outpaint", Image.new("RGB", (16, 16)), "sideways=3", "--extend: 'sideways=3' is not SIDE=PIXELS"),
])
def test_edit_tabs_refuse_in_one_line(kind, image, extra, message):
    with pytest.raises(InvalidParameter, match=message.replace("(", r"\(").replace(")", r"\)")):
        _edit_values(kind, image, 0.75, extra)


def test_outpaint_and_img2img_values():
    image = Image.new("RGB", (16, 16))
    assert _edit_values("outpaint", image, 1.0, "left=8, top=4")["outpaint"] == {"left": 8, "top": 4}
    plain = _edit_values("img2img", image, 0.3, None)
    assert plain["_mask"] is None and plain["denoising_strength"] == 0.3 and "outpaint" not in plain


def test_lora_picker_inserts_the_prompt_tag():
    from brushwork.engine.networks import split_lora_tags
    from brushwork.serve.ui import lora_tag_added

    assert lora_tag_added("a red circle", "shiny", 0.8) == "a red circle <lora:shiny:0.8>"
    again = lora_tag_added("a red circle <lora:shiny:1> <lora:other:0.5>", "shiny", -0.25)
    assert again == "a red circle <lora:other:0.5> <lora:shiny:-0.25>"
    text, uses = split_lora_tags(again)
    assert text == "a red circle" and [(u.name, u.weight) for u in uses] == [("other", 0.5), ("shiny", -0.25)]
    assert lora_tag_added("", "x", 1) == "<lora:x:1>"
