"""Pickles: refused by default, weights_only when allowed, never executed (a marker file proves it)."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import tinymodels as tiny
from brushwork.errors import ModelFileError
from brushwork.models.inspect import inspect_model
from brushwork.models.load import load_pipeline
from brushwork.models.registry import Registry


class Evil:
    """Unpickling this writes a marker file."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').write('pwned')",))


def _malicious(tmp_path, variant):
    marker = tmp_path / "MARKER"
    payload = {"state_dict": {"model.diffusion_model.out.2.weight": torch.zeros(4, 4)}, "evil": Evil(marker)}
    if variant.startswith("plain"):
        path = tmp_path / "evil.ckpt"
        path.write_bytes(pickle.dumps(payload, protocol=2))
    else:
        path = tmp_path / "evil.pt"
        torch.save(payload, path)
    if variant.endswith("renamed"):
        path = path.rename(tmp_path / "evil.safetensors")
    return path, marker


VARIANTS = ["plain", "zip", "plain-renamed", "zip-renamed"]


def test_the_payload_really_is_malicious(tmp_path):
    path, marker = _malicious(tmp_path, "plain")
    pickle.loads(path.read_bytes())  # the unsafe thing brushwork never does
    assert marker.exists()


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("allow", [False, True])
def test_every_interface_refuses_and_nothing_runs(tmp_path, cli, variant, allow):
    path, marker = _malicious(tmp_path, variant)
    flag = ["--allow-pickle"] if allow else []
    words = "weights_only" if allow else "pickle"
    for argv in (["inspect", str(path)], ["add", str(path)],
                 ["convert", str(path), "--to", "safetensors", "-o", str(tmp_path / "out.safetensors")]):
        code, out, err = cli(*argv, *flag)
        assert code == 2, (argv, out, err)
        assert words in err and len(err.strip().splitlines()) == 1
    with pytest.raises(ModelFileError, match=words):
        inspect_model(path, allow_pickle=allow)
    with pytest.raises(ModelFileError, match=words):  # what 'generate --model' calls
        load_pipeline(str(path), allow_pickle=allow)
    with Registry() as reg:
        assert reg.list() == []
    assert not (tmp_path / "out.safetensors").exists()
    assert not marker.exists()


def test_refusal_says_why_and_how_to_convert(tmp_path):
    path, _ = _malicious(tmp_path, "zip-renamed")
    with pytest.raises(ModelFileError) as err:
        inspect_model(path)
    msg = str(err.value)
    assert "arbitrary code" in msg and "models convert" in msg and "--allow-pickle" in msg
    assert "although its name ends in .safetensors" in msg


@pytest.fixture
def benign_ckpt(fixtures, tmp_path):
    """The tiny SD1 checkpoint as an A1111-style .ckpt (torch.save zip with state_dict + global_step)."""
    sd = load_file(str(fixtures["sd1"]["single"]))
    path = tmp_path / "model.ckpt"
    torch.save({"state_dict": sd, "global_step": 470000}, path)
    return path


def test_benign_pickle_loads_only_when_allowed(fixtures, benign_ckpt):
    with pytest.raises(ModelFileError, match="refuses it by default"):
        load_pipeline(str(benign_ckpt), config=fixtures["sd1"]["config"])
    m = load_pipeline(str(benign_ckpt), config=fixtures["sd1"]["config"], allow_pickle=True)
    ref = load_pipeline(str(fixtures["sd1"]["single"]), config=fixtures["sd1"]["config"])
    np.testing.assert_array_equal(tiny.generate(m.pipe), tiny.generate(ref.pipe))
    info = inspect_model(benign_ckpt, allow_pickle=True)
    assert info["format"] == "pickle" and info["kind"] == "sd1" and info["architecture"]["global_step"] == 470000


def test_convert_to_safetensors(fixtures, benign_ckpt, cli, tmp_path):
    code, _, err = cli("convert", str(benign_ckpt), "--to", "safetensors")
    assert code == 2 and "refuses it by default" in err
    code, out, _ = cli("convert", str(benign_ckpt), "--to", "safetensors", "--allow-pickle")
    assert code == 0
    out_path = benign_ckpt.with_suffix(".safetensors")
    converted, original = load_file(str(out_path)), load_file(str(fixtures["sd1"]["single"]))
    assert converted.keys() == original.keys()
    for k in original:
        assert torch.equal(converted[k], original[k])
    assert inspect_model(out_path)["metadata"]["brushwork.global_step"] == "470000"
    code, _, err = cli("convert", str(benign_ckpt), "--to", "safetensors", "--allow-pickle")
    assert code == 2 and "--force" in err
    code, _, err = cli("convert", str(out_path), "--to", "safetensors")
    assert code == 2 and "already a safetensors" in err


def test_folder_with_pickled_weights_is_refused(fixtures, tmp_path):
    import shutil

    folder = tmp_path / "m"
    shutil.copytree(fixtures["sd1"]["folder"], folder)
    st = folder / "unet" / "diffusion_pytorch_model.safetensors"
    torch.save(load_file(str(st)), folder / "unet" / "diffusion_pytorch_model.bin")
    st.unlink()
    with pytest.raises(ModelFileError, match="pickle"):
        load_pipeline(str(folder))
    with pytest.raises(ModelFileError, match="pickle"):
        inspect_model(folder)
    m = load_pipeline(str(folder), allow_pickle=True)  # diffusers reads .bin with weights_only=True
    assert m.kind == "sd1"


@pytest.mark.parametrize("variant", VARIANTS)
def test_engine_and_generate_command_refuse(tmp_path, capsys, variant):
    """The engine's Studio, and ``brushwork generate --model`` with and without ``--allow-pickle``: a one-line
    error that names the pickle, exit code 2, and the payload never runs."""
    from brushwork import cli
    from brushwork.engine import api

    path, marker = _malicious(tmp_path, variant)
    for allow in (False, True):
        with pytest.raises(ModelFileError):
            api.Studio(allow_pickle=allow).model(str(path))
    for flags in ([], ["--allow-pickle"]):
        code = cli.main(["generate", "a red circle", "--model", str(path), *flags])
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and len(err) == 1 and err[0].startswith("error: "), (flags, err)
        assert "pickle" in err[0].lower() or "weights_only" in err[0] or "unpickl" in err[0].lower(), err
    assert not marker.exists()
