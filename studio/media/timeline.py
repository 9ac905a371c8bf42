"""The denoising timeline of one generated image: a bounded film of its step previews.

While an image is denoised the step callback offers each step's preview (the fast latent→RGB
picture, or a TAESD one when those are on) to a :class:`Timeline`. It keeps at most ``limit``
frames however many steps there are: every frame while they fit, then every 2nd, 4th … step,
so the kept frames stay evenly spaced from the first step, and the last step is always kept.
Frames are small (a step frame at most :data:`STEP_SIDE` px on its longest side, the finished
image at most :data:`FILM_SIDE`), so a timeline of 60 fast frames of a 1024² image is ~3 MB.

A timeline lives in memory with its result only: it is not written into the PNG, the Gallery
or the history. :func:`save_film` writes it as a looping GIF or animated PNG (Pillow) or as an
MP4 video (H.264 through PyAV, whose wheels bundle FFmpeg: small, and it plays in any browser,
phone or editor), the finished image held at the end. No Qt and no torch here.
"""

from __future__ import annotations

import dataclasses
import io
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from studio.core.config import TIMELINE_FRAMES as DEFAULT_FRAMES
from studio.core.config import TIMELINE_MAX_FRAMES as MAX_FRAMES

if TYPE_CHECKING:
    from PIL import Image

STEP_SIDE = 256  # a step frame's longest side at most (fast previews are 1/8 size anyway)
FILM_SIDE = 512  # the finished image's frame, and so the film, at most this on its longest side
FRAME_MS = 80
LAST_FRAME_MS = 1500  # the finished image stays on screen a moment before the film loops
FILM_SUFFIXES = {".gif": "GIF", ".png": "PNG", ".apng": "PNG", ".mp4": "MP4"}
MP4_CRF = "18"  # x264's constant quality: visually lossless for these small frames
MP4_PRESET = "veryfast"  # x264 speed: a film of 60 frames in a moment, not seconds


@dataclasses.dataclass(frozen=True)
class TimelineFrame:
    """One kept frame: ``step`` of ``total`` (1-based) of pass ``stage`` (1, or 2 for the hires
    fix's second pass; 0 for the finished image), the timestep denoised at that step and the
    noise level σ left in the latents after it (None where the scheduler has no such number)."""

    image: np.ndarray  # h×w×3 uint8
    step: int
    total: int
    stage: int = 1
    timestep: float | None = None
    sigma: float | None = None

    @property
    def final(self) -> bool:
        return self.stage == 0

    def describe(self) -> str:
        """'Step 12 of 30 · timestep 541 · σ 2.31' (what the scrubber shows)."""
        if self.final:
            return "The finished image"
        parts = [f"{'Hires pass · step' if self.stage > 1 else 'Step'} {self.step} of "
                 f"{self.total}"]
        if self.timestep is not None:
            parts.append(f"timestep {self.timestep:.0f}" if self.timestep >= 1.5
                         else f"timestep {self.timestep:.3f}")
        if self.sigma is not None:
            parts.append(f"σ {self.sigma:.3g}")
        return " · ".join(parts)


def _small(image: np.ndarray, side: int) -> np.ndarray:
    """``image`` (h×w×3 uint8) shrunk to at most ``side`` on its longest side (a copy always:
    the caller's buffer may be reused)."""
    arr = np.asarray(image)
    if arr.ndim != 3 or arr.shape[2] < 3:
        raise ValueError(f"a timeline frame must be h×w×3, got shape {arr.shape}")
    arr = arr[:, :, :3]
    if arr.dtype != np.uint8:
        arr = np.clip(arr, 0, 255).astype(np.uint8)
    h, w = arr.shape[:2]
    if max(h, w) <= side:
        return np.array(arr, copy=True)
    from PIL import Image

    scale = side / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return np.asarray(Image.fromarray(np.ascontiguousarray(arr)).resize(
        size, Image.Resampling.LANCZOS))


class Timeline:
    """The kept frames of one image, at most ``limit`` (4 to :data:`MAX_FRAMES`), evenly
    thinned as steps arrive.

    ``offer(...)`` counts a step and keeps its frame when due (a picture given as a function
    is made only then);
    ``finish(image)`` adds the finished image as the last frame. Not thread-safe: one image's
    steps come from one worker thread."""

    def __init__(self, limit: int = DEFAULT_FRAMES) -> None:
        self.limit = max(4, min(int(limit), MAX_FRAMES))
        self.stride = 1
        self.offered = 0  # steps offered so far (all passes)
        self.stage = 1
        self._last_step = 0
        self._kept: list[tuple[int, TimelineFrame]] = []  # (offer number, frame)
        self._final: TimelineFrame | None = None

    @property
    def frames(self) -> list[TimelineFrame]:
        """The film in order: the kept steps (a pass's last step always), the finished image."""
        return [frame for _, frame in self._kept] + ([self._final] if self._final else [])

    def __len__(self) -> int:
        return len(self._kept) + (self._final is not None)

    def offer(self, step: int, total: int,
              image: np.ndarray | Callable[[], np.ndarray] | None,
              timestep: float | None = None, sigma: float | None = None) -> None:
        """Step ``step`` of ``total`` (1-based) with its picture: an h×w×3 uint8 array, or a
        function making it (called only when the frame is kept), or None when this step has
        no picture (TAESD previews every 4th step: such a step is not counted). A step number
        that does not grow starts the next pass (the hires fix's second pass)."""
        if step <= self._last_step:
            self.stage += 1
        self._last_step = step
        if image is None:
            return
        number = self.offered
        self.offered += 1
        if not (number % self.stride == 0 or step >= total):
            return
        if callable(image):
            image = image()
        frame = TimelineFrame(_small(image, STEP_SIDE), int(step), int(total), self.stage,
                              None if timestep is None else float(timestep),
                              None if sigma is None else float(sigma))
        self._kept.append((number, frame))
        self._thin()

    def mark(self) -> tuple:
        """Where the film is now, for :meth:`rewind` (a retried pass starts from here)."""
        return (list(self._kept), self.offered, self.stage, self._last_step, self.stride)

    def rewind(self, mark: tuple) -> None:
        """Forget what was offered since ``mark`` (a pass run again after running out of
        memory films once, not as a pass of its own)."""
        kept, self.offered, self.stage, self._last_step, self.stride = mark
        self._kept = list(kept)

    def finish(self, image: Any) -> None:
        """Add the finished image (PIL or h×w×3 array) as the last frame."""
        arr = np.asarray(image.convert("RGB")) if hasattr(image, "convert") else np.asarray(image)
        self._final = TimelineFrame(_small(arr, FILM_SIDE), self._last_step, self._last_step,
                                    stage=0)
        self._thin()

    def _thin(self) -> None:
        """Double the stride while the film is over its limit: the frames on the new stride
        stay (so the spacing stays even), and so does each pass's last step."""
        while len(self) > self.limit and self.stride < max(1, self.offered):
            self.stride *= 2
            self._kept = [(n, f) for n, f in self._kept
                          if n % self.stride == 0 or f.step >= f.total]


