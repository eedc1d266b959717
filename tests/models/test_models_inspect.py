"""Detection by content: formats, kinds (in agreement with diffusers), broken files, hashes."""

from __future__ import annotations

import hashlib
import json
import struct
import time
import zipfile

import pytest
import torch
from safetensors.torch import save_file

from brushwork.errors import ModelFileError
from brushwork.models import ldm
from brushwork.models.formats import sniff
from brushwork.models.inspect import inspect_model
from brushwork.models.kinds import DIFFUSERS_TO_KIND, classify, diffusers_model_type


def _save(path, tensors, metadata=None):
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(path), metadata=metadata)
    return path


@pytest.fixture(scope="module")
def extra_kinds(tmp_path_factory):
    """VAE, LoRAs (kohya / peft), embeddings and a ControlNet, each as a small safetensors file."""
    import tinymodels

    root = tmp_path_factory.mktemp("kinds")
    pipe = tinymodels.make_pipeline("sd1", seed=3)
    r = torch.randn
    files = {
        "vae": _save(root / "vae.safetensors", ldm.vae_to_ldm(pipe.vae.state_dict(), pipe.vae.config, prefix="")),
        "lora-kohya": _save(root / "lora_k.safetensors", {
            "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k.lora_down.weight": r(4, 768),
            "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k.lora_up.weight": r(320, 4),
            "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k.alpha": torch.tensor(4.0),
            "lora_te_text_model_encoder_layers_0_self_attn_q_proj.lora_down.weight": r(4, 768),
            "lora_te_text_model_encoder_layers_0_self_attn_q_proj.lora_up.weight": r(768, 4),
        }),
        "lora-peft-xl": _save(root / "lora_p.safetensors", {
            "unet.down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k.lora_A.weight": r(8, 2048),
            "unet.down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k.lora_B.weight": r(640, 8),
        }),
        "ti-a1111": _save(root / "emb.safetensors", {"emb_params": r(2, 768)}),
        "ti-sd2": _save(root / "emb2.safetensors", {"<tok>": r(1024)}),
        "ti-sdxl": _save(root / "embxl.safetensors", {"clip_l": r(1, 768), "clip_g": r(1, 1280)}),
        "controlnet": _save(root / "cn.safetensors", {
            "control_model.time_embed.0.weight": r(32, 16),
            "control_model.input_hint_block.0.weight": r(16, 3, 3, 3),
            "control_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight": r(16, 768),
            "control_model.zero_convs.0.0.weight": r(16, 16, 1, 1),
        }),
    }
    return files


EXPECTED = {
    "vae": ("vae", None), "lora-kohya": ("lora", "sd1"), "lora-peft-xl": ("lora", "sdxl"),
    "ti-a1111": ("textual-inversion", "sd1"), "ti-sd2": ("textual-inversion", "sd2"),
    "ti-sdxl": ("textual-inversion", "sdxl"), "controlnet": ("controlnet", "sd1"),
}


@pytest.mark.parametrize("kind", ["sd1", "sd2", "sdxl"])
def test_checkpoints_inspect_as_their_kind_and_agree_with_diffusers(fixtures, kind):
    single = inspect_model(fixtures[kind]["single"])
    folder = inspect_model(fixtures[kind]["folder"])
    assert (single["format"], single["kind"], single["base"]) == ("safetensors", kind, kind)
    assert (folder["format"], folder["kind"]) == ("diffusers-folder", kind)
    arch = single["architecture"]
    assert arch["variant"] == "base" and arch["parameters"] > 0 and arch["dtype"] == "F32"
    assert set(arch["components"]) == {"unet", "vae", "text_encoder"}
    # diffusers' own single-file inference, on the very same tensors
    assert DIFFUSERS_TO_KIND[diffusers_model_type(sniff(fixtures[kind]["single"]).tensors)] == kind
    from safetensors.torch import load_file
    from diffusers.loaders.single_file_utils import infer_diffusers_model_type

    assert DIFFUSERS_TO_KIND[infer_diffusers_model_type(load_file(str(fixtures[kind]["single"])))] == kind


def test_cross_attention_width_is_reported(fixtures):
    widths = {k: inspect_model(fixtures[k]["single"])["architecture"]["cross_attention_dim"] for k in fixtures}
    assert widths == {"sd1": 32, "sd2": 1024, "sdxl": 64}  # tiny widths; real ones map 768/1024/2048


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_other_kinds(extra_kinds, name):
    info = inspect_model(extra_kinds[name])
    assert (info["kind"], info["base"]) == EXPECTED[name]
    dtype = diffusers_model_type(sniff(extra_kinds[name]).tensors)
    if info["kind"] == "controlnet":
        assert DIFFUSERS_TO_KIND[dtype] == "controlnet"  # diffusers agrees
    else:
        # diffusers has no classifier for these: it falls back to "v1" for anything unknown
        assert dtype == "v1"


