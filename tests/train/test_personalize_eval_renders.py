"""scripts/personalize_eval.py's training renders: with ``backgrounds``, no background the judged set names is
shown, and every picture's first caption names its background."""

import runpy
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from brushwork.world.detect import detect

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "personalize_eval.py"


def test_varied_backgrounds_show_none_of_the_judged_ones(tmp_path):
    script = runpy.run_path(str(SCRIPT), run_name="personalize_eval")
    folder = script["render_shapes"](tmp_path / "d", "diamond", 64, captions=True, variants=3, backgrounds=True)
    judged = {p.split(" on a ")[1].split()[0] for p, _ in script["shape_prompts"]("diamond") if " background" in p}
    assert len(judged) == 5
    training = set(script["COLOURS"])
    assert not judged & training
    seen = set()
    for png in sorted(folder.glob("*.png")):
        background = detect(np.asarray(Image.open(png).convert("RGB"))).background  # as the judge sees it
        shape_colour = png.stem.split("_")[1]
        assert background in training and background != shape_colour
        first = png.with_suffix(".txt").read_text().splitlines()[0]
        assert first == f"a {shape_colour} diamond on a {background} background"
        seen.add(background)
    assert seen == training  # every training colour is some picture's background


def test_plain_renders_let_the_sampler_choose(tmp_path):
    script = runpy.run_path(str(SCRIPT), run_name="personalize_eval")
    folder = script["render_shapes"](tmp_path / "d", "diamond", 64, captions=True)
    assert [p.read_text() for p in sorted(folder.glob("*.txt"))][0] == "a blue diamond\n"


def test_varied_and_varied_backgrounds_together_is_one_line_error(tmp_path, capsys):
    script = runpy.run_path(str(SCRIPT), run_name="personalize_eval")
    with pytest.raises(SystemExit) as e:
        script["main"](["--work", str(tmp_path / "w"), "--scores", str(tmp_path / "s.json"), "--varied",
                        "--varied-backgrounds"])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "--varied and --varied-backgrounds" in err
    assert not (tmp_path / "w").exists()  # nothing written


@pytest.mark.parametrize("partner, judged_prompts", [("circle", 42), ("circle,square", 41)])
def test_partner_renders_show_the_known_shape_and_the_judged_set_leaves_it_out(tmp_path, partner, judged_prompts):
    script = runpy.run_path(str(SCRIPT), run_name="personalize_eval")
    folder = script["render_shapes"](tmp_path / "d", "diamond", 64, captions=True, backgrounds=True, partner=partner)
    partners = partner.split(",")  # renders 1, 3 and 5, in turn
    shown = {}
    for png in sorted(folder.glob("*.png")):
        found = detect(np.asarray(Image.open(png).convert("RGB"))).objects  # as the judge sees them
        shown[png.stem.split("_")[1]] = sorted((o.colour, o.shape) for o in found)
    colours = script["COLOURS"]
    for i, colour in enumerate(colours):
        beside = [(colours[(i + 2) % 5], partners[i // 2 % len(partners)])] if i % 2 == 0 else []
        assert shown[colour] == sorted([(colour, "diamond")] + beside), colour
    assert (folder / "diamond_red.txt").read_text().splitlines()[0] == (
        "a red diamond and a green circle on a blue background")
    judged = script["shape_prompts"]("diamond", partner)
    assert len(judged) == judged_prompts
    assert not any(s in p for s in partners for p, c in judged if c in ("two_object", "position"))
    assert len(script["shape_prompts"]("diamond")) == 43


def test_embedding_shape_must_be_the_diamond_or_a_known_shape(tmp_path, capsys):
    script = runpy.run_path(str(SCRIPT), run_name="personalize_eval")
    with pytest.raises(SystemExit) as e:
        script["main"](["--work", str(tmp_path / "w"), "--scores", str(tmp_path / "s.json"),
                        "--embedding-shape", "crescent"])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "--embedding-shape crescent: diamond or one of the shapes the model knows" in err
    assert not (tmp_path / "w").exists()


@pytest.mark.parametrize("partner", ["crescent", "circle,crescent"])
def test_partner_must_be_a_known_shape(tmp_path, capsys, partner):
    script = runpy.run_path(str(SCRIPT), run_name="personalize_eval")
    with pytest.raises(SystemExit) as e:
        script["main"](["--work", str(tmp_path / "w"), "--scores", str(tmp_path / "s.json"), "--partner", partner])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert f"--partner {partner}: 'crescent' is not one of the shapes the model knows" in err
    assert not (tmp_path / "w").exists()


@pytest.mark.parametrize("bad, said", [("a.safetensors:1", "write NAME=FILE:WEIGHT"),
                                       ("x=a.safetensors:heavy", "'heavy' is not a number"),
                                       ("x=:1", "has no file")])
def test_lora_probe_refuses_a_bad_set_in_one_line(tmp_path, capsys, bad, said):
    probe = runpy.run_path(str(SCRIPT.with_name("lora_probe.py")), run_name="lora_probe")
    with pytest.raises(SystemExit) as e:
        probe["main"](["--out", str(tmp_path / "o"), "--set", bad])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert said in err[-1] and not err[-1].startswith("usage")
    assert not (tmp_path / "o").exists()
