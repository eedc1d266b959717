"""A1111 sampler names mapped onto diffusers schedulers, in one table.

A1111 (>= 1.9) sends a sampler and a schedule type separately (``DPM++ 2M`` + ``Karras``); older
clients send one combined name (``DPM++ 2M Karras``). ``resolve_sampler`` accepts both and returns
the canonical pair; ``make_scheduler`` builds the diffusers scheduler from the model's own
scheduler config, so the model's training settings (prediction type, betas, timestep count) are
kept; ``seed_scheduler_noise`` gives each image of a batch the noise it would get alone.

Nothing here imports torch or diffusers until a function that needs them runs.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any

from brushwork.errors import InvalidParameter


@dataclass(frozen=True)
class ScheduleType:
    """An A1111 schedule type and the diffusers config it becomes."""

    label: str  # what A1111 shows and writes to infotext: "Karras"
    name: str  # A1111's internal name: "karras"
    config: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Sampler:
    """One row of the sampler table."""

    name: str  # canonical A1111 name
    scheduler_class: str  # diffusers class name
    kwargs: dict[str, Any]  # fixed scheduler settings that make it this sampler
    schedules: tuple[str, ...]  # supported schedule-type labels, Automatic first
    default_schedule: str  # what "Automatic" means for this sampler (A1111's choice)
    noise: str | None  # how steps draw noise: "generator", "brownian", or None (deterministic)
    aliases: tuple[str, ...] = ()

    @property
    def stochastic(self) -> bool:
        return self.noise is not None


SCHEDULE_TYPES: tuple[ScheduleType, ...] = (
    ScheduleType("Automatic", "automatic"),
    ScheduleType("Uniform", "uniform", {"timestep_spacing": "linspace"}),
    ScheduleType("Karras", "karras", {"use_karras_sigmas": True}),
    ScheduleType("Exponential", "exponential", {"use_exponential_sigmas": True}),
    ScheduleType("SGM Uniform", "sgm_uniform", {"timestep_spacing": "trailing"}),
    ScheduleType("Beta", "beta", {"use_beta_sigmas": True}),
)

_SIGMAS = ("Automatic", "Uniform", "Karras", "Exponential", "SGM Uniform", "Beta")
_SPACING = ("Automatic", "Uniform", "SGM Uniform")

# The one table. Schedule support follows what each diffusers 0.42 class accepts: the sigma
# schedules (Karras, Exponential, Beta) need ``use_*_sigmas``; Uniform and SGM Uniform are
# ``timestep_spacing`` values; LCM builds its own timesteps and ignores both.
SAMPLERS: tuple[Sampler, ...] = (
    Sampler("DPM++ 2M", "DPMSolverMultistepScheduler",
            {"algorithm_type": "dpmsolver++", "solver_order": 2, "solver_type": "midpoint"},
            _SIGMAS, "Karras", None, ("k_dpmpp_2m", "dpmpp_2m")),
    Sampler("DPM++ SDE", "DPMSolverSDEScheduler", {}, _SIGMAS, "Karras", "brownian",
            ("k_dpmpp_sde", "dpmpp_sde")),
    Sampler("Euler a", "EulerAncestralDiscreteScheduler", {}, _SPACING, "Automatic", "generator",
            ("k_euler_a", "k_euler_ancestral", "euler_ancestral", "Euler Ancestral")),
    Sampler("Euler", "EulerDiscreteScheduler", {}, _SIGMAS, "Automatic", None,
            ("k_euler", "euler")),
    Sampler("LMS", "LMSDiscreteScheduler", {}, _SIGMAS, "Automatic", None, ("k_lms", "lms")),
    Sampler("Heun", "HeunDiscreteScheduler", {}, _SIGMAS, "Automatic", None, ("k_heun", "heun")),
    Sampler("DDIM", "DDIMScheduler", {}, _SPACING, "Automatic", None, ("ddim",)),
    Sampler("PLMS", "PNDMScheduler", {"skip_prk_steps": True}, _SPACING, "Automatic", None,
            ("plms", "PNDM")),
    Sampler("UniPC", "UniPCMultistepScheduler", {}, _SIGMAS, "Automatic", None,
            ("uni_pc", "unipc")),
    Sampler("DDPM", "DDPMScheduler", {}, _SPACING, "Automatic", "generator", ("ddpm",)),
    Sampler("LCM", "LCMScheduler", {}, ("Automatic",), "Automatic", "generator", ("lcm",)),
)

# Settings that belong to a solver rather than to the model's training. A model's scheduler
# config may carry them (a model shipped with a DPM++ SDE Karras config, say); they are dropped
# before the table's own settings are applied, so the sampler is the one the user asked for.
_SOLVER_KEYS = (
    "algorithm_type", "solver_order", "solver_type", "lower_order_final", "euler_at_final",
    "use_lu_lambdas", "final_sigmas_type", "use_karras_sigmas", "use_exponential_sigmas",
    "use_beta_sigmas", "skip_prk_steps", "noise_sampler_seed", "predict_x0", "disable_corrector",
    "solver_p", "interpolation_type", "timestep_type", "variance_type",
)


def list_schedule_types() -> list[dict[str, Any]]:
    """Schedule types as A1111's ``/sdapi/v1/schedulers`` lists them (name, label, aliases)."""
    return [{"name": s.name, "label": s.label, "aliases": []} for s in SCHEDULE_TYPES]