def test_lora_details(extra_kinds):
    arch = inspect_model(extra_kinds["lora-kohya"])["architecture"]
    assert arch["style"] == "kohya" and arch["rank"] == 4 and arch["cross_attention_dim"] == 768
    assert arch["targets"] == ["text_encoder", "unet"]
    assert inspect_model(extra_kinds["lora-peft-xl"])["architecture"]["style"] == "peft"


def test_width_decides_like_diffusers():
    shapes = {"model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight": {"dtype": "F16", "shape": (320, 1024)},
              "cond_stage_model.transformer.text_model.final_layer_norm.weight": {"dtype": "F16", "shape": (768,)}}
    assert classify(shapes)[0] == "sd2"


def test_extension_is_ignored(fixtures, tmp_path):
    renamed = tmp_path / "weights.ckpt"
    renamed.write_bytes(fixtures["sd1"]["single"].read_bytes())
    info = inspect_model(renamed)
    assert (info["format"], info["kind"]) == ("safetensors", "sd1")


def test_hash_and_short_hash(fixtures):
    path = fixtures["sd1"]["single"]
    info = inspect_model(path, hash=True)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    assert info["sha256"] == digest and info["short_hash"] == digest[:10] and info["hash_scope"] == "file"
    folder = inspect_model(fixtures["sd1"]["folder"], hash=True)
    assert folder["hash_scope"].startswith("diffusers-folder manifest") and len(folder["short_hash"]) == 10


def test_folder_hash_ignores_the_model_card(tmp_path, fixtures):
    import shutil

    f = tmp_path / "m"
    shutil.copytree(fixtures["sd1"]["folder"], f)
    before = inspect_model(f, hash=True)["sha256"]
    (f / "README.md").write_text("---\nlicense: mit\n---\n")
    assert inspect_model(f, hash=True)["sha256"] == before


def test_header_only_inspection_of_a_huge_file_is_instant(tmp_path):
    """A 7 GB (sparse) file: without --hash only the header is read."""
    n = 7 * 10**9 // 2
    header = json.dumps({"model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight":
                         {"dtype": "F16", "shape": [n], "data_offsets": [0, 2 * n]}}).encode()
    path = tmp_path / "huge.safetensors"
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(header)) + header)
        f.truncate(8 + len(header) + 2 * n)
    t = time.perf_counter()
    info = inspect_model(path)
    assert time.perf_counter() - t < 1.0
    assert info["size"] > 7 * 10**9 and info["architecture"]["parameters"] == n


# ---------------------------------------------------------------- broken files


def _broken(tmp_path, fixtures):
    good = fixtures["sd1"]["single"].read_bytes()
    cases = {}
    lfs = tmp_path / "lfs.safetensors"
    lfs.write_text("version https://git-lfs.github.com/spec/v1\noid sha256:" + "0" * 64 + "\nsize 4265146304\n")
    cases["lfs"] = (lfs, "git-lfs pointer")
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(good[: len(good) // 2])
    cases["truncated"] = (cut, "truncated")
    cut_header = tmp_path / "cut_header.safetensors"
    cut_header.write_bytes(good[:100])
    cases["truncated-header"] = (cut_header, "truncated")
    zpath = tmp_path / "model.safetensors"
    with zipfile.ZipFile(zpath, "w") as z:
        z.writestr("readme.txt", "hello")
    cases["zip"] = (zpath, "zip archive")
    html = tmp_path / "v1-5.ckpt"
    html.write_text("<!DOCTYPE html>\n<html><head><title>Sign in</title></head><body>log in</body></html>")
    cases["html"] = (html, "HTML page")
    torn_zip = tmp_path / "torn.ckpt"
    torch.save({"w": torch.zeros(64)}, torn_zip)
    torn_zip.write_bytes(torn_zip.read_bytes()[:200])
    cases["truncated-zip"] = (torn_zip, "truncated zip")
    pick = tmp_path / "pickle.safetensors"
    torch.save({"w": torch.zeros(2)}, pick)
    cases["pickle-renamed"] = (pick, "ends in .safetensors")
    empty = tmp_path / "empty.safetensors"
    empty.write_bytes(b"")
    cases["empty"] = (empty, "empty")
    return cases


@pytest.mark.parametrize("case", ["lfs", "truncated", "truncated-header", "zip", "html", "truncated-zip",
                                  "pickle-renamed", "empty"])
def test_broken_files_explain_themselves(tmp_path, fixtures, cli, case):
    path, words = _broken(tmp_path, fixtures)[case]
    with pytest.raises(ModelFileError) as err:
        inspect_model(path)
    assert words in str(err.value) and "\n" not in str(err.value)
    code, out, errtext = cli("inspect", str(path))
    assert code == 2 and out == "" and errtext.startswith("error: ") and words in errtext
    assert len(errtext.strip().splitlines()) == 1
    code, out, _ = cli("inspect", str(path), "--json")
    assert code == 2 and words in json.loads(out)["error"]


def test_inspect_cli_prints_json(fixtures, cli):
    code, out, _ = cli("inspect", str(fixtures["sdxl"]["single"]), "--hash")
    info = json.loads(out)
    assert code == 0 and info["kind"] == "sdxl" and len(info["short_hash"]) == 10
