"""Sampler table: name resolution, scheduler construction, and per-image seeding."""

import inspect
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
import torch

from brushwork.engine import samplers
from brushwork.engine.samplers import (
    SAMPLERS,
    list_samplers,
    list_schedule_types,
    make_scheduler,
    resolve_sampler,
    seed_scheduler_noise,
)
from brushwork.errors import InvalidParameter

# Stable Diffusion 1.x's shipped scheduler config, written out (no download).
SD_CONFIG = {
    "_class_name": "PNDMScheduler",
    "num_train_timesteps": 1000,
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "prediction_type": "epsilon",
    "steps_offset": 1,
    "clip_sample": False,
    "set_alpha_to_one": False,
    "skip_prk_steps": True,
    "trained_betas": None,
}


@pytest.mark.parametrize(
    "name, schedule, expected",
    [
        ("DPM++ 2M", "Karras", ("DPM++ 2M", "Karras")),
        ("DPM++ 2M Karras", None, ("DPM++ 2M", "Karras")),
        ("dpm++ 2m karras", "Automatic", ("DPM++ 2M", "Karras")),
        ("DPM++ 2M Karras", "karras", ("DPM++ 2M", "Karras")),
        ("DPM++ SDE Karras", None, ("DPM++ SDE", "Karras")),
        ("LMS Karras", "", ("LMS", "Karras")),
        ("Euler a", None, ("Euler a", "Automatic")),
        ("k_euler_a", "automatic", ("Euler a", "Automatic")),
        ("euler", "sgm_uniform", ("Euler", "SGM Uniform")),
        ("k_dpmpp_2m_ka", None, ("DPM++ 2M", "Karras")),
        ("UniPC", "Exponential", ("UniPC", "Exponential")),
        ("PLMS", None, ("PLMS", "Automatic")),
    ],
)
def test_resolve_both_spellings(name, schedule, expected):
    assert resolve_sampler(name, schedule) == expected


def test_resolve_errors_name_the_problem():
    with pytest.raises(InvalidParameter, match="unknown sampler 'Eulr'.*DPM\\+\\+ 2M.*LCM"):
        resolve_sampler("Eulr", None)
    with pytest.raises(InvalidParameter, match="unknown schedule type 'Karas'"):
        resolve_sampler("Euler", "Karas")
    with pytest.raises(InvalidParameter, match="conflicts"):
        resolve_sampler("DPM++ 2M Karras", "Exponential")
    with pytest.raises(InvalidParameter, match="Euler a does not support schedule type Karras"):
        resolve_sampler("Euler a", "Karras")
    with pytest.raises(InvalidParameter, match="LCM does not support"):
        resolve_sampler("LCM", "Uniform")


def test_listings():
    names = [s["name"] for s in list_samplers()]
    for wanted in ["Euler", "Euler a", "Heun", "LMS", "DDIM", "PLMS", "DPM++ 2M", "DPM++ SDE",
                   "UniPC", "DDPM", "LCM"]:
        assert wanted in names
    row = next(s for s in list_samplers() if s["name"] == "DPM++ SDE")
    assert row["stochastic"] and "Karras" in row["schedule_types"]
    labels = [s["label"] for s in list_schedule_types()]
    assert labels[:4] == ["Automatic", "Uniform", "Karras", "Exponential"]


def test_table_matches_installed_diffusers():
    """Every schedule the table promises maps onto a kwarg the diffusers class accepts."""
    import diffusers

    for row in SAMPLERS:
        accepted = set(inspect.signature(getattr(diffusers, row.scheduler_class).__init__).parameters)
        assert set(row.kwargs) <= accepted, row.name
        for label in row.schedules:
            assert set(samplers.get_schedule_type(label).config) <= accepted, (row.name, label)


def test_make_scheduler_keeps_training_settings():
    sched = make_scheduler("DPM++ 2M", "Karras", {**SD_CONFIG, "prediction_type": "v_prediction"})
    assert type(sched).__name__ == "DPMSolverMultistepScheduler"
    cfg = sched.config
    assert cfg.algorithm_type == "dpmsolver++" and cfg.solver_order == 2
    assert cfg.use_karras_sigmas and not cfg.use_exponential_sigmas
    assert cfg.prediction_type == "v_prediction" and cfg.beta_schedule == "scaled_linear"
    assert cfg.num_train_timesteps == 1000 and cfg.steps_offset == 1
    # Automatic means A1111's default for DPM++ 2M: Karras.
    assert make_scheduler("DPM++ 2M", "Automatic", SD_CONFIG).config.use_karras_sigmas
    plms = make_scheduler("PLMS", "Automatic", SD_CONFIG)
    assert type(plms).__name__ == "PNDMScheduler" and plms.config.skip_prk_steps
    assert make_scheduler("Euler", "SGM Uniform", SD_CONFIG).config.timestep_spacing == "trailing"


def test_model_solver_settings_do_not_leak():
    """A model shipped with an SDE Karras config still gets plain DPM++ 2M Exponential."""
    base = {**SD_CONFIG, "algorithm_type": "sde-dpmsolver++", "use_karras_sigmas": True}
    cfg = make_scheduler("DPM++ 2M", "Exponential", base).config
    assert cfg.algorithm_type == "dpmsolver++"
    assert cfg.use_exponential_sigmas and not cfg.use_karras_sigmas


