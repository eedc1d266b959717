"""scripts/accelerator_run.py, dry-run on the CPU: dataset, shared latents, the side-by-side probe."""

import json
import os
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "accelerator_run.py"


def test_probe_only_dry_run_sizes_the_runs_and_shares_the_latents(tmp_path):
    out, work = tmp_path / "out", tmp_path / "work"
    r = subprocess.run([sys.executable, str(SCRIPT), "--out", str(out), "--work", str(work), "--images", "16",
                        "--batch", "2", "--train-minutes", "1", "--probe-seconds", "0.2", "--device", "cpu",
                        "--probe-only", "--variant", "te=--train-text-encoder,--text-encoder-lr,2e-4",
                        "--variant", "frozen="],
                       capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stderr[-2000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["probe_s_per_step"] > 0
    assert summary["unet_steps"] == int(0.8 * 60 / summary["probe_s_per_step"])
    # one latent file, hard-linked into each variant's UNet folder; each variant sees the one dataset
    shared = work / "latents.safetensors"
    for name in ("te", "frozen"):
        assert os.path.samefile(work / name / "unet" / "latents.safetensors", shared)
        assert (work / name / "dataset" / "metadata.jsonl").is_file()
    assert len((work / "dataset" / "metadata.jsonl").read_text().splitlines()) == 16


def test_a_bad_variant_name_is_one_line(tmp_path):
    r = subprocess.run([sys.executable, str(SCRIPT), "--out", str(tmp_path), "--train-minutes", "1",
                        "--variant", "../x=--foo"], capture_output=True, text=True)
    assert r.returncode != 0 and "Traceback" not in r.stderr
    assert r.stderr.strip().splitlines() == ["--variant '../x=--foo': NAME must be letters, digits and _"]
