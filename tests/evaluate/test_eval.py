import json

import pytest

from brushwork.cli import main
from brushwork.errors import InvalidParameter, PromptError
from brushwork.evaluate.adherence import renderer_generate, run_adherence
from brushwork.evaluate.judge_eval import evaluate_judge
from brushwork.evaluate.prompt_sets import GENEVAL_CATEGORIES, load_prompts


def test_committed_benchmark_shape():
    prompts = load_prompts()
    assert len(prompts) >= 300
    for c in GENEVAL_CATEGORIES:
        assert sum(p.category == c for p in prompts) >= 50
    assert sum(p.unseen for p in prompts) >= 0.1 * len(prompts)
    counts = [g.count for p in prompts if p.category == "counting" for g in p.spec.groups]
    assert sum(c >= 2 for c in counts) > 0.75 * len(counts)
    rels = [p.spec.relation for p in prompts if p.category == "position"]
    assert max(rels.count(r) for r in set(rels)) - min(rels.count(r) for r in set(rels)) <= 1


def test_judge_measures_on_a_sample():
    prompts = load_prompts()[::8]  # every category
    res = evaluate_judge(prompts, seeds=(0,), renders=2, size=64, workers=1)
    assert res["accuracy_on_truth"] >= 0.995
    assert res["accuracy_on_degraded"] >= 0.95
    for kind, rate in res["false_pass_by_type"].items():
        assert rate is None or rate <= 0.01, kind


def test_renderer_is_a_perfect_model(tmp_path):
    prompts = load_prompts()[::10]
    rep = run_adherence(prompts, renderer_generate(64), images_per_prompt=2, model="renderer", out_dir=tmp_path)
    assert rep["overall"] == 1.0 and rep["unseen"] == 1.0
    assert set(GENEVAL_CATEGORIES) <= set(rep["categories"])
    saved = json.loads((tmp_path / "report.json").read_text())
    assert saved["overall"] == 1.0 and len(saved["per_prompt"]) == len(prompts)
    assert "overall" in (tmp_path / "report.md").read_text()
    assert (tmp_path / "samples.png").stat().st_size > 0


def test_broken_generator_scores_zero():
    prompts = load_prompts()[::40]
    import numpy as np
    rep = run_adherence(prompts, lambda bp, s, n: [np.full((64, 64, 3), 255, np.uint8)] * n, images_per_prompt=1)
    assert rep["overall"] == 0.0


@pytest.mark.parametrize("content, err, msg", [
    ('{"prompt": "a red circle", "category": "nope"}\n', InvalidParameter, "unknown category 'nope'"),
    ('{"prompt": "a red zebra", "category": "colors"}\n', PromptError, ":1: cannot parse 'zebra'"),
    ('not json\n', InvalidParameter, ":1: not JSON"),
    ('[1, 2]\n', InvalidParameter, ":1: each line must be a JSON object"),
    ('\n', InvalidParameter, "no prompts"),
])
def test_bad_prompt_files(tmp_path, content, err, msg):
    f = tmp_path / "p.jsonl"
    f.write_text(content)
    with pytest.raises(err, match=msg):
        load_prompts(f)


def test_any_prompt_file_unseen_optional(tmp_path):
    f = tmp_path / "p.jsonl"
    f.write_text('{"prompt": "two red stars", "category": "counting"}\n')
    (p,) = load_prompts(f)
    assert p.unseen is False


