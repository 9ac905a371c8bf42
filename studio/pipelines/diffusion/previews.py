"""Live previews of an image while it is being denoised.

``fast``: a 4→3 linear map (plus bias) from the UNet's latent channels to RGB, the approximation
A1111 and ComfyUI use — microseconds per step, an image 1/8 of the final size.
``taesd``: madebyollin's Tiny AutoEncoder decodes the latents to a full-size image, when the user
has installed it (``taesd`` for SD 1.x/2.x, ``taesdxl`` for SDXL, ``taesd3`` for SD 3, ``taef1``
for FLUX.1, Kontext, Chroma and Z-Image, ``taef2`` for FLUX.2 — AutoencoderTiny with TAEF2's pool
branches, :mod:`.taef2`), every N steps. Qwen-Image's TAEW2.1 is a video decoder diffusers cannot
build yet: Qwen-Image keeps ``fast`` (``Family.tae_missing`` says why).

A preview only reads the latents: it never modifies them and never draws random numbers, so
turning previews on cannot change the final image. torch is imported lazily.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from studio.core.config import Paths
from studio.core.jobs import UserFacingError
from studio.library import taef2_files
from studio.library.families import FAMILIES
from studio.library.families import family as family_of

if TYPE_CHECKING:
    from collections.abc import Callable

    import torch

    from studio.media.timeline import Timeline

log = logging.getLogger(__name__)

# The published latent→RGB approximations live with each family (studio/library/families/),
# applied to the UNet's (scaled) latents; the result is in [-1, 1].
TAESD_REPOS = {f.key: f.tae_repo for f in FAMILIES.values() if f.tae_repo}
_cache: dict[tuple[str, str, Any], tuple[Any, Any]] = {}
_taesd_cache: dict[tuple[str, str, str], TaesdPreviewer] = {}


def latent_rgb_factors(family: str) -> tuple[list[list[float]], list[float]]:
    """(channels×3 factors, 3 biases) for a family (SD 1.x's for one not known)."""
    found = family_of(family) or FAMILIES["sd1"]
    return ([list(row) for row in found.latent_rgb_factors], list(found.latent_rgb_bias))


def latents_to_rgb(latents: torch.Tensor, family: str) -> np.ndarray:
    """The first latent of a batch (4×h×w torch tensor) as an h×w×3 uint8 RGB image."""
    import torch

    lat = latents[0] if latents.ndim == 4 else latents
    key = (family, str(lat.device), lat.dtype)
    if key not in _cache:  # building the small matrices once per device keeps each call cheap
        factors, bias = latent_rgb_factors(family)
        _cache[key] = (torch.tensor(factors, device=lat.device, dtype=lat.dtype),
                       torch.tensor(bias, device=lat.device, dtype=lat.dtype))
    weight, bias = _cache[key]
    with torch.no_grad():
        rgb = torch.einsum("chw,cr->hwr", lat.detach(), weight) + bias
        rgb = ((rgb.float() + 1.0) * 127.5).clamp(0, 255).to(torch.uint8)
    return rgb.cpu().numpy()


def _is_taesd_folder(folder: Path) -> bool:
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return config.get("_class_name") == "AutoencoderTiny" and any(
        folder.glob("*.safetensors"))


def find_taesd(family: str, paths: Paths) -> Path | None:
    """The installed TAESD decoder for ``family``: the studio models folder, then the HF cache
    (a folder; for FLUX.2, TAEF2's file)."""
    repo = TAESD_REPOS.get(family)
    if repo is None:
        return None
    if repo == taef2_files.REPO:
        return taef2_files.find(paths)
    local = paths.models_dir / repo.split("/")[1]
    if _is_taesd_folder(local):
        return local
    from studio.library.hf_cache import hf_cache_dir

    snapshots = hf_cache_dir() / f"models--{repo.replace('/', '--')}" / "snapshots"
    try:
        candidates = sorted(snapshots.iterdir(), key=lambda p: p.stat().st_mtime, reverse=True)
    except OSError:
        return None
    return next((c for c in candidates if _is_taesd_folder(c)), None)


class TaesdPreviewer:
    """Decodes latents to a full-size RGB preview with a Tiny AutoEncoder (AutoencoderTiny)."""

    def __init__(self, folder: Path, device: str, dtype: torch.dtype) -> None:
        from diffusers import AutoencoderTiny

        self.folder = Path(folder)
        self.model: Any  # an AutoencoderTiny (mypy sees diffusers' classes without attributes)
        if self.folder.is_file():  # TAEF2: AutoencoderTiny with its pool branches, from a file
            from studio.pipelines.diffusion import taef2

            self.model = taef2.build_decoder(taef2.read_file(self.folder), dtype).to(device)
        else:
            # safetensors only: a .bin next to it is never opened (find_taesd asks for them).
            self.model = AutoencoderTiny.from_pretrained(str(folder), dtype=dtype,
                                                         local_files_only=True,
                                                         use_safetensors=True).to(device)
        self.model.eval()
        self.model.requires_grad_(False)

    def __call__(self, latents: torch.Tensor) -> np.ndarray:
        """h×w×3 uint8 image of the first latent of the batch (full size)."""
        import torch

        lat = latents[:1] if latents.ndim == 4 else latents[None]
        with torch.no_grad():
            lat = lat.to(self.model.device, self.model.dtype)
            # Undo the decoder's own scaling and shift as the pipelines do before decoding
            # (TAESD for SD 1.x/SDXL: 1 and none, so UNet-space latents; TAESD3: SD3's).
            config = self.model.config
            lat = lat / config.scaling_factor + (getattr(config, "shift_factor", None) or 0.0)
            image = self.model.decode(lat).sample[0]
            image = ((image.float().clamp(-1, 1) + 1.0) * 127.5).round().to(torch.uint8)
        return image.permute(1, 2, 0).cpu().numpy()


class Previewer:
    """Chooses per step what to preview according to the user's preview setting."""

    def __init__(self, mode: str, family: str, every: int = 4,
                 taesd: TaesdPreviewer | None = None) -> None:
        self.mode = mode
        self.family = family
        self.every = max(1, int(every))
        self.taesd = taesd
        self.timelines: dict[int, Timeline] | None = None  # see keep_timelines
        self.timeline_limit = 0

    def __call__(self, step: int, total: int,
                 latents: torch.Tensor | None) -> np.ndarray | None:
        """A preview for step ``step`` (1-based) or None when none is due."""
        if self.mode == "off" or latents is None:
            return None
        if self.taesd is not None:
            if step % self.every == 0 or step == total:
                return self.taesd(latents)
            return None
        return latents_to_rgb(latents, self.family)

    # -- the denoising timeline (studio.media.timeline) ------------------------------------
    def keep_timelines(self, limit: int) -> None:
        """Keep a bounded timeline of each image's steps from now on (``limit`` frames each;
        0 keeps none)."""
        self.timelines = {} if limit > 0 else None
        self.timeline_limit = int(limit)

    def keep(self, index: int, step: int, total: int, latents: torch.Tensor, preview: Any,
             scheduler: Any = None, timestep: Any = None) -> None:
        """Offer step ``step`` of image ``index`` to its timeline: the live preview when there
        is one, else the fast latent→RGB picture (with previews off too; with TAESD on, only
        its frames). Like a preview, it only reads the latents."""
        timelines = self.timelines
        if timelines is None or latents is None:
            return
        from studio.media.timeline import Timeline

        timeline = timelines.get(index)
        if timeline is None:
            timeline = timelines[index] = Timeline(self.timeline_limit)
        image: Any = preview
        if image is None and self.taesd is None:  # made only for a frame that is kept
            image = lambda: latents_to_rgb(latents, self.family)  # noqa: E731
        t = _number(timestep)
        timeline.offer(step, total, image, t, noise_level(scheduler, t))

    def timeline_mark(self, index: int) -> Callable[[], object] | None:
        """A way back to where image ``index``'s timeline is now: call it to forget the frames
        offered since (a pass retried after running out of memory)."""
        timelines = self.timelines
        if timelines is None:
            return None
        timeline = timelines.get(index)
        if timeline is None:  # the image's first pass: a retry starts the timeline afresh
            return lambda: timelines.pop(index, None)
        mark = timeline.mark()
        return lambda: timeline.rewind(mark)

    def take_timeline(self, index: int) -> Timeline | None:
        """Image ``index``'s timeline (a :class:`~studio.media.timeline.Timeline`), handed
        over once: the previewer forgets it. None when none was kept."""
        timelines = self.timelines
        return None if timelines is None else timelines.pop(index, None)


def _number(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError, RuntimeError):
        return None


def noise_level(scheduler: Any, timestep: float | None = None) -> float | None:
    """σ of the latents a step of ``scheduler`` at ``timestep`` just produced (read after the
    step): the scheduler's own sigma at its step index (Euler, DPM++, UniPC, flow matching …),
    else sqrt((1-ᾱ)/ᾱ) at the timestep after ``timestep`` (DDIM, PNDM, LCM …; 0 after the
    last). None when the scheduler says neither."""
    if scheduler is None:
        return None
    sigmas = getattr(scheduler, "sigmas", None)
    index = getattr(scheduler, "step_index", None)
    try:
        if sigmas is not None and index is not None and 0 <= int(index) < len(sigmas):
            return float(sigmas[int(index)])
        alphas = getattr(scheduler, "alphas_cumprod", None)
        timesteps = getattr(scheduler, "timesteps", None)
        if alphas is None or timesteps is None or timestep is None:
            return None
        values = [float(t) for t in timesteps]
        if timestep not in values:
            return None
        after = len(values) - 1 - values[::-1].index(timestep) + 1  # past its last occurrence
        if after >= len(values):
            return 0.0
        alpha = float(alphas[int(values[after])])
        return ((1.0 - alpha) / alpha) ** 0.5 if alpha > 0 else None
    except (TypeError, ValueError, IndexError, RuntimeError):
        return None


def make_previewer(mode: str, family: str, every: int, paths: Paths, device: str,
                   dtype: torch.dtype) -> Previewer:
    """A :class:`Previewer`; ``taesd`` falls back to ``fast`` when TAESD is not installed."""
    taesd = None
    if mode == "taesd":
        folder = find_taesd(family, paths)
        if folder is not None:
            try:
                key = (str(folder), device, str(dtype))
                if key not in _taesd_cache:
                    _taesd_cache.clear()  # keep one decoder: they are small but live on the GPU
                    _taesd_cache[key] = TaesdPreviewer(folder, device, dtype)
                taesd = _taesd_cache[key]
            except (OSError, ValueError, RuntimeError, UserFacingError) as exc:
                log.warning("TAESD at %s could not be loaded (%s); using fast previews", folder,
                            exc)
        else:
            found = family_of(family)
            if found is not None and found.tae_missing:
                log.info("%s", found.tae_missing)
            else:
                log.info("TAESD for %s is not installed; using fast previews", family)
    return Previewer("fast" if mode == "taesd" and taesd is None else mode, family, every, taesd)
