"""Saving finished images: ``outputs/YYYY-MM-DD/NNNNN-SEED.png`` with their metadata. No Qt, no torch.

A file is written to a temp file in the day folder and then hard-linked to its final name, which
fails if that name exists, so a crash never leaves half a PNG (DESIGN rule 9) and nothing is ever
overwritten. Picking the number and claiming the name happen under an OS file lock on the day
folder, so two processes (the GUI and a CLI run) saving at once never share a number either.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import re
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import studio
from studio.core.files import work_file_tag
from studio.core.jobs import UserFacingError
from studio.core.requests import Img2ImgRequest, Txt2ImgRequest
from studio.core.wording import write_failure
from studio.media.metadata import build_parameters

if TYPE_CHECKING:
    from PIL.Image import Image
    from PIL.PngImagePlugin import PngInfo

_NUMBERED = re.compile(r"^(\d{5,})-")
_MAX_TRIES = 1000


def studio_version() -> str:
    """What the ``Version`` field of the ``parameters`` text says: ``Studio 0.1.0``."""
    return f"Studio {studio.__version__}"


def day_folder(outputs_dir: Path, when: _dt.date | None = None) -> Path:
    """The folder for images made on ``when`` (today, local time): ``outputs_dir/YYYY-MM-DD``."""
    return Path(outputs_dir) / (when or _dt.date.today()).isoformat()


def image_folder(outputs_dir: Path, dated: bool = True) -> Path:
    """Where a new image goes: today's folder, or ``outputs_dir`` itself when not ``dated``
    (``--out DIR`` on the command line writes exactly into DIR)."""
    return day_folder(outputs_dir) if dated else Path(outputs_dir)


def _next_number(folder: Path) -> int:
    best = 0
    try:
        with os.scandir(folder) as it:
            for entry in it:
                m = _NUMBERED.match(entry.name)
                if m:
                    best = max(best, int(m.group(1)))
    except FileNotFoundError:
        pass
    return best + 1


def next_output_path(outputs_dir: Path, seed: int, when: _dt.date | None = None,
                     suffix: str = ".png") -> Path:
    """The name the next image would get now (``NNNNN-SEED.png``); not reserved."""
    folder = day_folder(outputs_dir, when)
    return folder / f"{_next_number(folder):05d}-{seed}{suffix}"


def _claim(tmp: str, final: Path) -> bool:
    """Give the finished temp file its final name only if that name is free."""
    try:
        os.link(tmp, final)
        return True
    except FileExistsError:
        return False
    except OSError:
        # No hard links on this file system (FAT, some network shares): rename instead. On Windows
        # rename refuses an existing target, so it is still exclusive; elsewhere check first.
        if sys.platform != "win32" and final.exists():
            return False
        try:
            os.rename(tmp, final)
            return True
        except FileExistsError:
            return False


@contextmanager
def _folder_lock(folder: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``folder`` (across processes) while a number is picked."""
    if sys.platform == "win32":
        import msvcrt

        fd = os.open(folder / ".studio-save.lock", os.O_RDWR | os.O_CREAT)
        try:
            msvcrt.locking(fd, msvcrt.LK_LOCK, 1)  # retries for ~10 s, then raises OSError
            try:
                yield
            finally:
                os.lseek(fd, 0, os.SEEK_SET)
                msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)
        finally:
            os.close(fd)
        return
    import fcntl

    # Locking the directory itself leaves no lock file behind in the user's pictures.
    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def writable_image_folder(outputs_dir: Path, dated: bool = True) -> Path:
    """The folder new images go to, created and proven writable, before any work is done (a
    read-only home used to fail only after the whole job). Raises UserFacingError naming it."""
    folder = image_folder(outputs_dir, dated)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=f".saving-{work_file_tag()}", suffix=".png.part",
                                     dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise UserFacingError(write_failure(exc, "the images", folder)
                              + " The outputs folder is set in Settings (or --out DIR).") \
            from exc
    return folder


def write_numbered_png(image: Image, folder: Path, seed: int | str,
                       pnginfo: PngInfo | None = None) -> Path:
    """Write ``image`` as ``folder/NNNNN-SEED.png`` (or ``NNNNN-LABEL.png``) with the next free
    number; returns the path. A failed write is a UserFacingError that says why in words."""
    try:
        return _write_numbered_png(image, Path(folder), seed, pnginfo)
    except OSError as exc:
        raise UserFacingError(write_failure(exc, "the image", folder)) from exc


