"""LoRAs and embeddings at generation time: formats, stacking, weight 0, hashes, refusals (tiny models)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from brushwork.engine.api import Studio
from brushwork.engine.networks import split_lora_tags
from brushwork.engine.params import GenerationParams
from brushwork.errors import BrushworkError, InvalidParameter, ModelFileError, NotFound

sys.path.insert(0, str(Path(__file__).resolve().parent))
import loras  # noqa: E402


def _pipe(folder):
    from brushwork.models.load import load_pipeline

    return load_pipeline(str(folder), dtype=torch.float32).pipe


@pytest.fixture
def lora_dir():
    d = Path(os.environ["BRUSHWORK_HOME"]) / "loras"
    d.mkdir(parents=True)
    return d


@pytest.fixture
def emb_dir():
    d = Path(os.environ["BRUSHWORK_HOME"]) / "embeddings"
    d.mkdir(parents=True)
    return d


def _gen(studio, model, prompt="a red circle", **kw):
    p = GenerationParams.build(prompt=prompt, model=str(model), seed=3, steps=3, **kw)
    g = studio.generate(p)
    return np.asarray(g.images[0]).astype(int), g


def test_prompt_tags_are_parsed_and_removed():
    text, uses = split_lora_tags("a red circle <lora:diamond:0.8>, <LORA:moon>")
    assert text == "a red circle ,"
    assert [(u.name, u.weight) for u in uses] == [("diamond", 0.8), ("moon", 1.0)]
    assert split_lora_tags("no tags here") == ("no tags here", [])


@pytest.mark.parametrize("prompt, says", [
    ("x <lora:diamond:abc>", "'abc' is not a number"),
    ("x <lora::0.5>", "names no LoRA"),
    ("x <lora:a:0.5:0.5>", "more than one weight"),
    ("x <lora:a:nan>", "is not a number"),
    ("x <lora:a:99>", "less than or equal to 10"),
])
def test_bad_prompt_tags_are_one_line(prompt, says):
    with pytest.raises(InvalidParameter) as e:
        split_lora_tags(prompt)
    assert says in str(e.value) and "\n" not in str(e.value)


def test_kohya_lora_changes_the_image_and_weight_zero_is_bit_identical(tiny_model, lora_dir):
    studio = Studio()
    loras.kohya_lora(_pipe(tiny_model), lora_dir / "shiny.safetensors")
    plain, _ = _gen(studio, tiny_model)
    with_lora, g = _gen(studio, tiny_model, "a red circle <lora:shiny:1>")
    assert np.abs(with_lora - plain).max() > 0
    zero, _ = _gen(studio, tiny_model, "a red circle <lora:shiny:0>")
    assert np.array_equal(zero, plain)
    flag_zero, _ = _gen(studio, tiny_model, loras=[{"name": "shiny", "weight": 0}])
    assert np.array_equal(flag_zero, plain)
    again, _ = _gen(studio, tiny_model)  # the adapter is loaded but disabled
    assert np.array_equal(again, plain)
    same, _ = _gen(studio, tiny_model, "a red circle <lora:shiny:1>")
    assert np.array_equal(same, with_lora)
    # the tag is not encoded: the same prompt without it, with --lora, gives the same image
    by_flag, _ = _gen(studio, tiny_model, loras=[{"name": "shiny", "weight": 1}])
    assert np.array_equal(by_flag, with_lora)
    info = g.infotexts[0]
    assert "<lora:shiny:1>" in info.splitlines()[0]
    from brushwork.models.networks import short_hash

    h = short_hash(lora_dir / "shiny.safetensors", "safetensors")
    assert f'Lora hashes: "shiny: {h}"' in info
    assert g.params.lora_hashes == {"shiny": h}


def test_a_second_generation_loads_nothing_again(tiny_model, lora_dir, monkeypatch):
    studio = Studio()
    loras.kohya_lora(_pipe(tiny_model), lora_dir / "shiny.safetensors")
    _gen(studio, tiny_model, "a red circle <lora:shiny:0.7>")
    loaded = studio.model(str(tiny_model))
    calls = []
    for name in ("load_lora_weights", "set_adapters", "fuse_lora"):
        original = getattr(loaded.pipe, name)
        monkeypatch.setattr(loaded.pipe, name, lambda *a, _n=name, _o=original, **k: (calls.append(_n), _o(*a, **k)))
    _gen(studio, tiny_model, "a blue circle <lora:shiny:0.7>")
    assert calls == []
    _gen(studio, tiny_model, "a blue circle <lora:shiny:0.5>")
    assert calls == ["set_adapters"]  # a new weight only re-weights


def test_stacking_two_loras(tiny_model, lora_dir):
    studio = Studio()
    pipe = _pipe(tiny_model)
    loras.kohya_lora(pipe, lora_dir / "a.safetensors", seed=1)
    loras.kohya_lora(pipe, lora_dir / "b.safetensors", seed=2)
    only_a, _ = _gen(studio, tiny_model, "x <lora:a:1>")
    only_b, _ = _gen(studio, tiny_model, "x <lora:b:1>")
    both, g = _gen(studio, tiny_model, "x <lora:a:1> <lora:b:0.5>")
    assert np.abs(both - only_a).max() > 0 and np.abs(both - only_b).max() > 0
    swapped, _ = _gen(studio, tiny_model, "x <lora:b:0.5> <lora:a:1>")
    assert np.abs(swapped - both).max() <= 1
    assert set(g.params.lora_hashes) == {"a", "b"}


def test_a_first_request_may_stack_two_loras_never_loaded_before(tiny_model, lora_dir):
    pipe = _pipe(tiny_model)
    loras.kohya_lora(pipe, lora_dir / "a.safetensors", seed=1)
    loras.kohya_lora(pipe, lora_dir / "b.safetensors", seed=2)
    both, _ = _gen(Studio(), tiny_model, "x <lora:a:1> <lora:b:0.5>")  # both load in one request
    studio = Studio()
    _gen(studio, tiny_model, "x <lora:a:1>")
    _gen(studio, tiny_model, "x <lora:b:1>")
    assert np.abs(_gen(studio, tiny_model, "x <lora:a:1> <lora:b:0.5>")[0] - both).max() <= 1


def test_from_png_reloads_a_lora_by_its_hash(tiny_model, lora_dir, tmp_path):
    from brushwork.models.registry import Registry

    studio = Studio()
    src = loras.kohya_lora(_pipe(tiny_model), tmp_path / "mine.safetensors")
    with Registry() as reg:
        reg.add(src, name="mine")
    first, g = _gen(studio, tiny_model, "x <lora:mine:1>")
    params = GenerationParams.from_json(g.params.to_json())
    with Registry() as reg:  # the user renames it
        reg.remove("mine")
        reg.add(src, name="renamed")
    again = studio.generate(params)
    assert np.array_equal(np.asarray(again.images[0]).astype(int), first)
    other = loras.kohya_lora(_pipe(tiny_model), lora_dir / "mine.safetensors", seed=9)  # same name, other file
    assert other.exists()
    again = studio.generate(params)  # the hash wins over the name
    assert np.array_equal(np.asarray(again.images[0]).astype(int), first)
    with Registry() as reg:
        reg.remove("renamed")
    with pytest.raises(NotFound) as e:
        studio.generate(params)
    assert "none is known with that hash" in str(e.value)


def test_missing_lora_lists_the_known_ones(tiny_model, lora_dir):
    loras.kohya_lora(_pipe(tiny_model), lora_dir / "shiny.safetensors")
    with pytest.raises(NotFound) as e:
        _gen(Studio(), tiny_model, "x <lora:nope:1>")
    assert "no LoRA named 'nope'" in str(e.value) and "known: shiny" in str(e.value)


def test_pickled_lora_is_refused_unless_allowed(tiny_model, lora_dir, tmp_path):
    from safetensors.torch import load_file

    src = loras.kohya_lora(_pipe(tiny_model), tmp_path / "p.safetensors")
    torch.save(load_file(str(src)), lora_dir / "pickled.pt")
    with pytest.raises(ModelFileError) as e:
        _gen(Studio(), tiny_model, "x <lora:pickled:1>")
    assert "pickle" in str(e.value).lower() and "\n" not in str(e.value)
    allowed, _ = _gen(Studio(allow_pickle=True), tiny_model, "x <lora:pickled:1>")
    from_safetensors = loras.kohya_lora(_pipe(tiny_model), lora_dir / "same.safetensors")
    assert from_safetensors.exists()
    same, _ = _gen(Studio(), tiny_model, "x <lora:same:1>")
    assert np.array_equal(allowed, same)


def test_a_lora_for_another_family_is_refused(tiny_model, lora_dir):
    from brushwork.models.networks import FAMILY_TO_KOHYA

    loras.kohya_lora(_pipe(tiny_model), lora_dir / "xl.safetensors",
                     metadata={"ss_base_model_version": FAMILY_TO_KOHYA["sdxl"]})
    with pytest.raises(InvalidParameter) as e:
        _gen(Studio(), tiny_model, "x <lora:xl:1>")
    assert str(e.value) == f"LoRA 'xl' is for sdxl models; '{tiny_model.name}' is sd1"


def test_a_lora_that_does_not_fit_is_one_line(tiny_model, lora_dir):
    other = _pipe(tiny_model)
    loras.kohya_lora(other, lora_dir / "wide.safetensors", text_encoder=False)
    # the same names with other widths: a LoRA made for a model of another size
    from safetensors.torch import load_file, save_file

    sd = {k: (torch.randn(v.shape[0], v.shape[1] * 2) if k.endswith("lora_down.weight") else v)
          for k, v in load_file(str(lora_dir / "wide.safetensors")).items()}
    save_file(sd, str(lora_dir / "wide.safetensors"))
    with pytest.raises(ModelFileError) as e:
        _gen(Studio(), tiny_model, "x <lora:wide:1>")
    assert "does not fit this model" in str(e.value) and "\n" not in str(e.value)


def test_commercial_refuses_a_lora_whose_licence_forbids_it(tiny_model, lora_dir):
    from brushwork.models.licenses import LicenseRefused

    loras.kohya_lora(_pipe(tiny_model), lora_dir / "nc.safetensors", metadata={"modelspec.license": "cc-by-nc-4.0"})
    with pytest.raises(LicenseRefused) as e:
        _gen(Studio(), tiny_model, "x <lora:nc:1>", commercial=True)
    assert "'nc'" in str(e.value) and "cc-by-nc-4.0" in str(e.value)
    with pytest.raises(LicenseRefused):
        _gen(Studio(), tiny_model, "x", loras=[{"name": "nc", "weight": 0.5}], commercial=True)
    _gen(Studio(), tiny_model, "x <lora:nc:1>")  # not commercial: allowed


@pytest.mark.parametrize("a1111", [True, False])
def test_embedding_by_name_in_the_prompt(tiny_model, emb_dir, a1111):
    studio = Studio()
    loras.embedding(_pipe(tiny_model), emb_dir / "shapey.safetensors", a1111=a1111)
    plain, _ = _gen(studio, tiny_model, "a red circle")
    used, g = _gen(studio, tiny_model, "a red shapey")
    other, _ = _gen(studio, tiny_model, "a red star")
    assert np.abs(used - other).max() > 0
    again, _ = _gen(studio, tiny_model, "a red circle")  # loading it changed nothing else
    assert np.array_equal(again, plain)
    from brushwork.models.networks import short_hash

    assert f'TI hashes: "shapey: {short_hash(emb_dir / "shapey.safetensors", "safetensors")}"' in g.infotexts[0]


def test_embedding_answers_to_the_token_it_was_trained_as(tiny_model, emb_dir):
    """``brushwork train embedding --token "<thing>" --out thing-ti.safetensors``: "a red <thing>" with
    ``--embedding thing-ti`` uses it (the file's name works too); without the file the token means nothing."""
    from safetensors.torch import save_file

    studio = Studio()
    width = _pipe(tiny_model).text_encoder.get_input_embeddings().weight.shape[1]
    vectors = torch.randn(2, width, generator=torch.Generator().manual_seed(1))
    save_file({"emb_params": vectors}, str(emb_dir / "thing-ti.safetensors"), metadata={"brushwork.token": "<thing>"})
    save_file({"emb_params": -vectors}, str(emb_dir / "other-ti.safetensors"), metadata={"brushwork.token": "<thing>"})
    by_token, _ = _gen(studio, tiny_model, "a red <thing>", embeddings=["thing-ti"])
    by_name, _ = _gen(studio, tiny_model, "a red thing-ti", embeddings=["thing-ti"])
    without, _ = _gen(studio, tiny_model, "a red <thing>")
    assert np.array_equal(by_token, by_name)
    assert np.abs(by_token - without).max() > 0
    with pytest.raises(InvalidParameter) as e:  # two files trained as the same token: which one is meant?
        _gen(studio, tiny_model, "a red <thing>", embeddings=["thing-ti", "other-ti"])
    assert "'thing-ti' and 'other-ti' were both trained as '<thing>'" in str(e.value) and "\n" not in str(e.value)


def test_embedding_of_another_width_is_refused(tiny_model, emb_dir):
    from safetensors.torch import save_file

    save_file({"emb_params": torch.randn(1, 768)}, str(emb_dir / "wide.safetensors"))
    with pytest.raises(InvalidParameter) as e:
        _gen(Studio(), tiny_model, "x", embeddings=["wide"])
    assert "width 768" in str(e.value)


# ---------------------------------------------------------------- real layouts (SD1.5 names, small widths)


def _sd15_folder(tmp_path):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "models"))
    import tinymodels

    pipe = tinymodels.make_pipeline("sd1")
    folder = tmp_path / "sd15"
    pipe.save_pretrained(folder, safe_serialization=True)
    return folder


