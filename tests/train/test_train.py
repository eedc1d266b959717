import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from brushwork.errors import InvalidParameter
from brushwork.train.data import batch_indices, load_imagefolder
from brushwork.train.diffusion import train_unet
from brushwork.train.tokenizer import build_tokenizer, corpus_words
from brushwork.train.vae import train_vae
from brushwork.world.dataset import make_dataset

TINY_VAE = dict(in_channels=3, out_channels=3, latent_channels=4, sample_size=32,
                down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
                block_out_channels=(8, 8), layers_per_block=1, norm_num_groups=4, mid_block_add_attention=False)
TINY_UNET = dict(sample_size=16, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(16, 16),
                 down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                 up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), cross_attention_dim=16, attention_head_dim=2,
                 norm_num_groups=8)
TINY_TEXT = dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                 max_position_embeddings=77, projection_dim=16)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("train")
    d = make_dataset(root / "data", 12, seed=2, size=32, workers=1)
    texts = [json.loads(line)["text"] for line in (d / "metadata.jsonl").read_text().splitlines()]
    build_tokenizer(corpus_words(texts), root / "tok")
    vae_dir = train_vae(d, root / "vae", steps=2, batch=4, crop=16, config=TINY_VAE, progress=False)
    return root, d, vae_dir


def test_weight_zero_rows_are_never_sampled_and_weights_bias_sampling(tmp_path):
    w = np.array([0.0, 1.0, 3.0, 0.0])
    drawn = np.concatenate([batch_indices(w, 0, s, 64) for s in range(200)])
    assert not np.isin(drawn, [0, 3]).any()
    ratio = (drawn == 2).sum() / (drawn == 1).sum()
    assert 2.6 < ratio < 3.4
    assert np.array_equal(batch_indices(w, 0, 7, 16), batch_indices(w, 0, 7, 16))