def _write_numbered_png(image: Image, folder: Path, seed: int | str,
                        pnginfo: PngInfo | None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".saving-{work_file_tag()}", suffix=".png.part",
                               dir=folder)
    try:
        with os.fdopen(fd, "wb") as fh:
            image.save(fh, format="PNG", pnginfo=pnginfo)
            fh.flush()
            os.fsync(fh.fileno())
        with _folder_lock(folder):
            number = _next_number(folder)
            for _ in range(_MAX_TRIES):
                final = folder / f"{number:05d}-{seed}.png"
                if _claim(tmp, final):
                    return final
                # Someone outside the lock took the name: move past whatever is there now.
                number = max(number + 1, _next_number(folder))
        raise FileExistsError(f"could not find a free file name in {folder}")
    finally:
        try:
            os.unlink(tmp)  # after os.link the final name keeps the data
        except OSError:
            pass


def studio_chunk(request: Txt2ImgRequest, seed: int) -> str:
    """The ``studio`` PNG chunk: the whole request, this image's seed and the app version."""
    return json.dumps({"request": request.to_dict(), "seed": seed, "version": studio.__version__},
                      ensure_ascii=False, sort_keys=True)


def save_txt2img_image(image: Image, request: Txt2ImgRequest, seed: int, outputs_dir: Path, *,
                       model_name: str, model_hash: str, sampler: str, schedule_type: str,
                       extra: dict | None = None, prompt: str | None = None,
                       dated: bool = True) -> tuple[Path, str]:
    """Save one text-to-image result; returns ``(path, parameters text)``.

    ``image`` is a PIL image. The PNG carries the ``parameters`` (A1111) and ``studio`` (JSON)
    text chunks that :func:`studio.media.metadata.read_image_metadata` reads back.
    ``prompt`` is the prompt the ``parameters`` text shows (default ``request.prompt``; with
    LoRAs, the prompt with their ``<lora:…>`` tags); the ``studio`` chunk keeps the request as is.
    ``dated`` False writes into ``outputs_dir`` itself (see :func:`image_folder`).
    """
    from PIL.PngImagePlugin import PngInfo

    parameters = build_parameters(request, seed, sampler=sampler, schedule_type=schedule_type,
                                  model_name=model_name, model_hash=model_hash,
                                  version=studio_version(), extra=extra, prompt=prompt)
    info = PngInfo()
    info.add_text("parameters", parameters)
    info.add_text("studio", studio_chunk(request, seed))
    path = write_numbered_png(image, image_folder(outputs_dir, dated), seed, info)
    return path, parameters


def safe_label(text: str, fallback: str = "image") -> str:
    """A file-name-safe label for ``NNNNN-<label>.png`` (letters, digits, ``-`` and ``_``)."""
    label = re.sub(r"[^A-Za-z0-9_-]+", "_", str(text)).strip("_")[:40]
    return label or fallback


def save_image_with_metadata(image: Image, outputs_dir: Path, label: str | int, parameters: str,
                             studio_data: dict[str, Any], *, dated: bool = True) -> Path:
    """Save a result of any job kind as ``outputs/YYYY-MM-DD/NNNNN-<label>.png`` (without the
    date folder when not ``dated``) with the ``parameters`` text and a ``studio`` JSON chunk
    (``studio_data`` plus the version)."""
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    info.add_text("parameters", parameters)
    info.add_text("studio", json.dumps({**studio_data, "version": studio.__version__},
                                       ensure_ascii=False, sort_keys=True))
    name = label if isinstance(label, int) else safe_label(label)
    return write_numbered_png(image, image_folder(outputs_dir, dated), name, info)


def save_img2img_image(image: Image, request: Img2ImgRequest, seed: int, outputs_dir: Path, *,
                       model_name: str, model_hash: str, sampler: str, schedule_type: str,
                       extra: dict | None = None, prompt: str | None = None,
                       dated: bool = True) -> tuple[Path, str]:
    """Save one img2img / inpaint result (an ``Img2ImgRequest``); returns ``(path, parameters)``.

    The ``studio`` chunk holds the request under ``request`` (with ``kind`` img2img / inpaint):
    Generate's "reuse parameters" takes its prompt, seed and settings from it. ``prompt`` as in
    :func:`save_txt2img_image`."""
    parameters = build_parameters(request, seed, sampler=sampler, schedule_type=schedule_type,
                                  model_name=model_name, model_hash=model_hash,
                                  version=studio_version(), extra=extra, prompt=prompt)
    path = save_image_with_metadata(image, outputs_dir, seed, parameters,
                                    {"request": request.to_dict(), "seed": seed}, dated=dated)
    return path, parameters
