"""Request dataclasses: everything that determines a job's result (DESIGN rule 3).

The same request drives the GUI, the CLI and the server, is written into each output's metadata
(the ``studio`` PNG chunk) and can be rebuilt from it ("reuse parameters"). Light: no torch here.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, TypeVar

if TYPE_CHECKING:
    from PIL.Image import Image as PILImage

#: Scheduler keys, in the order the picker shows them, with their display names.
SCHEDULERS: dict[str, str] = {
    "default": "Model default",
    "euler": "Euler",
    "euler_a": "Euler a",
    "dpmpp_2m": "DPM++ 2M",
    "dpmpp_2m_karras": "DPM++ 2M Karras",
    "ddim": "DDIM",
    "unipc": "UniPC",
    "lcm": "LCM",
}

MAX_LORA_WEIGHT = 10.0  # A1111 and ComfyUI allow -10..10; beyond that a LoRA only destroys the image
MAX_SIDE = 4096  # pixels; beyond this no consumer GPU or CPU finishes a Stable Diffusion image
MAX_MASK_BLUR = 64  # pixels; A1111 offers 0..64
MAX_STEPS = 500
MAX_COUNT = 1000
SEED_MAX = 2**32 - 1
MAX_HIRES_SCALE = 4.0
#: The hires fix's upscalers that need no model file, by A1111's names: the first pass's latents
#: resized (bilinear or nearest), or its pixels resized with Lanczos. Any other name is an upscaler
#: model (studio.library.upscalers: a library name or a file).
HIRES_UPSCALERS: dict[str, str] = {
    "Latent": "latents resized bilinearly (A1111's default)",
    "Latent (nearest)": "latents resized by nearest neighbour",
    "Lanczos": "the first image resized with Lanczos",
}


def validate_model(model: str) -> None:
    """A request names a model."""
    if not str(model).strip():
        raise ValueError("No model chosen. Pick a model or add one with 'Add model…'.")


def validate_size(width: object, height: object) -> None:
    """Width and height in pixels: positive multiples of 8, at most :data:`MAX_SIDE`."""
    for name, v in (("width", width), ("height", height)):
        if not isinstance(v, int) or v <= 0:
            raise ValueError(f"{name.capitalize()} must be a positive number of pixels, not {v}.")
        if v % 8:
            raise ValueError(f"{name.capitalize()} {v} is not a multiple of 8 "
                             f"(try {max(8, round(v / 8) * 8)}).")
        if v > MAX_SIDE:
            raise ValueError(f"{name.capitalize()} {v} is too large (at most {MAX_SIDE} px).")


@dataclass(kw_only=True)
class PromptFields:
    """What a diffusion request says in words, shared by text to image and image to image: the
    prompt, the negative prompt and the LoRAs applied besides any ``<lora:name:weight>`` tags in
    the prompt (``[{"name": library name or file path, "weight": float}, ...]``)."""

    prompt: str = ""
    negative_prompt: str = ""
    loras: list[dict[str, Any]] = dataclasses.field(default_factory=list)

    def validate_prompt(self) -> None:
        validate_loras(self.loras)


@dataclass(kw_only=True)
class SamplingFields:
    """How a diffusion request samples, shared by text to image and image to image: steps, CFG,
    the scheduler, and the batch's seeds (image i uses ``seed + i``).

    A1111's "Variation seed" / "Variation seed strength": the starting noise is the spherical
    interpolation of ``seed``'s noise and ``variation_seed``'s, 0 = off (the plain image), 1 = the
    variation seed's noise alone. While on, every image of a batch keeps ``seed`` and image i
    uses ``variation_seed + i`` (a batch of variations of one picture, as A1111)."""

    steps: int = 20
    cfg: float = 7.0
    seed: int = 0
    count: int = 1
    scheduler: str = "default"  # a key of SCHEDULERS
    variation_seed: int = 0
    variation_strength: float = 0.0

    def validate_sampling(self) -> None:
        if not 1 <= self.steps <= MAX_STEPS:
            raise ValueError(f"Steps must be between 1 and {MAX_STEPS}, not {self.steps}.")
        if not 1 <= self.count <= MAX_COUNT:
            raise ValueError(f"Count must be between 1 and {MAX_COUNT}, not {self.count}.")
        if not 0 <= self.cfg <= 100:
            raise ValueError(f"CFG scale must be between 0 and 100, not {self.cfg}.")
        if not 0 <= self.seed <= SEED_MAX:
            raise ValueError(f"Seed must be between 0 and {SEED_MAX}, not {self.seed}.")
        validate_variation(self.variation_seed, self.variation_strength)
        if self.scheduler not in SCHEDULERS:
            raise ValueError(f"Unknown scheduler {self.scheduler!r}; choose one of: "
                             + ", ".join(SCHEDULERS))


@dataclass
class Txt2ImgRequest(PromptFields, SamplingFields):
    """A text-to-image job: the prompt (:class:`PromptFields`), the sampling
    (:class:`SamplingFields`), the size, the hires fix and the ControlNets."""

    model: str  # a diffusers folder, a single .safetensors file, or a repo id in the HF cache
    width: int = 512
    height: int = 512
    # A1111's hires fix: the image is made at width×height, upscaled ``hires_scale`` times with
    # ``hires_upscaler`` (a key of HIRES_UPSCALERS or an upscaler model) and refined by an img2img
    # pass of ``hires_steps`` steps (0: ``steps``) at ``hires_denoise`` ("Denoising strength").
    hires: bool = False
    hires_scale: float = 2.0
    hires_upscaler: str = "Latent"
    hires_steps: int = 0
    hires_denoise: float = 0.7
    # ControlNets guiding the image (studio.core.control): [{"model", "image", "preprocess",
    # "weight", "start", "end"}, ...]
    controlnets: list[dict[str, Any]] = dataclasses.field(default_factory=list)

    def hires_size(self) -> tuple[int, int]:
        """The hires pass's size: width and height times the scale, rounded down to multiples
        of 8 (as A1111 does)."""
        scale = float(self.hires_scale)
        return int(self.width * scale) // 8 * 8, int(self.height * scale) // 8 * 8

    def validate(self) -> None:
        """Raise ValueError with a one-line reason a person understands."""
        validate_model(self.model)
        validate_size(self.width, self.height)
        self.validate_sampling()
        if self.hires:
            self.validate_hires()
        self.validate_prompt()
        if self.controlnets:
            from studio.core.control import units

            units(self.controlnets)

    def validate_hires(self) -> None:
        """The hires fix's fields, each with the sentence that says how to fix it."""
        scale = self.hires_scale
        if isinstance(scale, bool) or not isinstance(scale, (int, float)) \
                or not 1.0 < scale <= MAX_HIRES_SCALE:
            raise ValueError(f"Hires upscale must be above 1 and at most {MAX_HIRES_SCALE:g} "
                             f"(2 doubles the width and height), not {scale!r}.")
        width, height = self.hires_size()
        if max(width, height) > MAX_SIDE:
            raise ValueError(f"The hires fix would make a {width}×{height} image, larger than "
                             f"{MAX_SIDE} px: lower the upscale or the size.")
        steps = self.hires_steps
        if isinstance(steps, bool) or not isinstance(steps, int) or not 0 <= steps <= MAX_STEPS:
            raise ValueError(f"Hires steps must be between 0 (as many as the first pass) and "
                             f"{MAX_STEPS}, not {steps!r}.")
        denoise = self.hires_denoise
        if isinstance(denoise, bool) or not isinstance(denoise, (int, float)) \
                or not 0.0 < denoise <= 1.0:
            raise ValueError(f"Denoising strength must be above 0 and at most 1 (how much the "
                             f"hires pass repaints), not {denoise!r}.")
        if not str(self.hires_upscaler).strip():
            raise ValueError("No hires upscaler chosen: pick " + ", ".join(HIRES_UPSCALERS)
                             + " or an upscaler model.")

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "txt2img", "model": self.model, **dataclasses.asdict(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Txt2ImgRequest:
        """Rebuild from :meth:`to_dict` output; unknown keys are ignored, missing ones default."""
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


def image_seeds(request: SamplingFields, index: int) -> tuple[int, int | None]:
    """(seed, variation seed or None) of image ``index`` of ``request``'s batch, as A1111 picks
    them: ``seed + index`` without a variation; with one (strength above 0) every image keeps
    ``seed`` and image ``index`` uses ``variation_seed + index``."""
    if not float(getattr(request, "variation_strength", 0.0) or 0.0) > 0.0:
        return request.seed + index, None
    return request.seed, int(request.variation_seed) + index


def variation_fields(seed: int | None, strength: float) -> dict[str, Any]:
    """A request's ``variation_seed`` / ``variation_strength`` as the CLI and the server take
    them: a variation without a seed gets a random one, no variation keeps seed 0; out of range
    raises ValueError with the sentence to show."""
    import secrets

    if seed is None:
        seed = secrets.randbelow(SEED_MAX + 1) if strength else 0
    validate_variation(seed, strength)
    return {"variation_seed": seed, "variation_strength": strength}


def validate_variation(seed: object, strength: object) -> None:
    """A variation seed in 0..SEED_MAX and a strength from 0 (off) to 1."""
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= SEED_MAX:
        raise ValueError(f"Variation seed must be a whole number between 0 and {SEED_MAX}, "
                         f"not {seed!r}.")
    if isinstance(strength, bool) or not isinstance(strength, (int, float)) \
            or not 0.0 <= strength <= 1.0:
        raise ValueError(f"Variation strength must be between 0 (off) and 1 (the variation "
                         f"seed's noise alone), not {strength!r}.")


def validate_loras(loras: object) -> None:
    """Each LoRA is ``{"name": non-empty str, "weight": number in ±MAX_LORA_WEIGHT}``."""
    if not isinstance(loras, list):
        raise ValueError("LoRAs must be a list of {name, weight}.")
    for lora in loras:
        if not isinstance(lora, dict) or not str(lora.get("name", "")).strip():
            raise ValueError(f"A LoRA needs a name, not {lora!r}.")
        weight = lora.get("weight", 1.0)
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) \
                or not -MAX_LORA_WEIGHT <= weight <= MAX_LORA_WEIGHT:
            raise ValueError(f"LoRA {lora['name']} weight must be between -{MAX_LORA_WEIGHT:g} and "
                             f"{MAX_LORA_WEIGHT:g}, not {weight!r}.")


