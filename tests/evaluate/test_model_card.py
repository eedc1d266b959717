"""scripts/write_model_card.py: the card and the README block come from report.json, floors and verdict included."""

import json
import runpy
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "write_model_card.py"
CATS = {"single_object": 0.96, "two_object": 0.5, "counting": 0.39, "colors": 0.9, "position": 0.4,
        "color_attr": 0.41, "absolute_position": 0.1}


def _setup(tmp_path, cats):
    report = {"model": "m", "n_prompts": 7, "images_per_prompt": 4, "seed": 0, "categories": cats,
              "overall": sum(v for c, v in cats.items() if c != "absolute_position") / 6, "unseen": 0.2,
              "n_unseen_prompts": 3}
    (tmp_path / "report.json").write_text(json.dumps(report))
    model = tmp_path / "model"
    model.mkdir()
    recipe = {"images": 50000, "size": 64, "seed": 0, "vae_steps": 2500, "unet_steps": 5200, "unet_batch": 64}
    (model / "brushwork_training.json").write_text(json.dumps({"recipe": recipe, "unet_steps_done": 5200,
                                                               "complete": True}))
    readme = tmp_path / "README.md"
    readme.write_text("# p\n<!-- adherence:start -->\nold table\n<!-- adherence:end -->\ntail\n")
    return model, readme


def _run(monkeypatch, tmp_path, model, readme, *extra):
    monkeypatch.setattr(sys, "argv", ["write_model_card.py", "--report", str(tmp_path / "report.json"),
                                      "--model", str(model), "--project-readme", str(readme), *extra])
    runpy.run_path(str(SCRIPT), run_name="__main__")


def test_card_below_floors_says_so(tmp_path, monkeypatch):
    model, readme = _setup(tmp_path, CATS)
    _run(monkeypatch, tmp_path, model, readme)
    card = (model / "README.md").read_text()
    assert card.startswith("---\nlicense: apache-2.0\n") and "native_size: 64" in card
    assert "| counting | 0.390 | 0.40 | no |" in card
    assert "does not meet brushwork's adherence floors" in card and "counting 0.390 < 0.40" in card
    text = readme.read_text()
    assert "old table" not in text and "| counting | 0.390 | 0.40 | no |" in text and text.endswith("tail\n")
    assert "does not meet" in text
    assert "bundled because it is the best model measured so far." in card


def test_card_gives_the_stated_reason_for_bundling(tmp_path, monkeypatch):
    model, readme = _setup(tmp_path, CATS)
    _run(monkeypatch, tmp_path, model, readme, "--why-bundled", "better models' weights were lost.")
    card = (model / "README.md").read_text()
    assert "bundled because better models' weights were lost." in card and "measured so far" not in card


def test_empty_reason_for_bundling_is_refused_before_writing(tmp_path, monkeypatch, capsys):
    model, readme = _setup(tmp_path, CATS)
    with pytest.raises(SystemExit):
        _run(monkeypatch, tmp_path, model, readme, "--why-bundled", " ")
    assert "--why-bundled must state a reason" in capsys.readouterr().err
    assert not (model / "README.md").exists()


def test_card_meeting_floors(tmp_path, monkeypatch):
    model, readme = _setup(tmp_path, {c: (0.2 if c == "absolute_position" else 0.96) for c in CATS})
    _run(monkeypatch, tmp_path, model, readme)
    assert "It meets every adherence floor" in (model / "README.md").read_text()


def test_readme_without_markers_is_refused_before_writing(tmp_path, monkeypatch):
    model, readme = _setup(tmp_path, CATS)
    readme.write_text("# no markers\n")
    with pytest.raises(SystemExit, match="has no <!-- adherence:start -->"):
        _run(monkeypatch, tmp_path, model, readme)
    assert not (model / "README.md").exists()


def test_card_lists_the_chain_and_versions_accumulate(tmp_path, monkeypatch):
    model, readme = _setup(tmp_path, CATS)
    readme.write_text(readme.read_text() + "<!-- versions:start -->\n<!-- versions:end -->\nend\n")
    run1 = {"command": "brushwork train recipe --work runs/a", "init": None, "data_seed": 0, "step_offset": 0,
            "unet_steps": 3000, "complete": True, "minutes": {"vae": 25.0, "unet": 50.5}, "total_minutes": 75.5,
            "unet_s_per_step": 1.01}
    run2 = {**run1, "command": "brushwork train recipe --work runs/b --init default", "init": "default",
            "step_offset": 3000, "minutes": {"unet": 60.0}, "total_minutes": 60.0}
    recipe = {"images": 50000, "size": 64, "seed": 0, "vae_steps": 2500, "unet_batch": 32}
    versions = tmp_path / "versions.jsonl"
    for chain, total in (([run1], 3000), ([run1, run2], 6000)):
        (model / "brushwork_training.json").write_text(json.dumps(
            {"recipe_version": 11, "recipe": recipe, "unet_steps_done": 3000, "complete": True,
             "unet_steps_total": total, "total_minutes": sum(r["total_minutes"] for r in chain), "chain": chain}))
        _run(monkeypatch, tmp_path, model, readme, "--versions", str(versions))
        _run(monkeypatch, tmp_path, model, readme, "--versions", str(versions))  # carding again: no new version
    card = (model / "README.md").read_text()
    assert "| 2 | `brushwork train recipe --work runs/b --init default` | default | 0 | 3,000 (3,000–6,000) |" in card
    assert "| 1 | v11 | none | 1 | 3,000 | 75.5 |" in card and "| 2 | v11 | default | 2 | 6,000 | 135.5 |" in card
    assert len(versions.read_text().splitlines()) == 2
    text = readme.read_text()
    assert "| 2 | v11 | default | 2 | 6,000 | 135.5 |" in text and text.endswith("end\n")


def test_a_version_of_two_runs_takes_its_first_runs_init_and_lists_each_data_seed(tmp_path, monkeypatch):
    model, readme = _setup(tmp_path, CATS)
    base = {"command": "c", "complete": True, "minutes": {"unet": 1.0}, "total_minutes": 1.0, "unet_steps": 100}
    run1 = {**base, "init": None, "data_seed": 0, "images": 50000, "step_offset": 0}
    run2 = {**base, "init": "default", "data_seed": 1, "images": 160000, "step_offset": 100}
    run3 = {**base, "init": "runs/gpu/te/model", "data_seed": 1, "images": 160000, "step_offset": 200}
    recipe = {"images": 50000, "size": 64, "seed": 0, "vae_steps": 2500, "unet_batch": 32}
    versions = tmp_path / "versions.jsonl"
    for chain in ([run1], [run1, run2, run3]):
        (model / "brushwork_training.json").write_text(json.dumps(
            {"recipe_version": 11, "recipe": recipe, "unet_steps_done": 100, "complete": True,
             "unet_steps_total": 100 * len(chain), "total_minutes": float(len(chain)), "chain": chain}))
        _run(monkeypatch, tmp_path, model, readme, "--versions", str(versions))
    rows = [json.loads(line) for line in versions.read_text().splitlines()]
    assert [r["init"] for r in rows] == [None, "default"]  # not the intermediate model run 3 continued
    _run(monkeypatch, tmp_path, model, readme, "--versions", str(versions))  # carded again: the same row
    assert [json.loads(line)["init"] for line in versions.read_text().splitlines()] == [None, "default"]
    assert "50,000 of seed 0 and 160,000 of seed 1" in (model / "README.md").read_text()