def list_samplers() -> list[dict[str, Any]]:
    """One dict per sampler: name, aliases, schedule types, default schedule, stochastic."""
    return [
        {
            "name": s.name,
            "aliases": list(s.aliases),
            "schedule_types": list(s.schedules),
            "default_schedule": s.default_schedule,
            "stochastic": s.stochastic,
            "scheduler_class": s.scheduler_class,
        }
        for s in SAMPLERS
    ]


def _key(text: str) -> str:
    return " ".join(text.strip().lower().split())


def _sampler_lookup() -> dict[str, tuple[Sampler, str | None]]:
    """Lower-case name → (sampler, schedule label from a combined name, or None)."""
    table: dict[str, tuple[Sampler, str | None]] = {}
    for sampler in SAMPLERS:
        for spelling in (sampler.name, *sampler.aliases):
            table[_key(spelling)] = (sampler, None)
            for sched in SCHEDULE_TYPES[1:]:
                table[_key(f"{spelling} {sched.label}")] = (sampler, sched.label)
    for old in ("k_dpmpp_2m", "k_dpmpp_sde", "k_lms"):  # A1111 < 1.9 ids for "… Karras"
        table[f"{old}_ka"] = (table[old][0], "Karras")
    return table


def get_sampler(name: str) -> Sampler:
    """The table row for a canonical sampler name."""
    for sampler in SAMPLERS:
        if sampler.name == name:
            return sampler
    raise InvalidParameter(f"unknown sampler {name!r}", field="sampler")


def get_schedule_type(label: str | None) -> ScheduleType:
    """The schedule type for a label or name (case-insensitive); ``None``/empty is Automatic."""
    if label is None or not label.strip():
        return SCHEDULE_TYPES[0]
    wanted = _key(label)
    for sched in SCHEDULE_TYPES:
        if wanted in (_key(sched.label), sched.name):
            return sched
    valid = ", ".join(s.label for s in SCHEDULE_TYPES)
    raise InvalidParameter(f"unknown schedule type {label!r}; valid: {valid}", field="scheduler")


def resolve_sampler(name: str, schedule: str | None = None) -> tuple[str, str]:
    """Canonical ``(sampler, schedule type)`` for what a client sent.

    Accepts ``("DPM++ 2M", "Karras")``, the older combined ``("DPM++ 2M Karras", None)``, aliases
    (``k_euler_a``) and any letter case. A combined name plus a different explicit schedule type
    (other than Automatic) is an error, as is a schedule type the sampler does not support.
    """
    found = _sampler_lookup().get(_key(name or ""))
    if found is None:
        valid = ", ".join(s.name for s in SAMPLERS)
        raise InvalidParameter(f"unknown sampler {name!r}; valid: {valid}", field="sampler")
    sampler, combined = found
    explicit = get_schedule_type(schedule).label
    if combined is not None and explicit not in ("Automatic", combined):
        raise InvalidParameter(
            f"sampler {name!r} already names schedule type {combined}, "
            f"which conflicts with schedule type {explicit}",
            field="scheduler",
        )
    label = combined if combined is not None and explicit == "Automatic" else explicit
    if label not in sampler.schedules:
        raise InvalidParameter(
            f"sampler {sampler.name} does not support schedule type {label}; "
            f"it supports: {', '.join(sampler.schedules)}",
            field="scheduler",
        )
    return sampler.name, label


def zero_terminal_snr(config: dict[str, Any] | None) -> bool:
    """Whether a model's scheduler config rescales its betas to zero terminal SNR (Lin et al. 2023)."""
    return bool(dict(config or {}).get("rescale_betas_zero_snr"))


_SIGMA_SCHEDULES = ("Karras", "Exponential", "Beta")


def effective_schedule(sampler: str, schedule: str, base_config: dict[str, Any] | None = None) -> str:
    """The schedule type actually used: "Automatic" becomes the sampler's default, as in A1111, except that a
    zero-terminal-SNR model (``base_config``) gets SGM Uniform (trailing timesteps, as Lin et al. 2023 prescribe)
    where A1111's default is a sigma schedule: Karras sigmas start from the infinite terminal sigma."""
    name, label = resolve_sampler(sampler, schedule)
    if label != "Automatic":
        return label
    default = get_sampler(name).default_schedule
    if zero_terminal_snr(base_config) and default in _SIGMA_SCHEDULES:
        return "SGM Uniform"
    return default


