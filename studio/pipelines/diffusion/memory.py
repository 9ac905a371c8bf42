"""Low-memory options of an image model, and the retry with offload when CUDA runs out of memory.

:func:`apply_memory_options` puts a model's :class:`~studio.core.config.MemoryOptions` on a cached
diffusers pipeline: attention slicing (``enable_attention_slicing`` / ``disable_…``), VAE tiling
(on the VAE itself — diffusers 0.42 deprecates the pipeline-level ``enable_vae_tiling``) and
accelerate's model or sequential CPU offload (``none`` removes the hooks and moves the pipeline
back to its device). The options in force are remembered on the pipeline, so applying the same
ones again does nothing. Offload needs CUDA and accelerate; elsewhere it is ignored and the
returned warning tells the user why.

Derived pipelines (img2img / inpaint, from ``AutoPipelineFor*.from_pipe``) share the cached
pipeline's modules, so slicing, tiling and offload hooks — which live on the modules — carry
over. What does not is the pipeline-level record of model offload (``_all_hooks``,
``_offload_device``), which diffusers uses at the end of each call to put every model back on the
CPU; :func:`share_offload_state` copies it, so an offloaded model stays offloaded after an
img2img call too.

:func:`run_with_offload_retry` is the out-of-memory retry: when CUDA runs out of memory during a
diffusers call and no offload is on, every other model is unloaded, model CPU offload is turned on
for this model (until it is unloaded) and the image is made once more.

torch and accelerate are never imported at module level.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import logging
from collections.abc import Callable
from typing import Any, TypeVar

from studio.core.config import MemoryOptions

log = logging.getLogger(__name__)

T = TypeVar("T")

STATE_ATTR = "_studio_memory_options"  # the MemoryOptions in force on a cached pipeline
DEVICE_ATTR = "_studio_memory_device"  # the device the pipeline runs on
OOM_ATTR = "_studio_offload_after_oom"  # model offload turned on by a retry: kept until unloaded
BASE_ATTR = "_studio_base_pipeline"  # on a derived pipeline: the cached one it was made from
PLAN_ATTR = "_studio_planned_offload"  # the offload the memory planner chose: kept until unloaded
_HOOK_STATE = ("_all_hooks", "_offload_device", "_offload_gpu_id")

OFFLOAD_NAMES = {"model": "Model CPU offload", "sequential": "Sequential CPU offload"}
OFFLOAD_IGNORED = ("{what} needs an NVIDIA GPU (CUDA) and is ignored on {device}: the model "
                   "runs without it. Turn it off in Models → memory options.")
OFFLOAD_NO_ACCELERATE = ("{what} needs the accelerate package, which is not installed: the "
                         "model runs without it.")
OOM_OFFLOAD_NOTE = ("Ran out of GPU memory at {size}; finished with model CPU offload (slower). "
                    "It stays on for this model until it is unloaded; turn it on for good in "
                    "Models → memory options.")


def offload_supported(device: str) -> bool:
    """Whether accelerate's CPU offload can run for ``device`` (CUDA with accelerate)."""
    return str(device).startswith("cuda") and importlib.util.find_spec("accelerate") is not None


def base_of(pipe: Any) -> Any:
    """The cached pipeline ``pipe`` was derived from (``pipe`` itself when it is the cached one)."""
    return getattr(pipe, BASE_ATTR, None) or pipe


def applied_options(pipe: Any) -> MemoryOptions:
    """The options in force on ``pipe``'s model (defaults when none were applied)."""
    options = getattr(base_of(pipe), STATE_ATTR, None)
    return options if isinstance(options, MemoryOptions) else MemoryOptions()


def offload_mode(model: Any) -> str:
    """``none``, ``model`` or ``sequential``: the offload in force on a cached model (cheap)."""
    return applied_options(model).offload


def _offload_warning(options: MemoryOptions, device: str) -> str:
    what = OFFLOAD_NAMES.get(options.offload, "CPU offload")
    if str(device).startswith("cuda"):
        return OFFLOAD_NO_ACCELERATE.format(what=what)
    return OFFLOAD_IGNORED.format(what=what, device=str(device).upper()
                                  if device in ("cpu", "mps") else device)


def _set_offload(pipe: Any, mode: str, device: str) -> None:
    if mode == "model":
        pipe.enable_model_cpu_offload(device=device)
    elif mode == "sequential":
        pipe.enable_sequential_cpu_offload(device=device)
    else:
        # Removing accelerate's hooks puts sequentially offloaded weights back on the CPU from the
        # hooks' copies; then the whole pipeline goes back to its device.
        pipe.remove_all_hooks()
        pipe.to(device)