@pytest.mark.parametrize("style", ["kohya", "kohya-locon", "peft", "diffusers-old"])
def test_sd15_lora_formats_load_and_match_diffusers(tmp_path, lora_dir, style):
    """Our loading path gives diffusers' own ``load_lora_weights`` result, within 1/255 (UNet-only files:
    diffusers 0.42 drops kohya text-encoder attention LoRAs under transformers 5, which our path keeps)."""
    from diffusers import StableDiffusionPipeline

    folder = _sd15_folder(tmp_path)
    pipe = _pipe(folder)
    path = lora_dir / "f.safetensors"
    if style in ("peft", "diffusers-old"):
        loras.peft_lora(pipe, path, old=style == "diffusers-old")
    else:
        loras.kohya_lora(pipe, path, text_encoder=False, conv=style == "kohya-locon")
    studio = Studio()
    plain, _ = _gen(studio, folder, "a red cat", cfg_scale=5, sampler="DDIM")
    ours, _ = _gen(studio, folder, "a red cat <lora:f:0.8>", cfg_scale=5, sampler="DDIM")
    assert np.abs(ours - plain).max() > 2
    ref = StableDiffusionPipeline.from_pretrained(str(folder), local_files_only=True)
    ref.load_lora_weights(str(path), adapter_name="f")
    ref.set_adapters(["f"], adapter_weights=[0.8])
    studio_ref = Studio()
    loaded = studio_ref.model(str(folder))
    loaded.pipe = ref  # the same engine loop, on diffusers' own LoRA loading
    theirs, _ = _gen(studio_ref, folder, "a red cat", cfg_scale=5, sampler="DDIM")
    assert np.abs(ours - theirs).max() <= 1


