import hashlib
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from brushwork.cli import main


def run(*args, env_home):
    env = {**os.environ, "BRUSHWORK_HOME": str(env_home), "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "brushwork", *args], capture_output=True, text=True, env=env)


def sha(path):
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def test_generate_prints_paths_and_writes_metadata(tiny_model, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["generate", "a red circle", "-n", "2", "--seed", "5", "--steps", "3", "--model", str(tiny_model),
                 "--out", str(out), "--grid", "--sampler", "DPM++ 2M Karras"]) == 0
    paths = capsys.readouterr().out.split()
    assert len(paths) == 3 and all(os.path.isfile(p) for p in paths) and "grid" in paths[2]
    assert main(["png-info", paths[1]]) == 0
    info = capsys.readouterr().out
    first = info.splitlines()[0:2]
    assert first[0] == "a red circle"
    assert first[1].startswith("Steps: 3, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 7, Seed: 6, Size: 16x16, "
                               "Model hash: ")
    assert '"seed": 6' in info and '"index": 1' in info
    # re-made alone from its PNG: the same pixels (the metadata says it was made alone)
    assert main(["generate", "--from-png", paths[1], "--out", str(tmp_path / "again")]) == 0
    again = capsys.readouterr().out.split()
    assert len(again) == 1
    a, b = (np.asarray(Image.open(p)).astype(int) for p in (again[0], paths[1]))
    assert np.abs(a - b).mean() < 1.0
    # and the same parameters again give the same file as the first run
    assert main(["generate", "a red circle", "-n", "2", "--seed", "5", "--steps", "3", "--model", str(tiny_model),
                 "--out", str(tmp_path / "third"), "--sampler", "DPM++ 2M Karras"]) == 0
    third = capsys.readouterr().out.split()
    assert sha(third[0]) == sha(paths[0]) and sha(third[1]) == sha(paths[1])


def test_outputs_never_overwrite(tiny_model, tmp_path, capsys):
    for _ in range(2):
        assert main(["generate", "a star", "--seed", "1", "--steps", "2", "--model", str(tiny_model),
                     "--out", str(tmp_path)]) == 0
    a, b = capsys.readouterr().out.split()
    assert a != b and os.path.isfile(a) and os.path.isfile(b)


def test_a_name_taken_by_another_process_moves_the_image_to_the_next_number(tiny_model, tmp_path, monkeypatch):
    """Two processes that pick the same next number: the second one's images go after, nothing is replaced."""
    from brushwork.engine import api
    from brushwork.engine.api import Studio
    from brushwork.engine.params import GenerationParams

    studio = Studio(allow_paths=True)
    gen = studio.generate(GenerationParams.build(prompt="a star", seed=7, steps=2, n=2, model=str(tiny_model)))
    (tmp_path / "00003-7.png").write_bytes(b"theirs")  # written after this process counted the folder
    stale = iter([3])  # the first count is stale: 00003 was free then
    monkeypatch.setattr(api, "_next_index", lambda out, real=api._next_index: next(stale, None) or real(out))
    saved = []
    paths = studio.save(gen, tmp_path, grid=True, on_saved=saved.append)
    assert [p.name for p in paths] == ["00004-7.png", "00005-8.png", "grid-00004-7.png"] and saved == paths
    assert (tmp_path / "00003-7.png").read_bytes() == b"theirs"


def test_random_seed_is_recorded(tiny_model, tmp_path, capsys):
    assert main(["generate", "a star", "--steps", "2", "--model", str(tiny_model), "--out", str(tmp_path)]) == 0
    path = capsys.readouterr().out.split()[0]
    assert main(["png-info", path]) == 0
    assert "Seed: " in capsys.readouterr().out


@pytest.mark.parametrize("args, message", [
    (["--width", "17"], "width 17 must be a positive multiple of 2"),
    (["--width", "4096"], "width: Input should be less than or equal to 2048"),
    (["--width", "0"], "width: Input should be greater than or equal to 1"),
    (["--steps", "0"], "steps: Input should be greater than or equal to 1"),
    (["--steps", "500"], "steps: Input should be less than or equal to 150"),
    (["--cfg", "-1"], "cfg_scale: Input should be greater than or equal to 0"),
    (["--cfg", "99"], "cfg_scale: Input should be less than or equal to 30"),
    (["-n", "0"], "n: Input should be greater than or equal to 1"),
    (["-n", "1000"], "n: Input should be less than or equal to 64"),
    (["--sampler", "Warp Drive"], "unknown sampler 'Warp Drive'"),
    (["--scheduler", "Wobbly"], "unknown schedule type 'Wobbly'"),
    (["--out", "/proc/forbidden"], "cannot write to output directory /proc/forbidden"),
    (["--prompt-override", "(red:abc) circle"], "cannot parse attention weight 'abc' at position"),
    (["--steps", "abc"], "argument --steps: invalid int value: 'abc'"),
    (["--model", "no-such-model"], "no-such-model"),
    (["--from-png", "/nonexistent.png"], "/nonexistent.png"),
    (["--lora", "shiny:abc"], "--lora shiny:abc: the weight 'abc' is not a number"),
    (["--lora", "nope:0.5"], "no LoRA named 'nope' (known: none"),
    (["--prompt-override", "a circle <lora:nope:x>"], "prompt: <lora:nope:x>: the weight 'x' is not a number"),
    (["--embedding", "nothing"], "no embedding named 'nothing'"),
])
def test_bad_input_one_line(tiny_model, tmp_path, args, message):
    prompt = "a red circle"
    if args[0] == "--prompt-override":
        prompt, args = args[1], []
    base = ["generate", prompt, "--steps", "2", "--out", str(tmp_path / "o")]
    if "--model" not in args:
        base += ["--model", str(tiny_model)]
    r = run(*base, *args, env_home=tmp_path / "home")
    assert r.returncode != 0
    assert "Traceback" not in r.stderr
    lines = [line for line in r.stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    assert message in lines[0], r.stderr


def test_samplers_lists_names(capsys):
    assert main(["samplers"]) == 0
    out = capsys.readouterr().out
    for name in ["Euler a", "DPM++ 2M", "DPM++ SDE", "UniPC", "LCM", "PLMS", "Karras", "Exponential"]:
        assert name in out


def test_zero_terminal_snr_model_generates_at_the_default_20_steps(tiny_zero_snr_model, tmp_path, capsys):
    """A model whose scheduler rescales betas to zero terminal SNR (trailing timesteps) generates with the default
    sampler and steps; an explicit Karras schedule that cannot run is refused in one line, without a traceback."""
    model = tiny_zero_snr_model
    assert main(["generate", "a red circle", "--seed", "1", "--model", str(model), "--out", str(tmp_path / "o")]) == 0
    path = capsys.readouterr().out.strip()
    assert Image.open(path).size == (16, 16)
    r = run("generate", "a red circle", "--scheduler", "Karras", "--steps", "20", "--model", str(model),
            "--out", str(tmp_path / "o2"), env_home=tmp_path / "home")
    assert r.returncode != 0 and "Traceback" not in r.stderr
    assert "repeats its first timestep at 20 steps" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def _write(path, image):
    image.save(path)
    return str(path)


def _scene(tmp_path, size=16):
    arr = np.zeros((size, size, 3), np.uint8)
    arr[:] = (30, 60, 160)
    arr[4:8, 8:12] = (230, 40, 40)
    mask = np.zeros((size, size), np.uint8)
    mask[:, : size // 2] = 255
    return (_write(tmp_path / "scene.png", Image.fromarray(arr)),
            _write(tmp_path / "mask.png", Image.fromarray(mask, "L")), arr)


def test_img2img_outpaint_and_hires_print_paths_and_remake(tiny_model, tmp_path, capsys):
    scene, mask, arr = _scene(tmp_path)
    out = str(tmp_path / "out")
    common = ["--steps", "4", "--seed", "3", "--model", str(tiny_model), "--out", out]
    assert main(["img2img", "a green square", "--image", scene, "--mask", mask, "--mask-blur", "0", "--fill", "noise",
                 "-n", "2", *common]) == 0
    paths = capsys.readouterr().out.split()
    assert len(paths) == 2
    edited = np.asarray(Image.open(paths[0])).astype(int)
    assert np.abs(edited[:, 8:] - arr[:, 8:]).max() == 0
    assert main(["png-info", paths[0]]) == 0
    info = capsys.readouterr().out
    assert "Denoising strength: 0.75, Mask blur: 0" in info and '"init_image_sha256": "' in info
    # re-made from the PNG with the same image and mask: the same pixels; with another image: refused
    assert main(["img2img", "--from-png", paths[0], "--image", scene, "--mask", mask, "--out", str(tmp_path / "a")]) == 0
    again = capsys.readouterr().out.split()
    a, b = (np.asarray(Image.open(p)).astype(int) for p in (again[0], paths[0]))
    assert np.abs(a - b).mean() < 1.0  # made alone, not in a batch of 2: the kernels' summation order differs
    other = _write(tmp_path / "other.png", Image.fromarray(255 - arr))
    assert main(["img2img", "--from-png", paths[0], "--image", other, "--mask", mask, "--out", out]) == 2
    assert "image: the parameters were made with a image of sha256" in capsys.readouterr().err

    assert main(["outpaint", "a red circle", "--image", scene, "--extend", "left=8", *common]) == 0
    wide = np.asarray(Image.open(capsys.readouterr().out.split()[0])).astype(int)
    assert wide.shape == (16, 24, 3) and np.abs(wide[:, 8:] - arr).max() == 0

    assert main(["generate", "a red circle", "--hires", "2", "--hires-steps", "2", "--hires-upscaler", "lanczos",
                 "--hires-strength", "0.4", *common]) == 0
    big = capsys.readouterr().out.split()[0]
    assert Image.open(big).size == (32, 32)
    assert "Denoising strength: 0.4, Hires upscale: 2, Hires steps: 2, Hires upscaler: Lanczos" in \
        Image.open(big).info["parameters"]


@pytest.mark.parametrize("command, args, message", [
    ("img2img", ["--mask", "{small}"], "mask: its size 8x8 differs from the image's 16x16"),
    ("img2img", ["--strength", "1.5"], "denoising_strength: Input should be less than or equal to 1"),
    ("img2img", ["--strength", "-0.5"], "denoising_strength: Input should be greater than or equal to 0"),
    ("img2img", ["--fill", "paint"], "unknown fill 'paint'; known: fill, original, noise, nothing"),
    ("img2img", ["--resize-mode", "stretch"], "unknown resize mode 'stretch'; known: just resize"),
    ("img2img", ["--image", "{huge}"], "image: 5000x5000 is over the cap of 16,777,216 pixels"),
    ("img2img", ["--image", "{text}"], "image: not a readable image"),
    ("img2img", ["--mask", "{text}"], "mask: not a readable image"),
    ("img2img", ["--image", "{missing}"], "image: no such file"),
    ("img2img", ["--mask", "{empty}"], "mask: it is empty (nothing to repaint)"),
    ("outpaint", ["--extend", "up=8"], "--extend: 'up=8' is not SIDE=PIXELS"),
    ("outpaint", ["--extend", "left=x"], "--extend: 'x' is not a whole number of pixels"),
    ("outpaint", ["--extend", "left=-8"], "outpaint.left: Input should be greater than or equal to 0"),
    ("outpaint", ["--extend", ""], "--extend: give at least one side"),
    ("generate", ["--hires", "9"], "hr_scale: Input should be less than or equal to 4"),
    ("generate", ["--hires", "2", "--hires-upscaler", "ESRGAN"], "hr_upscaler: Value error, unknown hires upscaler"),
])
def test_image_commands_bad_input_one_line(tiny_model, tmp_path, capsys, command, args, message):
    scene, mask, _ = _scene(tmp_path)
    files = {"small": _write(tmp_path / "small.png", Image.new("L", (8, 8), 255)),
             "huge": _write(tmp_path / "huge.png", Image.new("L", (5000, 5000))),
             "text": str(tmp_path / "notes.png"), "missing": str(tmp_path / "none.png"),
             "empty": _write(tmp_path / "empty.png", Image.new("L", (16, 16)))}
    (tmp_path / "notes.png").write_text("not an image")
    args = [a.format(**files) for a in args]
    out = tmp_path / "out"
    base = [command, "a red circle", "--steps", "2", "--model", str(tiny_model), "--out", str(out)]
    if command != "generate" and "--image" not in args:
        base += ["--image", scene]
    assert main(base + args) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0], err
    assert not out.exists() or not list(out.iterdir())