def make_scheduler(sampler: str, schedule: str, base_config: dict[str, Any]):
    """Build the diffusers scheduler for an A1111 sampler and schedule type.

    Args:
        sampler: sampler name in any accepted spelling (see ``resolve_sampler``).
        schedule: schedule type label ("Automatic", "Karras", ...).
        base_config: the model's scheduler config, e.g. ``pipe.scheduler.config``. Its training
            settings are kept; solver settings are replaced by the table's.

    Returns:
        A fresh ``diffusers.SchedulerMixin``; call ``set_timesteps`` on it before use.
    """
    import diffusers

    name, _ = resolve_sampler(sampler, schedule)
    row = get_sampler(name)
    label = effective_schedule(sampler, schedule, base_config)
    config = {k: v for k, v in dict(base_config).items() if k not in _SOLVER_KEYS}
    cls = getattr(diffusers, row.scheduler_class)
    accepted = set(inspect.signature(cls.__init__).parameters)
    flags = ("use_karras_sigmas", "use_exponential_sigmas", "use_beta_sigmas")
    overrides: dict[str, Any] = {k: False for k in flags if k in accepted}
    overrides.update(row.kwargs)
    overrides.update(get_schedule_type(label).config)
    missing = sorted(set(overrides) - accepted)
    if missing:  # the table promised something this diffusers does not have
        raise InvalidParameter(
            f"sampler {name} does not support schedule type {label} "
            f"({row.scheduler_class} has no {', '.join(missing)})",
            field="scheduler",
        )
    return cls.from_config({**config, **overrides})


def set_steps(scheduler, steps: int, *, sampler: str, schedule: str, device=None):
    """``scheduler.set_timesteps(steps)``, or a one-line ``InvalidParameter`` where this sampler cannot run that
    many steps on this model: LCM beyond its original step count, and order-1 solvers whose schedule repeats its
    first timestep (DPM++ 2M and UniPC with sigma schedules on zero-terminal-SNR or some other beta schedules)."""
    try:
        scheduler.set_timesteps(steps, device=device)
    except ValueError as exc:
        first = " ".join(str(exc).split())[:200]
        raise InvalidParameter(f"sampler {sampler} cannot run {steps} steps on this model ({first})",
                               field="steps") from None
    ts = scheduler.timesteps
    # the step index starts at the *second* occurrence of the first timestep (diffusers' img2img rule), so a repeated
    # first timestep makes an order-1 solver run one step past the end of its schedule
    if getattr(scheduler, "order", 1) == 1 and len(ts) > 1 and int((ts == ts[0]).sum()) > 1:
        raise InvalidParameter(
            f"sampler {sampler} with schedule type {schedule} repeats its first timestep at {steps} steps on this "
            "model, which it cannot step through; use fewer steps or schedule type Uniform or SGM Uniform",
            field="steps")


def seed_scheduler_noise(scheduler, seeds: list[int], *, generators=None) -> dict[str, Any]:
    """Seed the noise a scheduler's steps draw, one seed per image; return ``step`` kwargs.

    Image *i* of a batch gets exactly the noise it would get alone with ``seeds[i]``: ancestral,
    DDPM and LCM steps draw from one CPU ``torch.Generator`` per image (diffusers' ``randn_tensor``
    draws batch item *i* from generator *i*); DPM++ SDE gets one Brownian tree per image
    (``noise_sampler_seed`` as a list). Seeds are per image, not per CFG half: ``step`` sees the
    latents after guidance is combined.

    Args:
        scheduler: a scheduler from ``make_scheduler`` (before or after ``set_timesteps``).
        seeds: one seed per image in the batch.
        generators: the per-image generators that drew the initial latents, so step noise
            continues their streams as A1111 does; ``None`` makes fresh ones from ``seeds``.

    Returns:
        Extra keyword arguments for every ``scheduler.step`` call of this run (the same dict,
        whose generators advance as steps use them). Deterministic samplers get ``{}``.
    """
    seeds = [int(s) for s in seeds]
    if not seeds:
        raise InvalidParameter("seed_scheduler_noise needs at least one seed", field="seed")
    if hasattr(scheduler, "noise_sampler_seed"):  # DPM++ SDE: one Brownian tree per image
        scheduler.noise_sampler_seed = list(seeds)
        scheduler.noise_sampler = None
    if "generator" not in inspect.signature(scheduler.step).parameters:
        return {}
    if generators is None:
        import torch

        generators = [torch.Generator("cpu").manual_seed(s) for s in seeds]
    if len(generators) != len(seeds):
        raise InvalidParameter(f"{len(generators)} generators for {len(seeds)} seeds", field="seed")
    return {"generator": list(generators)}