@dataclass
class GeneratedImage:
    """One finished image of a text-to-image job, reported through ``progress.partial``.

    ``image`` is a PIL image (kept so the GUI can show it without reading the file again);
    ``path`` is where the PNG was written. ``warnings`` are things the user should know
    (a truncated prompt, an upcast VAE) and are shown beside the image.
    """

    request: Txt2ImgRequest
    seed: int
    index: int  # position in the batch: seed == image_seeds(request, index)[0]
    path: Path | None = None  # the saved PNG
    image: PILImage | None = None
    parameters: str = ""  # the A1111-style ``parameters`` text written into the PNG
    warnings: list[str] = dataclasses.field(default_factory=list)
    # The LoRAs applied (from prompt tags and request.loras): name, weight, path, hash, source
    loras: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    # Made by a GAN trained in Studio: from the seed alone (no prompt, no steps), at the GAN's
    # own size enlarged by whole pixels (``image.size`` may be less than the request's)
    seed_alone: bool = False
    # The denoising timeline (studio.media.timeline.Timeline) when Settings.timeline_frames asks
    # for one; in memory only, never written into the image or the Gallery. Any: core does not
    # import media (the layers in pyproject.toml), not even for a type.
    timeline: Any = None


DIRECTIONS = ("AtoB", "BtoA")
MAX_TRANSFORM_SIDE = 16384  # CycleGAN runs in tiles, so only the input's own size limits it


