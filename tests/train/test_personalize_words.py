"""``brushwork train lora --train-word``: the words' token embeddings train with the LoRA, travel in the file as
kohya/A1111 bundled embeddings, and replace the word in prompts while the LoRA is applied (tiny models)."""

import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

sys.path.insert(0, str(Path(__file__).resolve().parent))
import personalize_tiny as tiny  # noqa: E402

from brushwork.engine.api import Studio  # noqa: E402
from brushwork.engine.params import GenerationParams  # noqa: E402
from brushwork.errors import InvalidParameter, ModelFileError  # noqa: E402
from brushwork.train.personal.inputs import Settings  # noqa: E402
from brushwork.train.personal.lora import train_lora  # noqa: E402
from brushwork.train.personal.words import TrainedWords  # noqa: E402

KEY = "bundle_emb.diamond.string_to_param.*"


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("words")
    model = tiny.make_shapes_model(root / "shapes")
    images = tiny.diamonds(root / "diamonds")
    out = root / "diamond.safetensors"
    res = train_lora(Settings(method="lora", images=str(images), out=str(out), prompt="a diamond", model=str(model),
                              steps=4, batch=2, lr=5e-2, rank=4, sample_every=0, progress=False, words=["diamond"]))
    return {"root": root, "model": model, "images": images, "out": out, "res": res}


@pytest.fixture
def lora_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("BRUSHWORK_HOME", str(tmp_path / "home"))
    d = tmp_path / "home" / "loras"
    d.mkdir(parents=True)
    return d


def _gen(studio, model, prompt):
    g = studio.generate(GenerationParams.build(prompt=prompt, model=str(model), seed=3, steps=3))
    return np.asarray(g.images[0]).astype(int), g


def _copy(src: Path, dst: Path, drop_bundle: bool = False, extra: dict | None = None) -> Path:
    with safe_open(str(src), "pt") as f:
        meta = f.metadata()
    tensors = {k: v for k, v in load_file(str(src)).items() if not (drop_bundle and k.startswith("bundle_emb."))}
    save_file({**tensors, **(extra or {})}, str(dst), metadata=meta)
    return dst


def test_the_file_bundles_the_trained_vectors(trained):
    from transformers import CLIPTextModel, CLIPTokenizer

    assert trained["res"]["done"]
    tensors = load_file(str(trained["out"]))
    tok = CLIPTokenizer.from_pretrained(str(trained["model"] / "tokenizer"))
    te = CLIPTextModel.from_pretrained(str(trained["model"] / "text_encoder"))
    ids = tok("diamond", add_special_tokens=False).input_ids
    before = te.get_input_embeddings().weight[ids].detach()
    assert tensors[KEY].shape == before.shape  # one vector per token of the word, started from its own
    assert (tensors[KEY] - before).abs().max() > 1e-3  # and trained
    assert any(k.startswith("lora_unet_") for k in tensors)
    with safe_open(str(trained["out"]), "pt") as f:
        assert f.metadata()["brushwork.words"] == "diamond"
    assert "Trained words" in trained["out"].with_suffix(".md").read_text()
    from brushwork.models.inspect import inspect_model

    info = inspect_model(trained["out"])
    assert info["kind"] == "lora" and info["architecture"]["embeddings"] == ["diamond"]