def apply_memory_options(pipe: Any, options: MemoryOptions, device: str) -> list[str]:
    """Put ``options`` on the cached pipeline ``pipe`` running on ``device``; returns warnings
    for the user (offload asked for where it cannot run). Only what changed is touched."""
    warnings: list[str] = []
    wanted = options
    if wanted.offload != "none" and not offload_supported(device):
        warnings.append(_offload_warning(wanted, device))
        wanted = dataclasses.replace(wanted, offload="none")
    if getattr(pipe, OOM_ATTR, False) and wanted.offload == "none" and offload_supported(device):
        wanted = dataclasses.replace(wanted, offload="model")  # the retry's offload stays on
    planned = getattr(pipe, PLAN_ATTR, "none")
    if wanted.offload == "none" and planned != "none" and offload_supported(device):
        wanted = dataclasses.replace(wanted, offload=planned)  # the planner's, until unloaded
    setattr(pipe, DEVICE_ATTR, device)
    current = applied_options(pipe)
    if wanted == current:
        return warnings
    if wanted.attention_slicing != current.attention_slicing:
        if wanted.attention_slicing:
            pipe.enable_attention_slicing()
        else:
            pipe.disable_attention_slicing()
    if wanted.vae_tiling != current.vae_tiling:
        vae = getattr(pipe, "vae", None)
        if vae is not None and hasattr(vae, "enable_tiling"):
            vae.enable_tiling() if wanted.vae_tiling else vae.disable_tiling()
    if wanted.offload != current.offload:
        try:
            _set_offload(pipe, wanted.offload, device)
        except (ImportError, RuntimeError, ValueError) as exc:  # e.g. an accelerate too old
            log.exception("could not switch offload to %s", wanted.offload)
            if wanted.offload == "none":
                raise
            _set_offload(pipe, "none", device)
            what = OFFLOAD_NAMES.get(wanted.offload, "CPU offload")
            warnings.append(f"{what} could not be turned on ({str(exc).splitlines()[0][:200]});"
                            " the model runs without it.")
            wanted = dataclasses.replace(wanted, offload="none")
    setattr(pipe, STATE_ATTR, wanted)
    log.info("memory options of %s: %s", type(pipe).__name__, wanted)
    return warnings


def share_offload_state(base: Any, derived: Any) -> None:
    """Make ``derived`` (built by ``from_pipe`` from the cached ``base``) behave as ``base`` does
    under offload: it knows its base, and model offload re-arms after its calls as well."""
    setattr(derived, BASE_ATTR, base)
    for name in _HOOK_STATE:
        if name in vars(base):
            setattr(derived, name, getattr(base, name))


def can_offload_after_oom(pipe: Any) -> bool:
    """Whether an out-of-memory error in ``pipe`` can be retried with model offload: it runs on
    CUDA (with accelerate) and no offload is on yet."""
    base = base_of(pipe)
    return offload_supported(getattr(base, DEVICE_ATTR, "")) and \
        applied_options(base).offload == "none"


def enable_offload_after_oom(pipe: Any) -> None:
    """Unload every other model, then turn on model CPU offload for ``pipe``'s model; it stays on
    until the model is unloaded (later jobs keep it even when their options say none)."""
    from studio.pipelines.model_cache import free_memory_except

    base = base_of(pipe)
    free_memory_except(base)
    _set_offload(base, "model", getattr(base, DEVICE_ATTR))
    setattr(base, STATE_ATTR, dataclasses.replace(applied_options(base), offload="model"))
    setattr(base, OOM_ATTR, True)
    if pipe is not base:
        share_offload_state(base, pipe)


def run_with_offload_retry(call: Callable[[], T], pipe: Any, size: str,
                           note: Callable[[str], None]) -> T:
    """``call()``; if CUDA runs out of memory in it and offload can help, once more with model
    CPU offload (see :func:`enable_offload_after_oom`), telling ``note`` what happened.

    ``call`` must build everything that a run consumes (the seeded generator) itself, so the
    retry makes the same image. A second out-of-memory error propagates."""
    from studio.pipelines.diffusion.batch import is_out_of_memory

    try:
        return call()
    except RuntimeError as exc:  # torch.OutOfMemoryError is a RuntimeError
        if not (is_out_of_memory(exc) and can_offload_after_oom(pipe)):
            raise
        log.warning("out of GPU memory at %s; retrying with model CPU offload", size)
    # Outside the except block: the traceback no longer pins the failed call's tensors.
    try:
        enable_offload_after_oom(pipe)
    except (ImportError, RuntimeError, ValueError) as exc:
        log.exception("could not turn on model CPU offload after running out of memory")
        raise RuntimeError(f"out of memory (and model CPU offload failed: {exc})") from exc
    note(OOM_OFFLOAD_NOTE.format(size=size))
    return call()