def test_make_scheduler_rejects_unsupported_schedule():
    with pytest.raises(InvalidParameter, match="DDIM does not support schedule type Karras"):
        make_scheduler("DDIM", "Karras", SD_CONFIG)


def _initial_latents(seeds, shape=(4, 8, 8)):
    gens = [torch.Generator("cpu").manual_seed(s) for s in seeds]
    return torch.cat([torch.randn((1, *shape), generator=g) for g in gens]), gens


def _run(sampler, schedule, seeds, steps=4):
    """A few steps on a fake denoiser (eps = 0.1 * x), as the pipeline's loop does them."""
    sched = make_scheduler(sampler, schedule, SD_CONFIG)
    sched.set_timesteps(steps)
    latents, gens = _initial_latents(seeds)
    latents = latents * sched.init_noise_sigma
    extra = seed_scheduler_noise(sched, seeds, generators=gens)
    for t in sched.timesteps:
        eps = 0.1 * sched.scale_model_input(latents, t)
        latents = sched.step(eps, t, latents, **extra).prev_sample
    return latents


CASES = [
    (row.name, label)
    for row in SAMPLERS
    for label in dict.fromkeys(("Automatic", "Karras", "Exponential", row.schedules[-1]))
    if label in row.schedules
]


@pytest.mark.parametrize("sampler, schedule", CASES)
def test_batch_item_equals_solo_image(sampler, schedule):
    batch = _run(sampler, schedule, [5, 6])
    solo = _run(sampler, schedule, [6])
    assert torch.isfinite(batch).all()
    torch.testing.assert_close(batch[1:], solo, atol=1e-6, rtol=0)


@pytest.mark.parametrize("sampler", [row.name for row in SAMPLERS if row.stochastic])
def test_step_noise_follows_the_seed(sampler):
    """Stochastic samplers: same start, different seeds → different images; same seed → same."""
    def run(seed):
        sched = make_scheduler(sampler, "Automatic", SD_CONFIG)
        sched.set_timesteps(4)
        latents = _initial_latents([0])[0] * sched.init_noise_sigma
        extra = seed_scheduler_noise(sched, [seed])
        for t in sched.timesteps:
            latents = sched.step(0.1 * sched.scale_model_input(latents, t), t, latents,
                                 **extra).prev_sample
        return latents

    assert torch.equal(run(1), run(1))
    assert not torch.allclose(run(1), run(2))


# A zero-terminal-SNR v-prediction model's config (SD 2.x-style, trailing timesteps: Lin et al. 2023)
ZERO_SNR_CONFIG = {**SD_CONFIG, "prediction_type": "v_prediction", "rescale_betas_zero_snr": True,
                   "timestep_spacing": "trailing", "beta_end": 0.02}
STEP_COUNTS = [1, 2, 3, 4, 5, 8, 10, 13, 14, 20, 21, 24, 30, 50, 75, 150]


@pytest.mark.parametrize("config", [ZERO_SNR_CONFIG, SD_CONFIG], ids=["zero-snr", "sd1"])
@pytest.mark.parametrize("sampler, schedule", [(r.name, s) for r in SAMPLERS for s in r.schedules])
def test_every_sampler_runs_or_refuses_in_one_line(config, sampler, schedule):
    """At every step count a sampler either runs to a finite result or refuses with InvalidParameter before the first
    step (before the fix, DPM++ 2M at its default 20 steps raised IndexError inside diffusers on a zero-SNR model)."""
    for steps in STEP_COUNTS:
        sched = make_scheduler(sampler, schedule, config)
        try:
            samplers.set_steps(sched, steps, sampler=sampler, schedule=schedule)
        except InvalidParameter as e:
            assert "\n" not in str(e) and str(steps) in str(e)
            continue
        latents, gens = _initial_latents([3])
        latents = latents * sched.init_noise_sigma
        extra = seed_scheduler_noise(sched, [3], generators=gens)
        for t in sched.timesteps:
            out = 0.1 * sched.scale_model_input(latents, t)
            latents = sched.step(out, t, latents, **extra).prev_sample
        assert torch.isfinite(latents).all(), (steps, sampler, schedule)


@pytest.mark.parametrize("sampler", [r.name for r in SAMPLERS if r.name != "LCM"])
def test_automatic_schedule_never_refuses_on_a_zero_snr_model(sampler):
    for steps in range(1, 151):
        sched = make_scheduler(sampler, "Automatic", ZERO_SNR_CONFIG)
        samplers.set_steps(sched, steps, sampler=sampler, schedule="Automatic")


def test_automatic_on_zero_snr_uses_trailing_timesteps_not_karras():
    assert samplers.effective_schedule("DPM++ 2M", "Automatic", SD_CONFIG) == "Karras"
    assert samplers.effective_schedule("DPM++ 2M", "Automatic", ZERO_SNR_CONFIG) == "SGM Uniform"
    assert samplers.effective_schedule("DPM++ 2M", "Karras", ZERO_SNR_CONFIG) == "Karras"  # asked for: kept
    assert not make_scheduler("DPM++ 2M", "Automatic", ZERO_SNR_CONFIG).config.use_karras_sigmas


def test_lcm_beyond_its_original_steps_is_refused_in_one_line():
    sched = make_scheduler("LCM", "Automatic", SD_CONFIG)
    with pytest.raises(InvalidParameter, match="sampler LCM cannot run 75 steps"):
        samplers.set_steps(sched, 75, sampler="LCM", schedule="Automatic")
