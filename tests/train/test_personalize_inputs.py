"""``brushwork train lora|embedding|dreambooth``: the training folder and the flags. Bad input is one line on
stderr (exit 2) and nothing is written."""

import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
import personalize_tiny as tiny  # noqa: E402

from brushwork.errors import InvalidParameter  # noqa: E402
from brushwork.train.personal.inputs import Settings, check_settings, read_folder  # noqa: E402


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return tiny.make_shapes_model(tmp_path_factory.mktemp("shapes") / "model")


@pytest.fixture(autouse=True)
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("BRUSHWORK_HOME", str(tmp_path / "home"))


@pytest.fixture
def cli(monkeypatch, capsys):
    from brushwork import cli as cli_mod

    monkeypatch.setattr(cli_mod, "COMMAND_MODULES", ["brushwork.train.commands"])
    # the CLI quiets the libraries before importing them; in-process they are imported already
    from transformers.utils import logging as tlog

    tlog.disable_progress_bar()

    def run(*argv: str):
        try:
            code = cli_mod.main(["train", *argv])
        except SystemExit as exc:  # argparse's own errors (one line too: cli._Parser)
            code = exc.code
        out = capsys.readouterr()
        return code, out.out, out.err

    return run


def _images(folder: Path, n: int, size=(20, 20)) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(folder / f"im{i}.png")
    return folder


