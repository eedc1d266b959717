import json
import subprocess
import sys

from brushwork.cli import main


def run(*args):
    return subprocess.run([sys.executable, "-m", "brushwork", *args], capture_output=True, text=True)


def test_render_then_judge_with_annotation(tmp_path, capsys):
    img = tmp_path / "x.png"
    assert main(["render", "a small red circle on the left", "--out", str(img), "--seed", "4"]) == 0
    assert main(["judge", str(img), "--prompt", "a small red circle on the left", "--annotate", str(tmp_path / "a.png")]) == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    res = json.loads(line)
    assert res["pass"] and {c["check"] for c in res["checks"]} == {"object", "size", "position"}
    (obj,) = res["detected"]["objects"]
    assert obj["shape"] == "circle" and obj["colour"] == "red" and len(obj["bbox"]) == 4
    assert (tmp_path / "a.png").stat().st_size > 0
    assert main(["judge", str(img), "--prompt", "a blue circle"]) == 1


def test_dataset_make_cli(tmp_path):
    assert main(["dataset", "make", "--out", str(tmp_path / "d"), "--count", "5", "--seed", "1", "--size", "32",
                 "--workers", "1"]) == 0
    rows = (tmp_path / "d" / "metadata.jsonl").read_text().splitlines()
    assert len(rows) == 5 and len(list((tmp_path / "d").glob("*.png"))) == 5


def test_bad_input_is_one_line_no_traceback(tmp_path):
    cases = [
        (["judge", str(tmp_path / "missing.png"), "--prompt", "a red circle"], "no such image"),
        (["render", "a plaid circle", "--out", str(tmp_path / "o.png")], "cannot parse 'plaid'"),
        (["dataset", "make", "--out", str(tmp_path / "d"), "--count", "0"], "--count must be at least 1"),
        (["dataset", "make", "--out", "/proc/nope/x", "--count", "2"], "cannot write to"),
        (["dataset", "make", "--out", str(tmp_path / "d"), "--count", "2", "--holdout", str(tmp_path / "none.txt")],
         "cannot read holdout file"),
    ]
    (tmp_path / "bad.png").write_text("<html>not an image</html>")
    cases.append((["judge", str(tmp_path / "bad.png"), "--prompt", "a red circle"], "cannot read"))
    for args, msg in cases:
        r = run(*args)
        assert r.returncode == 2, (args, r.stderr)
        assert "Traceback" not in r.stderr
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and msg in lines[0], r.stderr
