"""Infotext formatting and parsing; PNG chunks written and read back."""

import json

import pytest
from PIL import Image

from brushwork.engine.metadata import (
    format_infotext,
    params_from_infotext,
    parse_infotext,
    read_png_info,
    save_png,
)
from brushwork.engine.params import GenerationParams
from brushwork.errors import BrushworkError, InvalidParameter, NotFound

HASH = "0123456789abcdef"


def infotext(params, **kw):
    values = dict(seed=1, width=128, height=128, model_name="shapes", model_hash=HASH,
                  version="0.1.0")
    return format_infotext(params, **{**values, **kw})


def test_format_matches_a1111():
    params = GenerationParams.build(prompt="a red circle", negative_prompt="blurry",
                                    sampler="DPM++ 2M", scheduler="Karras", cfg_scale=7)
    assert infotext(params) == (
        "a red circle\n"
        "Negative prompt: blurry\n"
        "Steps: 20, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 7, Seed: 1, "
        "Size: 128x128, Model hash: 0123456789, Model: shapes, Version: brushwork 0.1.0"
    )


def test_negative_line_omitted_and_values_quoted():
    params = GenerationParams.build(prompt="cat", cfg_scale=7.5)
    text = infotext(params, model_name='my, "odd": model',
                    extra={"Hires upscale": 2, "Size policy": "rounded to 8: 130 -> 128"})
    assert "Negative prompt" not in text
    last = text.splitlines()[-1]
    assert 'Model: "my, \\"odd\\": model"' in last
    assert 'CFG scale: 7.5' in last
    assert last.endswith('Hires upscale: 2, Size policy: "rounded to 8: 130 -> 128", '
                         'Version: brushwork 0.1.0')


def test_round_trip():
    params = GenerationParams.build(
        prompt="line one, (red:1.2)\nline two: with colon",
        negative_prompt="blurry,\nlow quality",
        steps=12, cfg_scale=4.5, sampler="Euler a", scheduler="Automatic",
    )
    extra = {"Hires upscale": 1.5, "Note": 'say "hi", ok'}
    parsed = parse_infotext(infotext(params, seed=42, width=64, height=96, extra=extra))
    assert parsed == {
        "Prompt": params.prompt,
        "Negative prompt": params.negative_prompt,
        "Steps": "12",
        "Sampler": "Euler a",
        "Schedule type": "Automatic",
        "CFG scale": "4.5",
        "Seed": "42",
        "Size": "64x96",
        "Size-1": "64",
        "Size-2": "96",
        "Model hash": "0123456789",
        "Model": "shapes",
        "Hires upscale": "1.5",
        "Note": 'say "hi", ok',
        "Version": "brushwork 0.1.0",
    }


def test_parse_a1111_text_without_negative_and_old_sampler_name():
    text = "a cat\nsitting\nSteps: 30, Sampler: DPM++ 2M Karras, CFG scale: 6, Seed: 7, Size: 512x768"
    info = parse_infotext(text)
    assert info["Prompt"] == "a cat\nsitting" and info["Negative prompt"] == ""
    params = params_from_infotext(text)
    assert (params.sampler, params.scheduler) == ("DPM++ 2M", "Karras")
    assert (params.steps, params.cfg_scale, params.seed) == (30, 6.0, 7)
    assert (params.width, params.height) == (512, 768)


def test_parse_text_without_parameter_line():
    assert parse_infotext("just a prompt") == {"Prompt": "just a prompt", "Negative prompt": ""}


def test_bad_extra_key():
    with pytest.raises(InvalidParameter, match="infotext key"):
        infotext(GenerationParams(), extra={"Bad, key": 1})


def _image():
    image = Image.new("RGB", (8, 8), (10, 20, 30))
    image.putpixel((3, 4), (200, 100, 0))
    return image


def test_save_and_read(tmp_path):
    params = GenerationParams.build(prompt="café ☕", seed=3)  # not Latin-1: goes to iTXt
    text = infotext(params, seed=3)
    path = save_png(_image(), tmp_path / "out.png", text, params.to_json())
    assert path.exists() and [p.name for p in tmp_path.iterdir()] == ["out.png"]
    info = read_png_info(path)
    assert info["parameters"] == text
    assert GenerationParams.from_json(json.dumps(info["brushwork"])) == params
    with Image.open(path) as back:
        assert back.getpixel((3, 4)) == (200, 100, 0)


def test_identical_inputs_identical_bytes(tmp_path):
    params = GenerationParams.build(prompt="square", seed=1)
    a = save_png(_image(), tmp_path / "a.png", infotext(params), params.to_json())
    b = save_png(_image(), tmp_path / "b.png", infotext(params), params.to_json())
    assert a.read_bytes() == b.read_bytes()


def test_save_never_replaces_an_existing_file(tmp_path):
    """Another process's image under the same name stays as it was; no temporary file is left behind."""
    params = GenerationParams.build(prompt="square", seed=1)
    theirs = tmp_path / "00000-1.png"
    theirs.write_bytes(b"someone else's image")
    with pytest.raises(FileExistsError):
        save_png(_image(), theirs, infotext(params), params.to_json())
    assert theirs.read_bytes() == b"someone else's image"
    assert [p.name for p in tmp_path.iterdir()] == ["00000-1.png"]


def test_plain_png_has_no_info(tmp_path):
    path = tmp_path / "plain.png"
    _image().save(path)
    assert read_png_info(path) == {"parameters": None, "brushwork": None}


@pytest.mark.parametrize("content", [b"not an image at all", b"\x89PNG\r\n\x1a\n" + b"\0" * 40])
def test_unreadable_files_raise_one_line(tmp_path, content):
    path = tmp_path / "bad.png"
    path.write_bytes(content)
    with pytest.raises(InvalidParameter) as exc:
        read_png_info(path)
    assert "\n" not in str(exc.value) and "bad.png" in str(exc.value)


def test_jpeg_and_missing_file(tmp_path):
    jpeg = tmp_path / "x.jpg"
    _image().save(jpeg, format="JPEG")
    with pytest.raises(InvalidParameter, match="not a PNG"):
        read_png_info(jpeg)
    with pytest.raises(NotFound):
        read_png_info(tmp_path / "missing.png")


def test_truncated_png(tmp_path):
    good = save_png(_image(), tmp_path / "good.png", "x", "{}")
    cut = tmp_path / "cut.png"
    cut.write_bytes(good.read_bytes()[:60])
    with pytest.raises(BrushworkError):
        read_png_info(cut)


def test_save_rejects_non_object_json(tmp_path):
    with pytest.raises(InvalidParameter):
        save_png(_image(), tmp_path / "x.png", "x", "[1, 2]")
    assert list(tmp_path.iterdir()) == []