def test_kohya_text_encoder_lora_applies(tmp_path, lora_dir):
    folder = _sd15_folder(tmp_path)
    pipe = _pipe(folder)
    from safetensors.torch import load_file, save_file

    loras.kohya_lora(pipe, lora_dir / "te.safetensors")
    te_only = {k: v for k, v in load_file(str(lora_dir / "te.safetensors")).items() if k.startswith("lora_te_")}
    save_file(te_only, str(lora_dir / "te.safetensors"))
    studio = Studio()
    plain, _ = _gen(studio, folder, "a red cat")
    with_te, _ = _gen(studio, folder, "a red cat <lora:te:1>")
    assert np.abs(with_te - plain).max() > 0


def test_sdxl_kohya_lora_is_detected_and_refused_on_sd15(tmp_path, lora_dir):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "models"))
    import tinymodels

    from brushwork.models.inspect import inspect_model

    xl = tinymodels.make_pipeline("sdxl")
    sd = {}
    for name, mod in xl.unet.named_modules():
        if name.endswith("attn2.to_k"):
            key = "lora_unet_" + name.replace(".", "_")
            sd[key + ".lora_down.weight"] = torch.zeros(4, mod.in_features)
            sd[key + ".lora_up.weight"] = torch.zeros(mod.out_features, 4)
    for name, mod in xl.text_encoder_2.named_modules():
        if name.endswith("self_attn.q_proj"):
            key = "lora_te2_text_model_" + name.replace(".", "_")
            sd[key + ".lora_down.weight"] = torch.zeros(4, mod.in_features)
            sd[key + ".lora_up.weight"] = torch.zeros(mod.out_features, 4)
    from safetensors.torch import save_file

    save_file(sd, str(lora_dir / "xl.safetensors"))
    info = inspect_model(lora_dir / "xl.safetensors")
    assert (info["kind"], info["base"]) == ("lora", "sdxl")
    folder = _sd15_folder(tmp_path)
    with pytest.raises(BrushworkError) as e:
        _gen(Studio(), folder, "x <lora:xl:1>")
    assert "is for sdxl models" in str(e.value) and "\n" not in str(e.value)