def validate_tiles(tile: int, overlap: int, smallest: int) -> None:
    """A tiled pass's tile side (0: no tiles, else ``smallest`` to 4096 pixels) and overlap (at
    most half a tile)."""
    if tile and not smallest <= tile <= 4096:
        raise ValueError(f"Tile size must be between {smallest} and 4096 pixels (or 0: no tiles).")
    if not 0 <= overlap <= max(tile // 2, 0):
        raise ValueError("Overlap must be between 0 and half the tile size.")


class _Dataclass(Protocol):
    """A dataclass, as ``dataclasses.fields`` takes it."""

    __dataclass_fields__: ClassVar[dict[str, Any]]


_Request = TypeVar("_Request", bound=_Dataclass)


def _from_known(cls: type[_Request], data: dict[str, Any]) -> _Request:
    known = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in data.items() if k in known})


MAX_WALK_FRAMES = 240


@dataclass
class GanWalkRequest:
    """A latent walk of a GAN trained in Studio: ``frames`` images on the path from ``seed``'s
    noise to ``seed_to``'s, each enlarged (whole pixels) to fit ``width`` × ``height``, saved as
    PNGs and, with ``gif``, as one animated GIF (``frame_ms`` per frame)."""

    model: str  # a GAN folder (gan.json + generator.safetensors)
    seed: int = 0
    seed_to: int = 1
    frames: int = 16
    width: int = 256
    height: int = 256
    gif: bool = False
    frame_ms: int = 100

    def validate(self) -> None:
        if not str(self.model).strip():
            raise ValueError("No model chosen: name a GAN trained in Studio (studio models list).")
        for name in ("seed", "seed_to"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= SEED_MAX:
                raise ValueError(f"{'Seed' if name == 'seed' else 'The last seed of the walk'} must "
                                 f"be between 0 and {SEED_MAX}, not {v}.")
        if not 2 <= self.frames <= MAX_WALK_FRAMES:
            raise ValueError(f"A latent walk has 2 to {MAX_WALK_FRAMES} frames, not "
                             f"{self.frames}.")
        for name in ("width", "height"):
            v = getattr(self, name)
            if not isinstance(v, int) or not 1 <= v <= MAX_SIDE:
                raise ValueError(f"{name.capitalize()} must be 1 to {MAX_SIDE} pixels, not {v}.")
        if not 10 <= self.frame_ms <= 10_000:
            raise ValueError(f"A frame lasts 10 to 10,000 ms, not {self.frame_ms}.")

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "gan-walk", **dataclasses.asdict(self)}

    # what Generate's preview and strip read of any request of theirs: a walk has no prompt and
    # no steps, and its frames are the "images" of the batch
    prompt = ""
    steps = 0

    @property
    def count(self) -> int:
        return self.frames


