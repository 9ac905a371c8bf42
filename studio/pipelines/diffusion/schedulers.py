"""Switching a pipeline's scheduler (sampler) by key, and naming it the way A1111 does.

Every switch builds a fresh scheduler ``from_config`` of the model's ORIGINAL scheduler config,
which is remembered on the pipeline the first time we touch it. Building from the current
scheduler instead would drift: e.g. going to "DPM++ 2M Karras" and back to "Euler" would keep
``use_karras_sigmas=True``. The keys are those of :data:`studio.core.requests.SCHEDULERS`.
"""

from __future__ import annotations

from typing import Any

from studio.core.requests import SCHEDULERS

_ORIGINAL_ATTR = "_studio_original_scheduler"

#: key → (diffusers class name, extra config).
_CLASSES: dict[str, tuple[str, dict[str, Any]]] = {
    "euler": ("EulerDiscreteScheduler", {}),
    "euler_a": ("EulerAncestralDiscreteScheduler", {}),
    "dpmpp_2m": ("DPMSolverMultistepScheduler", {"use_karras_sigmas": False}),
    "dpmpp_2m_karras": ("DPMSolverMultistepScheduler", {"use_karras_sigmas": True}),
    "ddim": ("DDIMScheduler", {}),
    "unipc": ("UniPCMultistepScheduler", {}),
    "lcm": ("LCMScheduler", {}),
}

#: diffusers scheduler class → A1111 sampler name.
_A1111_NAMES = {
    "PNDMScheduler": "PLMS",
    "EulerDiscreteScheduler": "Euler",
    "EulerAncestralDiscreteScheduler": "Euler a",
    "DPMSolverMultistepScheduler": "DPM++ 2M",
    "DPMSolverSinglestepScheduler": "DPM++ 2S",
    "DDIMScheduler": "DDIM",
    "UniPCMultistepScheduler": "UniPC",
    "LCMScheduler": "LCM",
    "LMSDiscreteScheduler": "LMS",
    "HeunDiscreteScheduler": "Heun",
    "KDPM2DiscreteScheduler": "DPM2",
    "KDPM2AncestralDiscreteScheduler": "DPM2 a",
    "DEISMultistepScheduler": "DEIS",
    "DDPMScheduler": "DDPM",
    "FlowMatchEulerDiscreteScheduler": "Euler",  # SD 3.5 / FLUX: A1111 Forge writes Euler
}


def original_scheduler(pipe: Any) -> Any:
    """The scheduler the model came with (remembered the first time it is asked for)."""
    orig = getattr(pipe, _ORIGINAL_ATTR, None)
    if orig is None:
        orig = pipe.scheduler
        # A plain attribute: diffusers registers only pipeline modules passed to __init__.
        object.__setattr__(pipe, _ORIGINAL_ATTR, orig)
    return orig


def make_scheduler(original: Any, key: str) -> Any:
    """A fresh scheduler for ``key`` built from the original scheduler's config."""
    import diffusers

    if key not in SCHEDULERS:
        raise ValueError(f"unknown scheduler {key!r}; choose one of: {', '.join(SCHEDULERS)}")
    if key == "default":
        return original.__class__.from_config(original.config)
    class_name, extra = _CLASSES[key]
    return getattr(diffusers, class_name).from_config(original.config, **extra)


def apply_scheduler(pipe: Any, key: str) -> Any:
    """Give ``pipe`` a fresh scheduler for ``key``; returns it."""
    scheduler = make_scheduler(original_scheduler(pipe), key)
    pipe.scheduler = scheduler
    return scheduler


def a1111_sampler_names(key: str, scheduler: Any) -> tuple[str, str]:
    """(sampler, schedule type) as A1111 writes them, e.g. ("DPM++ 2M", "Karras").

    The schedule type is "" for the sampler's automatic schedule, "Karras" with Karras sigmas and
    "SGM Uniform" for trailing timestep spacing (Turbo/LCM-style models).
    """
    config = getattr(scheduler, "config", {}) or {}
    name = _A1111_NAMES.get(type(scheduler).__name__, type(scheduler).__name__)
    if key != "default" and key in SCHEDULERS:
        name = SCHEDULERS[key].removesuffix(" Karras")
    if config.get("use_karras_sigmas"):
        schedule = "Karras"
    elif config.get("timestep_spacing") == "trailing":
        schedule = "SGM Uniform"
    else:
        schedule = ""
    return name, schedule