def test_cli_lora_flag_and_from_png(tiny_model, lora_dir, tmp_path, capsys):
    from brushwork.cli import main
    from brushwork.engine.metadata import params_from_infotext, read_png_info

    loras.kohya_lora(_pipe(tiny_model), lora_dir / "shiny.safetensors")
    base = ["generate", "a red circle", "--seed", "2", "--steps", "2", "--model", str(tiny_model)]
    assert main([*base, "--out", str(tmp_path / "a")]) == 0
    plain = capsys.readouterr().out.split()[0]
    assert main([*base, "--lora", "shiny:0.6", "--out", str(tmp_path / "b")]) == 0
    with_lora = capsys.readouterr().out.split()[0]
    assert main(["generate", "--from-png", with_lora, "--out", str(tmp_path / "c")]) == 0
    again = capsys.readouterr().out.split()[0]
    px = [np.asarray(__import__("PIL.Image", fromlist=["Image"]).open(p)).astype(int) for p in (plain, with_lora, again)]
    assert np.abs(px[1] - px[0]).max() > 0 and np.array_equal(px[1], px[2])
    info = read_png_info(with_lora)["parameters"]
    assert "Lora hashes: " in info
    assert params_from_infotext(info).lora_hashes == GenerationParams.from_json(
        __import__("json").dumps(read_png_info(with_lora)["brushwork"]["params"])).lora_hashes