def test_imagefolder_reads_weights_and_refuses_bad_rows(tmp_path):
    d = make_dataset(tmp_path / "d", 3, seed=1, size=16, workers=1)
    rows = [json.loads(line) for line in (d / "metadata.jsonl").read_text().splitlines()]
    rows[0]["weight"], rows[1]["weight"] = 0, 2.5
    (d / "metadata.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    assert load_imagefolder(d).weights.tolist() == [0.0, 2.5, 1.0]
    for bad, msg in [({"weight": -1}, "'weight' must be a finite number >= 0"),
                     ({"weight": "high"}, "'weight' must be"),
                     ({"file_name": "../escape.png"}, "'..' not allowed"),
                     ({"text": None}, "needs string 'file_name' and 'text'")]:
        (d / "metadata.jsonl").write_text(json.dumps({**rows[2], **bad}))
        with pytest.raises(Exception, match=msg):
            load_imagefolder(d)
    with pytest.raises(InvalidParameter, match="no metadata.jsonl"):
        load_imagefolder(tmp_path)


def test_resumed_vae_run_equals_uninterrupted(tmp_path, data):
    _, d, _ = data
    train_vae(d, tmp_path / "a", steps=4, batch=4, crop=16, config=TINY_VAE, progress=False)
    train_vae(d, tmp_path / "b", steps=2, batch=4, crop=16, config=TINY_VAE, progress=False)
    train_vae(d, tmp_path / "b", steps=4, batch=4, crop=16, config=TINY_VAE, progress=False)
    a = load_file(tmp_path / "a" / "checkpoint" / "vae.safetensors")
    b = load_file(tmp_path / "b" / "checkpoint" / "vae.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert json.loads((tmp_path / "b" / "checkpoint" / "state.json").read_text())["step"] == 4
    assert (tmp_path / "a" / "vae_loss.png").stat().st_size > 0


@pytest.mark.parametrize("timesteps", ["uniform", "weighted"])
def test_resumed_unet_run_equals_uninterrupted(tmp_path, data, timesteps):
    root, d, vae_dir = data
    kw = dict(batch=4, unet_config=TINY_UNET, text_config=TINY_TEXT, progress=False, warmup=2, timesteps=timesteps)
    full = train_unet(d, vae_dir, root / "tok", tmp_path / "a", steps=3, **kw)
    part = train_unet(d, vae_dir, root / "tok", tmp_path / "b", steps=2, **kw)
    assert part["step"] == 2
    resumed = train_unet(d, vae_dir, root / "tok", tmp_path / "b", steps=3, **kw)
    assert full["done"] and resumed["done"]
    # Equal up to float rounding: the same batches and timesteps, so the losses agree to ~1e-7 (bit-identical in
    # most runs; the forward pass over reloaded tensors may round differently) and the weights to ~1e-7.
    la = json.loads((tmp_path / "a" / "checkpoint" / "state.json").read_text())["losses"]
    lb = json.loads((tmp_path / "b" / "checkpoint" / "state.json").read_text())["losses"]
    assert len(la) == len(lb) == 3 and la[:2] == lb[:2]
    assert lb[2] == pytest.approx(la[2], rel=1e-6)
    for name in ("unet", "text_encoder"):
        a, b = full[name].state_dict(), resumed[name].state_dict()
        worst = max((a[k].float() - b[k].float()).abs().max().item() for k in a)
        assert worst < 1e-5, (name, worst)
    assert (tmp_path / "a" / "unet_loss.png").stat().st_size > 0


def test_training_changes_weights_and_loss_is_finite(tmp_path, data):
    root, d, vae_dir = data
    res = train_unet(d, vae_dir, root / "tok", tmp_path / "c", steps=2, batch=4, unet_config=TINY_UNET,
                     text_config=TINY_TEXT, progress=False, warmup=1)
    state = json.loads((tmp_path / "c" / "checkpoint" / "state.json").read_text())
    assert len(state["losses"]) == 2 and all(np.isfinite(state["losses"]))
    raw = load_file(tmp_path / "c" / "checkpoint" / "unet.safetensors")
    torch.manual_seed(0)
    from diffusers import UNet2DConditionModel
    init = UNet2DConditionModel(**TINY_UNET).state_dict()
    assert any(not torch.equal(raw[k], init[k]) for k in raw)
    assert res["done"]


def test_text_encoder_learning_rate_scales_its_updates(tmp_path, data):
    """``text_encoder_lr`` sets the text encoder's own step size: 0-ish leaves it nearly where it started, while the
    UNet moves as before."""
    root, d, vae_dir = data
    moved = {}
    for name, te_lr in (("same", None), ("tiny", 1e-9)):
        train_unet(d, vae_dir, root / "tok", tmp_path / name, steps=2, batch=4, unet_config=TINY_UNET,
                   text_config=TINY_TEXT, progress=False, warmup=1, lr=1e-3, text_encoder_lr=te_lr)
        ckpt = tmp_path / name / "checkpoint"
        state = json.loads((ckpt / "state.json").read_text())
        assert all(np.isfinite(state["losses"]))
        moved[name] = load_file(ckpt / "text_encoder.safetensors")
    diffs = [float((moved["same"][k] - moved["tiny"][k]).abs().max()) for k in moved["same"]]
    assert max(diffs) > 1e-5  # the default rate moved the text encoder where the tiny one barely did


def test_lr_schedule_warms_up_then_decays_to_the_final_fraction():
    from brushwork.train.diffusion import lr_at

    assert lr_at(0, 1e-3, 10, 100) == pytest.approx(1e-4)
    assert lr_at(9, 1e-3, 10, 100) == pytest.approx(1e-3)
    assert lr_at(50, 1e-3, 10, 100) == pytest.approx(1e-3)  # final_frac 1: constant
    lrs = [lr_at(s, 1e-3, 10, 100, 0.1) for s in range(10, 101)]
    assert lrs[0] == pytest.approx(1e-3) and lrs[-1] == pytest.approx(1e-4)
    assert all(a >= b for a, b in zip(lrs, lrs[1:]))
    assert lr_at(500, 1e-3, 10, 100, 0.1) == pytest.approx(1e-4)  # past the end it stays at the floor


def test_detail_mask_marks_objects_and_their_rim_not_the_background():
    from brushwork.train.vae import detail_mask

    img = np.full((1, 16, 16, 3), (200, 30, 30), np.uint8)
    img[0, 6:9, 6:9] = (20, 20, 220)
    m = detail_mask(img)[0]
    assert m[5:10, 5:10].all()  # the object and a one-pixel rim
    assert m.sum() == 25
    noisy = img.copy()
    noisy[0, 0, 0] = (205, 33, 27)  # within tolerance: still background
    assert detail_mask(noisy)[0, 0, 0] == 0


def test_detail_weight_changes_the_vae_loss(tmp_path, data):
    _, d, _ = data
    plain = train_vae(d, tmp_path / "p", steps=2, batch=4, crop=16, config=TINY_VAE, progress=False)
    weighted = train_vae(d, tmp_path / "w", steps=2, batch=4, crop=16, config=TINY_VAE, detail_weight=8.0,
                         progress=False)
    lp = json.loads((plain.parent / "checkpoint" / "state.json").read_text())["losses"]
    lw = json.loads((weighted.parent / "checkpoint" / "state.json").read_text())["losses"]
    assert lw[0] > lp[0]  # same first batch and weights, objects counted 9x


def test_unet_channels_follow_the_vae():
    from diffusers import AutoencoderKL

    from brushwork.train.diffusion import unet_config_for

    vae8 = AutoencoderKL(**{**TINY_VAE, "latent_channels": 8})
    cfg = unet_config_for(vae8, TINY_UNET)
    assert (cfg["in_channels"], cfg["out_channels"], cfg["sample_size"]) == (8, 8, 16)


def test_train_cli_bad_input_is_one_line_no_traceback(tmp_path):
    import subprocess
    import sys

    d = str(tmp_path / "d")
    unet = ["train", "unet", "--data", d, "--vae", d, "--tokenizer", d, "--out", d]
    cases = [
        (["train", "vae", "--data", d, "--out", d, "--detail-weight", "-1"], "--detail-weight must be >= 0"),
        (["train", "vae", "--data", d, "--out", d, "--steps", "0"], "--steps must be positive"),
        ([*unet, "--final-lr-frac", "0"], "--final-lr-frac must be in (0, 1]"),
        ([*unet, "--final-lr-frac", "1.5"], "--final-lr-frac must be in (0, 1]"),
        ([*unet, "--snr-gamma", "-1"], "--snr-gamma must be >= 0"),
        ([*unet, "--snr-floor", "6"], "--snr-floor must be in [0, --snr-gamma 5]"),
        ([*unet, "--snr-floor", "-0.5"], "--snr-floor must be in [0, --snr-gamma 5]"),
        ([*unet, "--timesteps", "logit"], "--timesteps must be one of uniform, weighted (got 'logit')"),
        (["train", "recipe", "--work", d, "--unet-steps", "-3"], "--unet-steps must be positive"),
        (["train", "recipe", "--work", d, "--unet-batch", "0"], "--unet-batch must be positive"),
        (["train", "recipe", "--work", d, "--unet-lr=-1e-3"], "--unet-lr must be positive"),
        (["train", "recipe", "--work", d, "--device", "tpu"], "--device must be cpu or cuda[:N] (got 'tpu')"),
    ]
    if not torch.cuda.is_available():
        cases.append((["train", "recipe", "--work", d, "--device", "cuda"],
                      "--device cuda: this torch build sees no CUDA device"))
    for args, msg in cases:
        r = subprocess.run([sys.executable, "-m", "brushwork", *args], capture_output=True, text=True)
        assert r.returncode == 2, (args, r.stderr)
        assert "Traceback" not in r.stderr
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and msg in lines[0], r.stderr
    assert not (tmp_path / "d").exists()  # nothing was written


def test_a_cosine_schedule_checkpoint_loads_back(tmp_path, data):
    root, d, vae_dir = data
    kw = dict(steps=3, batch=4, unet_config=TINY_UNET, text_config=TINY_TEXT, progress=False, warmup=1,
              final_lr_frac=0.5)
    train_unet(d, vae_dir, root / "tok", tmp_path / "a", **kw)
    opt = torch.load(tmp_path / "a" / "checkpoint" / "optimizer.pt", weights_only=True)
    assert all(type(g["lr"]) is float for g in opt["param_groups"])
    again = train_unet(d, vae_dir, root / "tok", tmp_path / "a", **kw)  # resumes from the checkpoint
    assert again["done"] and again["step"] == 3


def test_bf16_autocast_changes_the_arithmetic_but_trains(tmp_path, data):
    root, d, vae_dir = data
    kw = dict(steps=2, batch=4, unet_config=TINY_UNET, text_config=TINY_TEXT, progress=False, warmup=1)
    losses = {}
    for bf16 in (False, True):
        train_unet(d, vae_dir, root / "tok", tmp_path / str(bf16), bf16=bf16, **kw)
        losses[bf16] = json.loads((tmp_path / str(bf16) / "checkpoint" / "state.json").read_text())["losses"]
    assert all(np.isfinite(losses[True]))
    assert losses[True] != losses[False]  # autocast really ran the forward pass in bf16
    assert abs(losses[True][0] - losses[False][0]) < 0.05 * abs(losses[False][0])


def test_plain_v_loss_weighs_every_noise_level_fully(tmp_path, data):
    # min-SNR-γ weights are min(snr, γ)/(snr + 1) < 1, so on the same first batch and initial weights
    # the plain v-loss (snr_gamma=None) is strictly larger
    root, d, vae_dir = data
    kw = dict(steps=1, batch=4, unet_config=TINY_UNET, text_config=TINY_TEXT, progress=False, warmup=1)
    losses = {}
    for gamma in (5.0, None):
        train_unet(d, vae_dir, root / "tok", tmp_path / str(gamma), snr_gamma=gamma, **kw)
        losses[gamma] = json.loads((tmp_path / str(gamma) / "checkpoint" / "state.json").read_text())["losses"][0]
    assert losses[None] > losses[5.0] > 0


def test_recipe_runs_end_to_end_at_toy_size_and_resumes(tmp_path):
    from brushwork.train.recipe import RECIPE_VERSION, Recipe, run_recipe

    r = Recipe(images=48, vae_steps=2, clip_steps=2, clip_batch=8, unet_steps=3, unet_batch=4)
    res = run_recipe(tmp_path, r, progress=False, log=lambda m: None)
    assert res == {"done": True, "stage": "done", "step": 3}
    info = json.loads((tmp_path / "model" / "brushwork_training.json").read_text())
    assert info["recipe_version"] == RECIPE_VERSION and info["complete"] and info["unet_steps_done"] == 3
    assert info["recipe"]["unet_snr_gamma"] == 5.0 and info["recipe"]["unet_timesteps"] == "uniform"
    assert (tmp_path / "model" / "model_index.json").is_file()
    # a second run finds every stage done and trains nothing more: the checkpoint's record is unchanged
    state = (tmp_path / "unet" / "checkpoint" / "state.json").read_text()
    assert run_recipe(tmp_path, r, progress=False, log=lambda m: None)["step"] == 3
    assert (tmp_path / "unet" / "checkpoint" / "state.json").read_text() == state
    assert len(json.loads(state)["losses"]) == 3


def test_snr_floor_keeps_high_noise_weight_and_leaves_the_rest():
    import torch

    from brushwork.train.diffusion import loss_weight

    snr = torch.tensor([0.01, 0.5, 1.0, 3.0, 5.0, 20.0])
    plain_min_snr = torch.clamp(snr, max=5.0) / (snr + 1)
    assert torch.equal(loss_weight(snr, 5.0), plain_min_snr)  # floor 0 is min-SNR-5 exactly
    floored = loss_weight(snr, 5.0, snr_floor=1.0)
    assert torch.allclose(floored[:2], 1 / (snr[:2] + 1))  # below the floor: 1/(snr+1), near the plain v-loss's 1
    assert floored[0] > 0.99 and plain_min_snr[0] < 0.01
    assert torch.equal(floored[2:], plain_min_snr[2:])  # at and above the floor: unchanged
    assert torch.equal(loss_weight(snr, None), torch.ones_like(snr))


def test_weighted_timesteps_follow_the_min_snr_weights():
    # "weighted" draws timestep t with probability loss_weight(snr_t) / sum: under min-SNR-5 the half of the
    # timesteps with SNR below 0.2 carries about 7 % of the weight, so it gets about 7 % of the draws, not half
    from diffusers import DDPMScheduler

    from brushwork.train.diffusion import DEFAULT_SCHEDULER_CONFIG, loss_weight, timestep_probs

    a = DDPMScheduler(**DEFAULT_SCHEDULER_CONFIG).alphas_cumprod
    snr = a / (1 - a)
    high = snr < 0.2
    assert 0.45 < high.float().mean() < 0.55
    for floor in (0.0, 0.3):
        p = timestep_probs(snr, 5.0, floor)
        assert abs(p.sum().item() - 1) < 1e-5
        w = loss_weight(snr, 5.0, floor)
        assert torch.allclose(p, w / w.sum(), atol=1e-7)
        t = torch.multinomial(p, 200_000, replacement=True, generator=torch.Generator().manual_seed(0))
        assert abs(high[t].float().mean().item() - (w[high].sum() / w.sum()).item()) < 0.005
    assert (timestep_probs(snr, 5.0)[high].sum() < 0.1) and (timestep_probs(snr, 5.0, 0.3)[high].sum() > 0.3)
    assert torch.allclose(timestep_probs(snr, None), torch.full_like(snr, 1 / len(snr)))  # plain v: uniform


def test_weighted_timesteps_train_on_the_unweighted_loss(tmp_path, data):
    root, d, vae_dir = data
    kw = dict(steps=1, batch=4, unet_config=TINY_UNET, text_config=TINY_TEXT, progress=False, warmup=1)
    losses = {}
    for ts in ("uniform", "weighted"):
        train_unet(d, vae_dir, root / "tok", tmp_path / ts, timesteps=ts, **kw)
        losses[ts] = json.loads((tmp_path / ts / "checkpoint" / "state.json").read_text())["losses"][0]
    # every min-SNR weight is below 1 and the weighted draws favour the mid noise levels, whose v-loss is
    # still of order 1 at initialisation: the unweighted loss is the larger
    assert losses["weighted"] > losses["uniform"] > 0
    with pytest.raises(ValueError, match="timesteps must be one of"):
        train_unet(d, vae_dir, root / "tok", tmp_path / "x", timesteps="logit", **kw)


def test_min_snr_for_epsilon_models_is_one_below_gamma_and_finite_at_zero_snr():
    import torch

    from brushwork.train.diffusion import loss_weight

    snr = torch.tensor([0.0, 0.5, 5.0, 20.0])
    eps = loss_weight(snr, 5.0, v_pred=False)
    assert torch.isfinite(eps).all()
    assert eps.tolist() == pytest.approx([1.0, 1.0, 1.0, 0.25])  # min(snr, 5) / snr; SNR 0 (zero terminal SNR): 1
    assert loss_weight(snr, 5.0).tolist() == pytest.approx([0.0, 0.5 / 1.5, 5 / 6, 5 / 21])  # v: min(snr, 5)/(snr+1)


def test_ema_update_is_the_decayed_average_and_copies_integer_buffers():
    from brushwork.train.checkpoint import EMA

    m = torch.nn.BatchNorm1d(3)  # float weights plus an integer buffer (num_batches_tracked)
    ema = EMA(m, decay=0.9)
    before = {k: v.clone() for k, v in ema.shadow.items()}
    with torch.no_grad():
        m.weight.add_(1.0)
    m.num_batches_tracked += 5
    ema.update(m, step=1000)  # past the warm-up: d = 0.9
    assert torch.allclose(ema.shadow["weight"], 0.9 * before["weight"] + 0.1 * m.weight)
    assert torch.equal(ema.shadow["bias"], before["bias"])
    assert int(ema.shadow["num_batches_tracked"]) == 5
