"""Prompt attention parsing and chunked, weighted encoding with a tiny random CLIP."""

import json
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
import torch

from brushwork.engine.prompts import (
    BREAK,
    encode_pair,
    encode_prompt,
    parse_prompt_attention,
    tokenize_prompt,
)
from brushwork.errors import PromptError


@pytest.mark.parametrize(
    "text, expected",
    [
        ("a cat", [("a cat", 1.0)]),
        ("(cat)", [("cat", 1.1)]),
        ("((cat))", [("cat", 1.1 * 1.1)]),
        ("[cat]", [("cat", 1 / 1.1)]),
        ("a (cat:1.3) dog", [("a ", 1.0), ("cat", 1.3), (" dog", 1.0)]),
        ("((cat:1.5))", [("cat", 1.5 * 1.1)]),
        ("(a [b])", [("a ", 1.1), ("b", 1.0)]),
        ("( cat : 0.5 )", [(" cat ", 0.5)]),
        (r"\(cat\) \[dog\]", [("(cat) [dog]", 1.0)]),
        (r"(a\:b)", [("a:b", 1.1)]),
        (r"back\\slash", [("back\\slash", 1.0)]),
        ("(a:b:1.2)", [("a:b", 1.2)]),
        ("time: 12:30", [("time: 12:30", 1.0)]),
        ("(unclosed", [("unclosed", 1.1)]),
        ("(unclosed:1.4", [("unclosed", 1.4)]),
        ("[unclosed", [("unclosed", 1 / 1.1)]),
        ("stray) ]", [("stray) ]", 1.0)]),
        ("a BREAK b", [("a", 1.0), BREAK, ("b", 1.0)]),
        ("", [("", 1.0)]),
    ],
)
def test_parse_prompt_attention(text, expected):
    got = parse_prompt_attention(text)
    assert [t for t, _ in got] == [t for t, _ in expected]
    assert [w for _, w in got] == pytest.approx([w for _, w in expected])


@pytest.mark.parametrize(
    "text, message",
    [
        ("(word:abc)", "cannot parse attention weight 'abc' at position 7"),
        ("(word:1.2.3)", "cannot parse attention weight '1.2.3' at position 7"),
        ("a (b:)", "cannot parse attention weight '' at position 6"),
        ("x ((y:  2x))", "cannot parse attention weight '2x' at position 9"),
    ],
)
def test_parse_errors_name_the_position(text, message):
    with pytest.raises(PromptError) as exc:
        parse_prompt_attention(text)
    assert str(exc.value) == message


# --- tiny CLIP built in code: printable ASCII characters as tokens, two merges -----------------

MERGES = [("c", "a"), ("ca", "t</w>")]


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    chars = [chr(i) for i in range(33, 127)]
    vocab = {}
    for token in chars + [c + "</w>" for c in chars] + [a + b for a, b in MERGES]:
        vocab[token] = len(vocab)
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    folder = tmp_path_factory.mktemp("tokenizer")
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in MERGES))
    tokenizer = CLIPTokenizer(
        vocab=str(folder / "vocab.json"), merges=str(folder / "merges.txt"), model_max_length=77
    )
    torch.manual_seed(0)
    config = CLIPTextConfig(
        vocab_size=len(vocab), hidden_size=32, intermediate_size=37, num_attention_heads=4,
        num_hidden_layers=2, max_position_embeddings=77,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    encoder = CLIPTextModel(config).eval()
    return tokenizer, encoder


def enc(clip, prompt):
    with torch.inference_mode():
        return encode_prompt(*clip, prompt, device="cpu", dtype=torch.float32)


def test_tokenizer_fixture_is_sane(clip):
    tokenizer, _ = clip
    assert tokenizer("a cat", add_special_tokens=False).input_ids == [
        tokenizer.convert_tokens_to_ids("a</w>"), tokenizer.convert_tokens_to_ids("cat</w>")
    ]


def test_plain_prompt_matches_the_tokenizers_own_encoding(clip):
    tokenizer, encoder = clip
    ids = tokenizer("a cat, b", padding="max_length", max_length=77, return_tensors="pt").input_ids
    with torch.inference_mode():
        expected = encoder(ids).last_hidden_state
    got = enc(clip, "a cat, b")
    assert got.shape == (1, 77, 32)
    assert torch.equal(got, expected)


def test_weights_change_the_embedding(clip):
    plain = enc(clip, "a cat")
    assert not torch.allclose(enc(clip, "a (cat:1.5)"), plain)
    assert not torch.allclose(enc(clip, "a [cat]"), plain)
    assert torch.equal(enc(clip, "a (cat:1.0)"), plain)
    # emphasis keeps the chunk's mean (A1111's normalisation)
    assert enc(clip, "a (cat:1.5)").mean().item() == pytest.approx(plain.mean().item(), abs=1e-5)


def test_long_prompt_is_chunked_not_truncated(clip):
    words = [chr(ord("a") + i % 26) for i in range(100)]  # one token each
    ids, weights = tokenize_prompt(clip[0], " ".join(words))
    assert ids.shape == weights.shape == (2, 77)
    long = enc(clip, " ".join(words))
    assert long.shape == (1, 154, 32)
    changed = enc(clip, " ".join(words[:-1] + ["z"]))
    assert torch.equal(changed[:, :77], long[:, :77])  # first chunk untouched
    assert not torch.allclose(changed[:, 77:], long[:, 77:])  # the tail's chunk changed


def test_break_starts_a_new_chunk(clip):
    ids, _ = tokenize_prompt(clip[0], "a cat BREAK b")
    assert ids.shape == (2, 77)
    assert enc(clip, "a cat BREAK b").shape == (1, 154, 32)


def test_empty_prompt_is_one_unconditional_chunk(clip):
    tokenizer, _ = clip
    ids, weights = tokenize_prompt(tokenizer, "")
    assert ids[0, 0] == tokenizer.bos_token_id and ids[0, 1] == tokenizer.eos_token_id
    assert bool((weights == 1).all())
    assert enc(clip, "").shape == (1, 77, 32)


def test_encode_pair_pads_to_the_same_length(clip):
    long = " ".join(["x"] * 100)
    with torch.inference_mode():
        cond, uncond = encode_pair(*clip, long, "", device="cpu", dtype=torch.float32)
        empty = encode_prompt(*clip, "", device="cpu", dtype=torch.float32)
        c2, u2 = encode_pair(*clip, "a cat", long, device="cpu", dtype=torch.float32)
    assert cond.shape == uncond.shape == (1, 154, 32)
    assert torch.equal(uncond[:, 77:], empty) and torch.equal(uncond[:, :77], empty)
    assert c2.shape == u2.shape == (1, 154, 32)
    assert torch.equal(c2[:, 77:], empty)


def test_dtype_is_the_callers(clip):
    with torch.inference_mode():
        out = encode_prompt(*clip, "(a cat:1.2)", device="cpu", dtype=torch.bfloat16)
    assert out.dtype == torch.bfloat16