def test_infotext_hashes_must_be_well_formed():
    from brushwork.engine.metadata import params_from_infotext

    ok = params_from_infotext('x\nSteps: 2, Lora hashes: "a: 0123456789ab, b-c: abcdefabcdef", TI hashes: "t: 00000000aaaa"')
    assert ok.lora_hashes == {"a": "0123456789ab", "b-c": "abcdefabcdef"} and ok.ti_hashes == {"t": "00000000aaaa"}
    with pytest.raises(InvalidParameter) as e:
        params_from_infotext('x\nSteps: 2, Seed: 1, Lora hashes: "a: 123"')
    assert "Lora hashes" in str(e.value)


def test_models_add_registers_a_lora_with_its_family_licence_and_rank(tiny_model, tmp_path):
    from brushwork.models.registry import Registry

    path = loras.kohya_lora(_pipe(tiny_model), tmp_path / "mine.safetensors", rank=4, metadata={
        "ss_base_model_version": "brushwork-shapes", "modelspec.license": "cc-by-nc-4.0"})
    with Registry() as reg:
        e = reg.add(path)
    assert (e.name, e.kind, e.base, e.license) == ("mine", "lora", "brushwork-shapes", "cc-by-nc-4.0")
    assert e.architecture["rank"] == 4 and e.size == path.stat().st_size