def test_eval_cli_renderer(tmp_path, capsys):
    f = tmp_path / "p.jsonl"
    f.write_text('{"prompt": "a blue star", "category": "colors", "unseen": true}\n'
                 '{"prompt": "a circle above a cross", "category": "position"}\n')
    assert main(["eval", "adherence", "--prompts", str(f), "--model", "renderer", "--images-per-prompt", "2",
                 "--out", str(tmp_path / "r")]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["unseen"] == 1.0 and out["categories"] == {"colors": 1.0, "position": 1.0}


@pytest.mark.parametrize("flags, msg", [
    (["--cfg", "99"], "cfg_scale"),
    (["--steps", "0"], "steps"),
    (["--sampler", "Nope"], "unknown sampler 'Nope'"),
    (["--scheduler", "Weekly"], "unknown schedule type 'Weekly'"),
])
def test_eval_cli_bad_settings_fail_before_loading(tmp_path, capsys, flags, msg):
    # a model path that does not exist: the bad setting must be what is reported, on one line
    assert main(["eval", "adherence", "--model", str(tmp_path / "missing"), "--out", str(tmp_path / "r"), *flags]) != 0
    err = capsys.readouterr().err.strip()
    assert msg in err and "\n" not in err and "Traceback" not in err
    assert not (tmp_path / "r").exists()


def test_eval_cli_renderer_refuses_settings(tmp_path, capsys):
    assert main(["eval", "adherence", "--model", "renderer", "--cfg", "5", "--out", str(tmp_path / "r")]) != 0
    assert "--model renderer takes no sampling settings (got --cfg)" in capsys.readouterr().err


def test_settings_reach_the_report_and_table(tmp_path):
    from brushwork.evaluate.adherence import markdown_table

    f = tmp_path / "p.jsonl"
    f.write_text('{"prompt": "a red circle", "category": "single_object"}\n')
    prompts = load_prompts(f)
    settings = {"steps": 12, "cfg_scale": 4.5, "sampler": "Euler", "scheduler": "Karras"}
    rep = run_adherence(prompts, renderer_generate(64), images_per_prompt=1, settings=settings, out_dir=tmp_path)
    assert json.loads((tmp_path / "report.json").read_text())["settings"] == settings
    assert "Euler, schedule Karras, 12 steps, CFG 4.5" in markdown_table(rep)


def test_floors_in_table_and_misses_listed():
    from brushwork.evaluate.adherence import floors_missed, markdown_table

    cats = {"single_object": 0.96, "two_object": 0.5, "counting": 0.39, "colors": 0.9, "position": 0.4,
            "color_attr": 0.41, "absolute_position": 0.1}
    rep = {"n_prompts": 7, "images_per_prompt": 4, "seed": 0, "categories": cats, "overall": 0.593,
           "unseen": 0.2, "n_unseen_prompts": 3}
    assert floors_missed(rep) == ["counting 0.390 < 0.40", "overall 0.593 < 0.70"]
    table = markdown_table(rep, floors=True)
    assert "| counting | 0.390 | 0.40 | no |" in table and "| colors | 0.900 | 0.90 | yes |" in table
    assert "| absolute_position (not in overall) | 0.100 | – | – |" in table
    assert "floor" not in markdown_table(rep)
    assert floors_missed({**rep, "categories": {"single_object": 1.0}, "overall": None}) == \
        ["overall not measured < 0.70"]


def test_report_says_why_images_failed(tmp_path):
    import numpy as np

    f = tmp_path / "p.jsonl"
    f.write_text('{"prompt": "a red circle", "category": "single_object"}\n'
                 '{"prompt": "a blue star", "category": "colors"}\n')
    prompts = load_prompts(f)
    square = load_prompts(_one(tmp_path, "a red square"))[0]
    render = renderer_generate(64)

    def gen(bp, seed, n):  # a red square for the circle; an empty white canvas, then a correct star, for the star
        if bp.category == "single_object":
            return render(square, seed, n)
        return [np.full((64, 64, 3), 255, np.uint8)] + render(bp, seed, n - 1)

    rep = run_adherence(prompts, gen, images_per_prompt=2)
    circle, star = rep["per_prompt"]
    assert circle["passes"] == [False, False] and circle["failures"][0]["check"] == "object"
    assert circle["failures"][0]["found"] == ["red square"]
    assert star["passes"] == [False, True] and star["failures"] == [
        {"check": "object", "detail": "0 blue star(s) found", "found": []}]
    assert rep["failure_kinds"] == {"single_object": {"object": 2}, "colors": {"nothing found": 1}}


def _one(tmp_path, prompt):
    f = tmp_path / "one.jsonl"
    f.write_text(json.dumps({"prompt": prompt, "category": "single_object"}) + "\n")
    return f