@dataclass
class TransformRequest:
    """A CycleGAN translation of one or more images (a batch keeps every finished image)."""

    model: str  # a generator .pth/.safetensors, or a folder holding a G_A/G_B pair
    inputs: list[str] = dataclasses.field(default_factory=list)  # image files, in order
    direction: str = "AtoB"  # AtoB (G_A, or the single generator) | BtoA (G_B)
    max_side: int = 0  # downscale inputs whose longer side exceeds this first; 0 keeps the size
    tile: int = 512  # pixels per tile side for large images; 0 never tiles
    overlap: int = 64  # pixels shared (and blended) by neighbouring tiles

    def validate(self) -> None:
        if not str(self.model).strip():
            raise ValueError("No CycleGAN model chosen. Pick one or download one from the list.")
        if not self.inputs:
            raise ValueError("No input image chosen.")
        if self.direction not in DIRECTIONS:
            raise ValueError(f"Direction must be AtoB or BtoA, not {self.direction!r}.")
        if not 0 <= self.max_side <= MAX_TRANSFORM_SIDE:
            raise ValueError(f"Max side must be between 0 (keep) and {MAX_TRANSFORM_SIDE}.")
        if self.max_side and self.max_side < 16:
            raise ValueError("Max side must be at least 16 pixels.")
        validate_tiles(self.tile, self.overlap, 64)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "transform", **dataclasses.asdict(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TransformRequest:
        return _from_known(cls, data)


#: Outpainting's sides (in :meth:`Img2ImgRequest.outpaint_amounts`' order) and fills.
OUTPAINT_SIDES = ("left", "right", "top", "bottom")
OUTPAINT_FILLS = ("edge", "noise")
MAX_UPSCALE = 8.0  # times: a 4× model applied to a 4096-px image is already 16384 px


@dataclass
class UpscaleRequest:
    """Upscale images with an upscaler model (ESRGAN, Real-ESRGAN…), in blended tiles.

    ``scale`` 0 keeps the model's own factor; another value resizes its output (Lanczos) to that
    many times the input, as A1111's "Resize" does (a 4× model asked for 2× gives 2×)."""

    model: str  # an upscaler's library name or a .pth/.safetensors file
    inputs: list[str] = dataclasses.field(default_factory=list)  # image files, in order
    scale: float = 0.0
    tile: int = 512  # input pixels per tile side; 0 never tiles
    overlap: int = 32  # input pixels shared (and blended) by neighbouring tiles

    def validate(self) -> None:
        if not str(self.model).strip():
            raise ValueError("No upscaler model chosen. Put ESRGAN / Real-ESRGAN files in the "
                             "models folder's 'upscalers' folder and pick one.")
        if not self.inputs:
            raise ValueError("No input image chosen.")
        scale = self.scale
        if isinstance(scale, bool) or not isinstance(scale, (int, float)) \
                or not (scale == 0 or 1.0 <= scale <= MAX_UPSCALE):
            raise ValueError(f"Scale must be 0 (the model's own) or between 1 and "
                             f"{MAX_UPSCALE:g}, not {scale!r}.")
        validate_tiles(self.tile, self.overlap, 32)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "upscale", **dataclasses.asdict(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> UpscaleRequest:
        return _from_known(cls, data)


@dataclass
class Img2ImgRequest(PromptFields, SamplingFields):
    """Image to image (``mask`` empty) or inpainting (``mask`` names a white-on-black mask), with
    the prompt and sampling of text to image (:class:`PromptFields`, :class:`SamplingFields`;
    the variation seed's noise is added to the image latents).

    ``width``/``height`` of 0 are derived from the image: its size rounded down to multiples of 8
    (as diffusers does), the longer side limited to :data:`MAX_SIDE`. Image i uses ``seed + i``.
    """

    model: str  # a text-to-image model, as in Txt2ImgRequest
    image: str = ""
    mask: str = ""  # "" for img2img; a mask image (white = repaint) for inpainting
    strength: float = 0.75  # 0 keeps the image, 1 repaints it completely
    width: int = 0
    height: int = 0
    keep_unmasked: bool = True  # inpainting: paste the original pixels back outside the mask
    # Inpainting: Gaussian blur radius (px) of the mask before it is used, A1111's "Mask blur";
    # a soft edge blends the repainted region into the rest. The window and the CLI offer
    # A1111's 4 px; 0 here keeps a bare request (and results made before it existed) as diffusers.
    mask_blur: int = 0
    # Outpainting: pixels added on each side (multiples of 8). The new area is filled
    # (``outpaint_fill``: "edge" colours stretched out, or "noise"), masked with a seam feathered
    # ``mask_blur`` px into the picture, inpainted, and the original pasted back outside the mask.
    outpaint_left: int = 0
    outpaint_right: int = 0
    outpaint_top: int = 0
    outpaint_bottom: int = 0
    outpaint_fill: str = "edge"
    # SD upscale (A1111's script): 0 is off; else the image is enlarged ``sd_upscale`` times
    # (``sd_upscaler``: "Lanczos" or an upscaler model) and refined with img2img at ``strength``
    # in tiles of ``sd_upscale_tile`` px overlapping by ``sd_upscale_overlap`` px, blended.
    sd_upscale: float = 0.0
    sd_upscaler: str = "Lanczos"
    sd_upscale_tile: int = 512
    sd_upscale_overlap: int = 64
    # Edit with instructions (FLUX.1 Kontext, Qwen-Image-Edit): ``prompt`` is the instruction
    # ("make it winter"); no mask and no strength. A size of 0 is about a megapixel at the
    # image's aspect ratio (what the edit models were trained at).
    edit: bool = False

    def validate(self) -> None:
        self._validate_outpaint()
        self._validate_sd_upscale()
        if self.edit:
            self._validate_edit()
        validate_model(self.model)
        validate_size(self.width or 8, self.height or 8)
        self.validate_sampling()
        self.validate_prompt()
        if not str(self.image).strip():
            raise ValueError("No input image chosen.")
        if not 0.0 < self.strength <= 1.0:
            raise ValueError(f"Strength must be above 0 and at most 1, not {self.strength}.")
        if not 0 <= int(self.mask_blur) <= MAX_MASK_BLUR:
            raise ValueError(f"Mask blur must be 0 to {MAX_MASK_BLUR} px, not {self.mask_blur}.")

    def _validate_outpaint(self) -> None:
        for side, amount in zip(OUTPAINT_SIDES, self.outpaint_amounts(), strict=True):
            if isinstance(amount, bool) or not isinstance(amount, int) or amount < 0:
                raise ValueError(f"Outpaint {side} must be a whole number of pixels, 0 or more, "
                                 f"not {amount!r}.")
            if amount % 8:
                low = amount // 8 * 8
                raise ValueError(f"Outpaint {side} must be a multiple of 8 px (the model works "
                                 f"in 8-px blocks), not {amount}: use {low or 8} or {low + 8}.")
            if amount > MAX_SIDE:
                raise ValueError(f"Outpaint {side} is {amount} px; the canvas can be at most "
                                 f"{MAX_SIDE} px on a side.")
        if self.outpaint_fill not in OUTPAINT_FILLS:
            raise ValueError(f"Outpaint fill must be one of {', '.join(OUTPAINT_FILLS)}, not "
                             f"{self.outpaint_fill!r}.")
        if self.outpaint and self.inpaint:
            raise ValueError("Outpainting makes its own mask: clear the mask to outpaint, or "
                             "inpaint first and outpaint the result.")

    def _validate_edit(self) -> None:
        if self.inpaint or self.outpaint or self.sd_upscale:
            raise ValueError("Edit with instructions changes the whole picture as told: clear "
                             "the mask, the outpaint amounts and SD upscale to use it.")
        if not str(self.prompt).strip():
            raise ValueError("Write the edit instruction (for example “make it winter”) in the "
                             "prompt.")
        if (self.width or self.height) and (self.width % 16 or self.height % 16):
            raise ValueError(f"An edit's size must be multiples of 16 (the edit models pack "
                             f"2×2 latents), not {self.width}×{self.height}.")

    def _validate_sd_upscale(self) -> None:
        scale = self.sd_upscale
        if isinstance(scale, bool) or not isinstance(scale, (int, float)) \
                or not (scale == 0 or 1.0 <= scale <= MAX_UPSCALE):
            raise ValueError(f"SD upscale must be 0 (off) or between 1 and {MAX_UPSCALE:g} "
                             f"times, not {scale!r}.")
        if not scale:
            return
        if self.inpaint or self.outpaint:
            raise ValueError("SD upscale refines the whole image: clear the mask and the "
                             "outpaint amounts to use it.")
        if not str(self.sd_upscaler).strip() or (self.sd_upscaler in HIRES_UPSCALERS
                                                 and self.sd_upscaler != "Lanczos"):
            raise ValueError("Choose the SD upscale's upscaler: Lanczos or an upscaler model "
                             f"(it enlarges pixels, not latents), not {self.sd_upscaler!r}.")
        tile, overlap = self.sd_upscale_tile, self.sd_upscale_overlap
        if not (isinstance(tile, int) and 64 <= tile <= 2048 and tile % 8 == 0):
            raise ValueError(f"SD upscale tile size must be a multiple of 8 from 64 to 2048 px, "
                             f"not {tile!r}.")
        if not (isinstance(overlap, int) and 0 <= overlap <= tile // 2 and overlap % 8 == 0):
            raise ValueError(f"SD upscale tile overlap must be a multiple of 8 from 0 to half "
                             f"the tile size ({tile // 2} px), not {overlap!r}.")

    @property
    def inpaint(self) -> bool:
        return bool(str(self.mask).strip())

    @property
    def outpaint(self) -> bool:
        """Whether the canvas is extended on any side."""
        return any(self.outpaint_amounts())

    def outpaint_amounts(self) -> tuple[int, int, int, int]:
        """Pixels added (left, right, top, bottom)."""
        return (self.outpaint_left, self.outpaint_right, self.outpaint_top,
                self.outpaint_bottom)

    def to_dict(self) -> dict[str, Any]:
        kind = "edit" if self.edit else "inpaint" if self.inpaint else "img2img"
        return {"kind": kind, "model": self.model, **dataclasses.asdict(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Img2ImgRequest:
        return _from_known(cls, data)


@dataclass
class UnloadRequest:
    """The ``unload`` job: free every model the worker holds (the "Unload all" action)."""

    def validate(self) -> None:
        return None

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "unload"}


@dataclass
class TransformedImage:
    """One finished image of a transform or img2img job, reported through ``progress.partial``.

    ``source`` is the input file; ``image`` the PIL result (kept for display); ``seed`` is None for
    CycleGAN (it draws no random numbers).
    """

    request: TransformRequest | Img2ImgRequest | UpscaleRequest
    index: int
    source: Path | None = None  # the input image
    path: Path | None = None  # the saved PNG
    image: PILImage | None = None
    parameters: str = ""
    seed: int | None = None
    warnings: list[str] = dataclasses.field(default_factory=list)
    loras: list[dict[str, Any]] = dataclasses.field(default_factory=list)  # as in GeneratedImage
    timeline: Any = None  # img2img / inpaint: the denoising timeline, as in GeneratedImage


#: The requests the diffusion batch loop (studio.pipelines.diffusion.batch) runs: text to image
#: and image to image / inpainting, with their shared prompt and sampling fields.
DiffusionRequest = Txt2ImgRequest | Img2ImgRequest