def film_images(frames: list[TimelineFrame]) -> list[Image.Image]:
    """The frames as PIL images of one size: the finished image's (or the largest frame's)."""
    from PIL import Image

    if not frames:
        raise ValueError("the timeline has no frames")
    ref = next((f for f in frames if f.final), None)
    if ref is None:
        ref = max(frames, key=lambda f: f.image.shape[0] * f.image.shape[1])
    size = (ref.image.shape[1], ref.image.shape[0])
    out = []
    for frame in frames:
        image = Image.fromarray(np.ascontiguousarray(frame.image))
        if image.size != size:
            image = image.resize(size, Image.Resampling.BILINEAR)
        out.append(image)
    return out


def film_path_problem(path: Path) -> str:
    """Why ``path`` cannot be a film ("" when it can): a GIF, (animated) PNG or MP4 only."""
    if path.suffix.lower() == ".mp4":
        try:
            import av  # noqa: F401 - only whether it is there
        except ImportError:
            return (f"{path.name}: an MP4 is written with PyAV (the 'av' package), which is "
                    "missing from this installation; reinstall Studio, or save as .gif.")
    if path.suffix.lower() in FILM_SUFFIXES:
        return ""
    return (f"{path.name}: a timeline is saved as .gif, .mp4 (video) or .png (animated PNG); "
            f"give the file one of those endings.")


def save_film(frames: list[TimelineFrame], path: Path, frame_ms: int = FRAME_MS,
              last_ms: int = LAST_FRAME_MS) -> Path:
    """Write ``frames`` as a looping animation — GIF for ``.gif``, animated PNG for ``.png`` /
    ``.apng`` — or an H.264 video for ``.mp4``, atomically; the last frame is shown ``last_ms``.
    Returns ``path``. Raises ``ValueError`` for another ending or no frames, ``OSError`` when it
    cannot be written."""
    from studio.core.files import atomic_write_bytes

    path = Path(path)
    problem = film_path_problem(path)
    if problem:
        raise ValueError(problem)
    from PIL import Image

    images = film_images(frames)
    durations = [frame_ms] * (len(images) - 1) + [last_ms]
    out = io.BytesIO()
    fmt = FILM_SUFFIXES[path.suffix.lower()]
    if fmt == "MP4":
        _write_mp4(images, durations, out)
        return atomic_write_bytes(path, out.getvalue())
    if fmt == "GIF":  # a palette per frame by fast octree: ~100× faster than Pillow's default
        images = [im.quantize(256, method=Image.Quantize.FASTOCTREE) for im in images]
    # APNG is lossless. Both loop forever.
    images[0].save(out, format=fmt, save_all=True, append_images=images[1:],
                   duration=durations, loop=0, **({"optimize": False} if fmt == "GIF" else {}))
    return atomic_write_bytes(path, out.getvalue())


def _write_mp4(images: list[Image.Image], durations: list[int], out: io.BytesIO) -> None:
    """H.264 in MP4 (yuv420p, which every player reads: so even sizes) with each frame's own
    duration in milliseconds — the finished image is held, not repeated."""
    from fractions import Fraction

    import av
    from PIL import Image

    width, height = images[0].size
    even = (max(2, width - width % 2), max(2, height - height % 2))
    with av.open(out, mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=Fraction(1000, durations[0]))
        stream.width, stream.height, stream.pix_fmt = even[0], even[1], "yuv420p"
        stream.codec_context.time_base = Fraction(1, 1000)
        stream.options = {"crf": MP4_CRF, "bf": "0", "preset": MP4_PRESET}  # bf 0: packets in order
        lasting: dict[int, int] = {}  # pts (ms) → how long that frame stays

        def mux(packets: Any) -> None:
            for packet in packets:
                packet.duration = lasting.get(packet.pts, packet.duration)
                container.mux(packet)

        start = 0
        for image, duration in zip(images, durations, strict=True):
            if image.size != even:
                image = image.resize(even, Image.Resampling.BILINEAR)
            frame = av.VideoFrame.from_ndarray(np.asarray(image.convert("RGB")), format="rgb24")
            frame.pts, frame.time_base = start, Fraction(1, 1000)
            lasting[start] = duration
            start += duration
            mux(stream.encode(frame))
        mux(stream.encode())


def default_film_path(image_path: Path) -> Path:
    """``<image>.timeline.gif`` beside the image."""
    image_path = Path(image_path)
    return image_path.with_name(f"{image_path.stem}.timeline.gif")