def test_the_bundle_replaces_the_word_while_the_lora_is_applied(trained, lora_dir):
    model = trained["model"]
    _copy(trained["out"], lora_dir / "d.safetensors")
    _copy(trained["out"], lora_dir / "plain.safetensors", drop_bundle=True)
    emb = lora_dir.parent / "embeddings"
    emb.mkdir()
    save_file({"emb_params": load_file(str(trained["out"]))[KEY]}, str(emb / "dvec.safetensors"))
    studio = Studio()
    bundled, g = _gen(studio, model, "a diamond <lora:d:1>")
    by_hand, _ = _gen(studio, model, "a dvec <lora:plain:1>")  # the same vectors, as a separate embedding
    assert np.array_equal(bundled, by_hand)
    plain, _ = _gen(studio, model, "a diamond <lora:plain:1>")
    assert np.abs(bundled - plain).max() > 0
    # a prompt without the word, and the LoRA at weight 0, are untouched by the bundle
    circle, _ = _gen(studio, model, "a circle <lora:d:1>")
    assert np.array_equal(circle, _gen(studio, model, "a circle <lora:plain:1>")[0])
    assert np.array_equal(_gen(studio, model, "a diamond <lora:d:0>")[0], _gen(studio, model, "a diamond")[0])
    assert np.array_equal(_gen(studio, model, "a diamond")[0], _gen(studio, model, "a diamond <lora:plain:0>")[0])
    first = g.infotexts[0].splitlines()[0]
    assert first.startswith("a diamond") and "<diamond-" not in g.infotexts[0]  # the user's words are recorded


def test_two_loras_bundling_the_same_word_are_one_line(trained, lora_dir):
    _copy(trained["out"], lora_dir / "d.safetensors")
    other = {KEY: load_file(str(trained["out"]))[KEY] + 1.0}
    _copy(trained["out"], lora_dir / "d2.safetensors", extra=other)
    with pytest.raises(InvalidParameter) as e:
        _gen(Studio(), trained["model"], "a diamond <lora:d:1> <lora:d2:0.5>")
    assert "both carry an embedding for the word 'diamond'" in str(e.value) and "\n" not in str(e.value)


def test_a_bundle_in_another_layout_is_one_line(trained, lora_dir):
    vec = load_file(str(trained["out"]))[KEY]
    _copy(trained["out"], lora_dir / "xl.safetensors", drop_bundle=True, extra={"bundle_emb.diamond.clip_l": vec})
    with pytest.raises(ModelFileError) as e:
        _gen(Studio(), trained["model"], "a diamond <lora:xl:1>")
    assert "bundle_emb.diamond.clip_l" in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize("words, says", [
    (["Diamond"], "must be one lower-case word"),
    (["two words"], "must be one lower-case word"),
    (["diamond", "diamond"], "is given twice"),
    (["crescent"], "no caption uses that word"),
])
def test_bad_train_words_are_one_line(trained, tmp_path, words, says):
    s = Settings(method="lora", images=str(trained["images"]), out=str(tmp_path / "x.safetensors"),
                 prompt="a diamond", model=str(trained["model"]), steps=1, batch=1, words=words, progress=False)
    with pytest.raises(InvalidParameter) as e:
        train_lora(s)
    assert says in str(e.value) and "\n" not in str(e.value)
    assert not (tmp_path / "x.safetensors").exists() and not (tmp_path / "x.work").exists()


def test_a_word_of_several_tokens_gets_a_vector_each():
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    from brushwork.paths import package_data

    tok = CLIPTokenizer.from_pretrained(str(package_data("default_model", "tokenizer")))
    te = CLIPTextModel(CLIPTextConfig(vocab_size=len(tok), hidden_size=16, intermediate_size=16, num_hidden_layers=1,
                                      num_attention_heads=2, max_position_embeddings=77))
    n = len(tok("hexagon", add_special_tokens=False).input_ids)
    assert n > 1
    words = TrainedWords(tok, te, ["hexagon"])
    assert words.bundle()["bundle_emb.hexagon.string_to_param.*"].shape == (n, 16)
    text = words.rewrite(["a red Hexagon, two hexagons"])[0]
    assert text.startswith("a red <hexagon> <hexagon>_1") and "hexagons" in text  # whole words only
    ids = tok(text, add_special_tokens=False).input_ids
    assert ids[2:2 + n] == list(range(words.first["hexagon"], words.first["hexagon"] + n))
    with torch.no_grad():
        words.vectors["hexagon"] += 1.0
    out = te(torch.tensor([tok(text).input_ids])).last_hidden_state
    words.settle()  # the vectors move into the table: the same output without hooks
    torch.testing.assert_close(te(torch.tensor([tok(text).input_ids])).last_hidden_state, out)