def _bad_folders(tmp: Path) -> dict[str, tuple[Path, str]]:
    cases = {}
    (tmp / "empty").mkdir(parents=True)
    cases["empty"] = (tmp / "empty", "is empty: it needs 3–20 images")
    cases["missing"] = (tmp / "nope", "no such folder")
    d = _images(tmp / "pdf", 4)
    (d / "notes.pdf").write_bytes(b"%PDF-1.4")
    cases["non-image"] = (d, "notes.pdf is not an image")
    d = _images(tmp / "sub", 4)
    (d / "more").mkdir()
    cases["sub-folder"] = (d, "more is a folder")
    d = _images(tmp / "orphan", 4)
    (d / "lost.txt").write_text("a diamond")
    cases["orphan caption"] = (d, "caption file lost.txt has no image")
    d = _images(tmp / "corrupt", 4)
    (d / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    cases["corrupt"] = (d, "cannot read bad.png as an image")
    cases["too few"] = (_images(tmp / "two", 2), "holds 2 images; it needs 3–20")
    cases["too many"] = (_images(tmp / "many", 21, (8, 8)), "holds 21 images; it needs 3–20")
    d = _images(tmp / "empty-caption", 3)
    (d / "im0.txt").write_text("  \n")
    cases["empty caption"] = (d, "caption im0.txt is empty")
    return cases


def _check_one_line(code, err, msg):
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: ") and msg in lines[0], err
    assert "Traceback" not in err


@pytest.mark.parametrize("method", ["lora", "embedding", "dreambooth"])
def test_bad_folders_are_one_line_errors_and_nothing_is_written(tmp_path, cli, model, method):
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    out = out_dir / ("db" if method == "dreambooth" else "x.safetensors")
    extra = {"lora": [], "embedding": ["--token", "<d>"], "dreambooth": ["--class-prompt", "a square"]}[method]
    for name, (folder, msg) in _bad_folders(tmp_path / "in").items():
        code, _, err = cli(method, "--images", str(folder), "--prompt", "a <d>", "--out", str(out),
                           "--model", str(model), *extra)
        _check_one_line(code, err, msg)
        assert list(out_dir.iterdir()) == [], name


def test_bad_flags_are_one_line_errors_and_nothing_is_written(tmp_path, cli, model):
    imgs = _images(tmp_path / "imgs", 3)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    out = str(out_dir / "x.safetensors")
    blank, binary = tmp_path / "blank.txt", tmp_path / "binary.txt"
    blank.write_text("\n  \n")
    binary.write_bytes(b"\xff\xfe\x00a square")
    common = ["--images", str(imgs), "--prompt", "a diamond", "--model", str(model)]
    cases = [
        (["lora", *common, "--out", out, "--rank", "0"], "--rank must be a whole number from 1 to 1024 (got 0)"),
        (["lora", *common, "--out", out, "--rank", "two"], "argument --rank: invalid int value: 'two'"),
        (["lora", *common, "--out", out, "--steps", "0"], "--steps must be a whole number from 1"),
        (["lora", *common, "--out", out, "--steps", "-5"], "--steps must be"),
        (["lora", *common, "--out", out, "--lr", "0"], "--lr must be a number in (0, 1] (got 0.0)"),
        (["lora", *common, "--out", out, "--lr", "nan"], "--lr must be a number in (0, 1]"),
        (["lora", *common, "--out", out, "--lr", "3"], "--lr must be a number in (0, 1]"),
        (["lora", *common, "--out", out, "--alpha", "-1"], "--alpha must be a positive number"),
        (["lora", *common, "--out", out, "--batch", "0"], "--batch must be"),
        (["lora", *common, "--out", out, "--max-minutes", "0"], "--max-minutes must be positive"),
        (["lora", *common, "--out", out, "--layers", "conv"], "--layers must be attention, all or cross (got 'conv')"),
        (["lora", *common, "--out", str(tmp_path / "nowhere" / "x.safetensors")],
         f"the folder {tmp_path / 'nowhere'} does not exist"),
        (["lora", *common, "--out", str(out_dir / "x.ckpt")], "must end in .safetensors"),
        (["lora", *common, "--out", out, "--class-prompt", "a square", "--prior-target", "images"],
         "--prior-target must be noise or base (got 'images')"),
        (["lora", *common, "--out", out, "--model", str(tmp_path / "no-model")], "no such file or folder"),
        (["lora", "--images", str(imgs), "--out", out], "im0.png has no caption file (im0.txt) and no --prompt"),
        (["embedding", *common, "--out", out], "--token must be one word without spaces (got None)"),
        (["embedding", *common, "--out", out, "--token", "<d>"], "--prompt must contain the token <d>"),
        (["embedding", *common, "--out", out, "--token", "diamond", "--prompt", "a diamond"],
         "--token diamond is already a word in the model's tokenizer"),
        (["embedding", *common, "--out", out, "--token", "<d>", "--prompt", "a <d>", "--vectors", "0"],
         "--vectors must be a whole number from 1 to 16"),
        (["dreambooth", *common, "--out", str(out_dir / "db")], "train dreambooth needs --class-prompt"),
        (["dreambooth", *common, "--out", str(out_dir / "db"), "--class-prompt", "a square", "--class-images", "0"],
         "--class-images must be"),
        (["dreambooth", *common, "--out", str(out_dir / "db"), "--class-prompt", "a square", "--prior-weight", "-1"],
         "--prior-weight must be a number >= 0"),
        (["dreambooth", *common, "--out", str(out_dir / "db"), "--class-prompts", str(tmp_path / "none.txt")],
         f"--class-prompts {tmp_path / 'none.txt'}: no such file"),
        (["dreambooth", *common, "--out", str(out_dir / "db"), "--class-prompts", str(blank)],
         "the file holds no prompt"),
        (["dreambooth", *common, "--out", str(out_dir / "db"), "--class-prompts", str(binary)],
         "not a UTF-8 text file"),
        (["dreambooth", *common, "--out", str(out_dir / "db"), "--class-prompt", "a square", "--word-lr", "x"],
         "argument --word-lr: invalid float value: 'x'"),
    ]
    for args, msg in cases:
        code, _, err = cli(*args)
        _check_one_line(code, err, msg)
        assert list(out_dir.iterdir()) == [], args


def test_work_folder_that_is_a_file_and_a_dreambooth_out_that_is_a_file(tmp_path, cli, model):
    imgs = _images(tmp_path / "imgs", 3)
    (tmp_path / "f").write_text("x")
    code, _, err = cli("lora", "--images", str(imgs), "--prompt", "a", "--out", str(tmp_path / "x.safetensors"),
                       "--work", str(tmp_path / "f"), "--model", str(model))
    _check_one_line(code, err, "is a file, not a folder")
    code, _, err = cli("dreambooth", "--images", str(imgs), "--prompt", "a", "--out", str(tmp_path / "f"),
                       "--class-prompt", "a square", "--model", str(model))
    _check_one_line(code, err, "is a file; train dreambooth writes a diffusers folder")


def test_captions_resizing_and_transparency(tmp_path):
    d = tmp_path / "imgs"
    d.mkdir()
    wide = np.zeros((20, 40, 3), np.uint8)
    wide[:, 10:30] = 200  # the centre square is grey, the sides black
    Image.fromarray(wide).save(d / "a.png")
    rgba = np.zeros((32, 32, 4), np.uint8)  # fully transparent: white
    Image.fromarray(rgba, "RGBA").save(d / "b.png")
    Image.fromarray(np.full((30, 30, 3), 50, np.uint8)).save(d / "c.jpg")
    Image.fromarray(np.full((30, 30, 3), 90, np.uint8)).save(d / "d.webp")
    (d / "b.txt").write_text("a  red   diamond \n\n  a diamond on a  blue background\n")  # one caption a line
    (d / ".DS_Store").write_bytes(b"\0")  # hidden files are skipped
    inp = read_folder(d, "a diamond")
    assert inp.files == ["a.png", "b.png", "c.jpg", "d.webp"]
    assert inp.captions == [["a diamond"], ["a red diamond", "a diamond on a blue background"], ["a diamond"],
                            ["a diamond"]]
    px = inp.pixels(16)
    assert px.shape == (4, 16, 16, 3) and px.dtype == np.uint8
    assert np.abs(px[0].astype(int) - 200).max() <= 2  # centre-cropped, not squashed
    assert (px[1] == 255).all()
    assert read_folder(d, "a diamond").sha256 == inp.sha256
    (d / "b.txt").write_text("a blue diamond")
    assert read_folder(d, "a diamond").sha256 != inp.sha256  # a work folder follows its inputs


def test_settings_defaults_and_work_folder():
    s = Settings(method="lora", images="i", out="/x/diamond.safetensors")
    assert (s.steps, s.batch, s.rank, s.alpha) == (400, 16, 8, None)
    assert s.work_dir == Path("/x/diamond.work")
    assert Settings(method="dreambooth", images="i", out="/x/db").work_dir == Path("/x/db.work")
    assert Settings(method="embedding", images="i", out="/x/e.safetensors", work="/w").work_dir == Path("/w")
    with pytest.raises(InvalidParameter, match="--rank must be"):
        check_settings(Settings(method="lora", images="i", out="o", rank=2.5))
    with pytest.raises(InvalidParameter, match="--token must be one word"):
        check_settings(Settings(method="embedding", images="i", out="o", token="two words"))


def test_flip_reaches_the_trainer_from_the_command_line(tmp_path, cli, model):
    from safetensors import safe_open

    imgs = _images(tmp_path / "imgs", 3, size=(16, 16))
    for flag, said in (([], "False"), (["--flip"], "True")):
        out = tmp_path / f"x{len(flag)}.safetensors"
        code, _, err = cli("lora", "--images", str(imgs), "--prompt", "a diamond", "--out", str(out), "--steps", "1",
                           "--batch", "2", "--sample-every", "0", "--model", str(model), *flag)
        assert code == 0, err
        with safe_open(str(out), "pt") as f:
            assert f.metadata()["ss_flip_aug"] == said
