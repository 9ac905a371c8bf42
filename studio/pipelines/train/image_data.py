"""Labelled images for the image lessons (the CNN first; the later image lessons reuse it).

Every set comes as square float32 images in [0, 1], shape (n, channels, size, size), with a class
per image, split into fixed train and test sets (the same for every run, so runs compare):

- ``digits``: scikit-learn's 1797 handwritten 8×8 digits, upscaled (bilinear) to the model size.
- ``shapes``: generated: circles, squares, triangles, crosses and rings of random size, place,
  angle and stroke on a noisy background (1500 images).
- ``textures``: generated: stripes, checks, dots, rings and blobs at random scale, angle and
  contrast (1500 images).
- ``faces``: scikit-image's ``lfw_subset``: 100 faces and 100 non-faces (two classes).
- ``photos``: patches of eight of scikit-image's sample photos (astronaut, camera man, cat,
  coffee, coins, rocket, brick, grass); the class is the photo a patch was cut from.
- ``folder``: **your own folder**: any image Studio reads (:mod:`studio.media.images_in`),
  centre-cropped to a square and resized to the model size; each sub-folder is a class (images
  directly in a folder without sub-folders are one class). Files that are not images, damaged
  images and images smaller than the model size are skipped and counted, never a crash; a folder
  that leaves nothing to train on is refused with a sentence that says what to do.

scikit-image is optional: ``faces`` and ``photos`` say so when it is missing (an installer ships
the faces file alone, see :mod:`studio.pipelines.train.image_sets`). Its files are read directly,
never through ``skimage.data``, which may try to download. No Qt and no torch here.
"""

from __future__ import annotations

import functools
import importlib.util
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from studio.core.wording import count_of
from studio.pipelines.train.base import InvalidParameter
from studio.pipelines.train.image_sets import FACES_NEED, faces_available, faces_file

SOURCES: tuple[str, ...] = ("digits", "shapes", "textures", "faces", "photos", "folder")
SOURCE_NAMES: dict[str, str] = {
    "digits": "Handwritten digits", "shapes": "Shapes (generated)",
    "textures": "Textures (generated)", "faces": "Faces or not", "photos": "Photo patches",
    "folder": "Your folder"}
SIZES: tuple[str, ...] = ("16", "24", "32", "48", "64")
PHOTOS_NEED = ("The photo patches need scikit-image, which is not installed: "
               "pip install scikit-image, then restart Studio.")
READABLE = "PNG, JPEG, WebP, BMP or TIFF"
TEST_SHARE = 6  # one image in six is a test image
MAX_PER_CLASS = 600  # a folder's class is capped (reading thousands of photos takes minutes)
SHAPES = ("circle", "square", "triangle", "cross", "ring")
TEXTURES = ("stripes", "checks", "dots", "rings", "blobs")
GENERATED_PER_CLASS = 300
PHOTOS = (("astronaut", "astronaut.png"), ("camera man", "camera.png"), ("cat", "chelsea.png"),
          ("coffee", "coffee.png"), ("coins", "coins.png"), ("rocket", "rocket.jpg"),
          ("brick", "brick.png"), ("grass", "grass.png"))
PATCHES_PER_PHOTO = 160


@dataclass(frozen=True)
class ClassImages:
    """Labelled square images, split into train and test, and what a person should know."""

    name: str  # the source: digits, shapes, …, folder
    size: int
    x_train: np.ndarray  # (n, channels, size, size) float32 in [0, 1]
    y_train: np.ndarray  # (n,) int64 class indices
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: tuple[str, ...]
    photo: bool  # grey or colour photographs (0 = black in any theme), not ink on paper
    notes: tuple[str, ...] = ()  # what was skipped or capped, in sentences
    skipped: int = 0  # files of a folder that were not used

    @property
    def channels(self) -> int:
        return int(self.x_train.shape[1])

    @property
    def n_classes(self) -> int:
        return len(self.class_names)

    def short(self) -> str:
        """A few words for under the preview: "1,501 train · 296 test"."""
        text = f"{len(self.x_train):,} train · {len(self.x_test):,} test"
        return text + (f" · {self.skipped:,} skipped" if self.skipped else "")

    def describe(self) -> str:
        """One line for the lesson's view: how many images of how many classes, and notes."""
        head = (f"{SOURCE_NAMES[self.name]}: {count_of(len(self.x_train), 'training image')}, "
                f"{count_of(len(self.x_test), 'test image')}, "
                f"{count_of(self.n_classes, 'class', 'classes')} at {self.size}×{self.size}")
        return " ".join((head + ".",) + self.notes)


# -- availability --------------------------------------------------------------------------------
def _skimage_dir() -> Path | None:
    try:
        spec = importlib.util.find_spec("skimage")
    except (ImportError, ValueError):
        return None
    if spec is None or spec.origin is None:
        return None
    return Path(spec.origin).parent / "data"


def unavailable_sources() -> dict[str, str]:
    """Sources this install cannot use, with the reason a person can act on."""
    out = {}
    if not faces_available():
        out["faces"] = FACES_NEED
    if _skimage_dir() is None:
        out["photos"] = PHOTOS_NEED
    return out


def check_source(source: str, folder: str = "") -> None:
    """Refuse a source that does not exist or cannot load here (cheap: no image is read)."""
    if source not in SOURCES:
        raise InvalidParameter(f"dataset must be one of {', '.join(SOURCES)}, not {source!r}.")
    reason = unavailable_sources().get(source)
    if reason:
        raise InvalidParameter(reason)
    if source == "folder":
        if not str(folder).strip():
            raise InvalidParameter(
                "Choose your folder of images first (Data folder): one sub-folder of images per "
                "class, or a folder of images.")
        path = Path(folder).expanduser()
        if not path.is_dir():
            raise InvalidParameter(f"The data folder {path} does not exist or is not a folder.")


def load_class_images(source: str, size: int, folder: str = "") -> ClassImages:
    """The images of ``source`` at ``size`` px (cached; the arrays must not be changed)."""
    check_source(source, folder)
    size = int(size)
    if source == "folder":
        path = Path(folder).expanduser().resolve()
        return _folder(str(path), size, _folder_signature(path))
    return _shipped(source, size)


# -- shipped and generated sets ------------------------------------------------------------------
@functools.lru_cache(maxsize=6)
def _shipped(source: str, size: int) -> ClassImages:
    if source == "digits":
        from sklearn.datasets import load_digits

        digits = load_digits()
        x = _resize_all((digits.images / 16.0).astype(np.float32), size)[:, None]
        return _split(source, size, x, digits.target.astype(np.int64),
                      tuple(str(d) for d in range(10)), photo=False)
    if source in ("shapes", "textures"):
        rng = np.random.default_rng(0)
        names = SHAPES if source == "shapes" else TEXTURES
        draw = _shape if source == "shapes" else _texture
        y = np.repeat(np.arange(len(names)), GENERATED_PER_CLASS)
        x = np.stack([draw(names[c], size, rng) for c in y])[:, None].astype(np.float32)
        return _split(source, size, x, y.astype(np.int64), names, photo=source == "textures")
    if source == "faces":
        images = np.load(faces_file(), allow_pickle=False).astype(np.float32)  # 200 × 25 × 25
        x = _resize_all(np.clip(images, 0.0, 1.0), size)[:, None]
        y = (np.arange(len(images)) >= 100).astype(np.int64)  # 100 faces, then 100 non-faces
        return _split(source, size, x, y, ("face", "not a face"), photo=True)
    return _photo_patches(size)


def _resize_all(images: np.ndarray, size: int) -> np.ndarray:
    """(n, h, w) floats resized to (n, size, size), bilinear."""
    from PIL import Image

    if images.shape[1:] == (size, size):
        return images
    out = [np.asarray(Image.fromarray(im, mode="F").resize((size, size), Image.Resampling.BILINEAR))
           for im in images]
    return np.clip(np.stack(out), 0.0, 1.0).astype(np.float32)


def _shape(name: str, size: int, rng: np.random.Generator) -> np.ndarray:
    """One shape, drawn at 4× and reduced (anti-aliased), on a faintly noisy background."""
    from PIL import Image, ImageDraw

    big = size * 4
    im = Image.new("L", (big, big), 0)
    d = ImageDraw.Draw(im)
    r = rng.uniform(0.22, 0.38) * big
    cx, cy = rng.uniform(r + 2, big - r - 2, size=2)
    width = max(2, int(rng.uniform(0.06, 0.12) * big))
    angle = rng.uniform(0, 2 * np.pi)
    ink = int(rng.uniform(170, 255))

    def poly(n: int, start: float) -> list[tuple[float, float]]:
        return [(cx + r * np.cos(start + 2 * np.pi * k / n), cy + r * np.sin(start + 2 * np.pi * k / n))
                for k in range(n)]

    if name == "circle":
        d.ellipse((cx - r, cy - r, cx + r, cy + r), fill=ink)
    elif name == "ring":
        d.ellipse((cx - r, cy - r, cx + r, cy + r), outline=ink, width=width)
    elif name == "square":
        d.polygon(poly(4, angle), fill=ink)
    elif name == "triangle":
        d.polygon(poly(3, angle), fill=ink)
    else:  # cross
        for a in (angle, angle + np.pi / 2):
            dx, dy = r * np.cos(a), r * np.sin(a)
            d.line((cx - dx, cy - dy, cx + dx, cy + dy), fill=ink, width=width)
    small = np.asarray(im.resize((size, size), Image.Resampling.BOX), dtype=np.float32) / 255.0
    return np.clip(small + rng.normal(0.0, 0.05, small.shape), 0.0, 1.0)


def _texture(name: str, size: int, rng: np.random.Generator) -> np.ndarray:
    """One texture patch: a pattern at a random scale, angle, phase and contrast, plus noise."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64) / size
    angle = rng.uniform(0, np.pi)
    u = xx * np.cos(angle) + yy * np.sin(angle)
    v = -xx * np.sin(angle) + yy * np.cos(angle)
    freq = rng.uniform(2.5, 5.0)
    phase = rng.uniform(0, 2 * np.pi, size=2)
    if name == "stripes":
        t = np.sin(2 * np.pi * freq * u + phase[0])
    elif name == "checks":
        t = np.sign(np.sin(2 * np.pi * freq * u + phase[0]) * np.sin(2 * np.pi * freq * v + phase[1]))
    elif name == "dots":
        t = ((np.sin(2 * np.pi * freq * u + phase[0]) + np.sin(2 * np.pi * freq * v + phase[1]))
             > 1.0) * 2.0 - 1.0
    elif name == "rings":
        c = rng.uniform(0.2, 0.8, size=2)
        t = np.sin(2 * np.pi * freq * np.hypot(xx - c[0], yy - c[1]) * 1.5 + phase[0])
    else:  # blobs: smoothed noise
        coarse = rng.normal(size=(4, 4))
        from PIL import Image

        t = np.asarray(Image.fromarray(coarse.astype(np.float32), mode="F").resize(
            (size, size), Image.Resampling.BICUBIC), dtype=np.float64)
        t = t / (np.abs(t).max() + 1e-6)
    contrast = rng.uniform(0.25, 0.5)
    out = 0.5 + contrast * t + rng.normal(0.0, 0.05, t.shape)
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def _photo_patches(size: int) -> ClassImages:
    from PIL import Image

    root = _skimage_dir()
    if root is None:
        raise InvalidParameter(PHOTOS_NEED)
    rng = np.random.default_rng(0)
    xs, ys = [], []
    for label, (_, filename) in enumerate(PHOTOS):
        path = root / filename
        if not path.is_file():
            raise InvalidParameter(
                f"This scikit-image install has no {filename}; reinstall it with "
                "pip install --force-reinstall scikit-image.")
        with Image.open(path) as im:
            photo = im.convert("RGB")
        w, h = photo.size
        for _ in range(PATCHES_PER_PHOTO):
            side = int(rng.uniform(0.18, 0.35) * min(w, h))
            x0, y0 = int(rng.integers(0, w - side + 1)), int(rng.integers(0, h - side + 1))
            patch = photo.crop((x0, y0, x0 + side, y0 + side)).resize(
                (size, size), Image.Resampling.LANCZOS)
            xs.append(np.asarray(patch, dtype=np.float32).transpose(2, 0, 1) / 255.0)
            ys.append(label)
    return _split("photos", size, np.stack(xs), np.array(ys, dtype=np.int64),
                  tuple(name for name, _ in PHOTOS), photo=True)


def _split(name: str, size: int, x: np.ndarray, y: np.ndarray, class_names: tuple[str, ...],
           photo: bool, notes: tuple[str, ...] = (), skipped: int = 0) -> ClassImages:
    """A fixed split: in each class, one image in :data:`TEST_SHARE` (at least one when the
    class has two or more) goes to the test set."""
    rng = np.random.default_rng(0)
    test_idx: list[np.ndarray] = []
    train_idx: list[np.ndarray] = []
    for c in range(len(class_names)):
        idx = rng.permutation(np.flatnonzero(y == c))
        n_test = max(1, len(idx) // TEST_SHARE) if len(idx) >= 2 else 0
        test_idx.append(idx[:n_test])
        train_idx.append(idx[n_test:])
    train = rng.permutation(np.concatenate(train_idx))
    test = np.sort(np.concatenate(test_idx))
    return ClassImages(name=name, size=size, x_train=np.ascontiguousarray(x[train]),
                       y_train=y[train], x_test=np.ascontiguousarray(x[test]), y_test=y[test],
                       class_names=tuple(class_names), photo=photo, notes=notes, skipped=skipped)


# -- your own folder -----------------------------------------------------------------------------
def _folder_signature(path: Path) -> tuple:
    """Changes when files are added to or removed from the folder or its sub-folders (the cache
    key): the modification times of the folder and its sub-folders."""
    try:
        dirs = [path] + sorted(p for p in path.iterdir() if p.is_dir())
        return tuple((str(p), p.stat().st_mtime_ns) for p in dirs)
    except OSError as exc:
        raise InvalidParameter(f"Cannot read the data folder {path}: {exc.strerror or exc}.") \
            from None


def _files(folder: Path) -> list[Path]:
    return sorted((p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")),
                  key=lambda p: p.name.lower())


@functools.lru_cache(maxsize=4)
def _folder(folder: str, size: int, signature: tuple) -> ClassImages:
    from studio.core.jobs import UserFacingError
    from studio.media.images_in import is_image_file, open_image

    path = Path(folder)
    subdirs = [p for p in sorted(path.iterdir(), key=lambda p: p.name.lower())
               if p.is_dir() and not p.name.startswith(".")]
    notes: list[str] = []
    if subdirs:
        groups = [(d.name, _files(d)) for d in subdirs]
        loose = [p for p in _files(path) if is_image_file(p)]
        if loose:
            notes.append(f"{count_of(len(loose), 'image')} directly in the folder "
                         f"{'was' if len(loose) == 1 else 'were'} left out: with sub-folders, "
                         "each sub-folder is a class.")
    else:
        groups = [(path.name or "images", _files(path))]
    n_files = sum(len(files) for _, files in groups)
    if n_files == 0:
        raise InvalidParameter(
            f"The data folder {path} is empty: put images in it ({READABLE}), or one sub-folder "
            "of images per class.")
    not_images = damaged = small = 0
    capped: list[str] = []
    xs: list[np.ndarray] = []
    ys: list[int] = []
    names: list[str] = []
    for name, files in groups:
        images = [p for p in files if is_image_file(p)]
        not_images += len(files) - len(images)
        got: list[np.ndarray] = []
        for p in images:
            if len(got) >= MAX_PER_CLASS:
                capped.append(name)
                break
            try:
                rgb = open_image(p).image
            except UserFacingError:
                damaged += 1
                continue
            if min(rgb.size) < size:
                small += 1
                continue
            got.append(fit_square(rgb, size))
        if got:
            ys += [len(names)] * len(got)
            names.append(name)
            xs += got
    readable = len(xs) + small
    if readable == 0 and damaged == 0:
        raise InvalidParameter(
            f"The data folder {path} holds {count_of(not_images, 'file')} but no image Studio "
            f"reads ({READABLE}).")
    if readable == 0:
        raise InvalidParameter(
            f"None of the {count_of(damaged, 'image')} in {path} could be read: they are damaged "
            f"or not really {READABLE} files.")  # plural-ok: a list of formats
    if not xs:
        raise InvalidParameter(
            f"All {count_of(small, 'image')} in {path} are smaller than {size}×{size} pixels, the "
            "model's image size: choose a smaller Image size or bigger images.")
    skipped = not_images + damaged + small
    if skipped:
        parts = [f"{n} {what}" for n, what in ((not_images, "not an image" if not_images == 1
                                                else "not images"),
                                               (damaged, "damaged"),
                                               (small, f"smaller than {size}×{size}")) if n]
        notes.append(f"{count_of(skipped, 'file')} skipped ({', '.join(parts)}).")
    if capped:
        notes.append(f"Only the first {MAX_PER_CLASS} images of {', '.join(capped)} "  # plural-ok
                     "are used.")
    empty = [name for name, _ in groups if name not in names]
    if empty and subdirs:
        notes.append(f"No usable images in {', '.join(empty)}: left out.")
    return _split("folder", size, np.stack(xs), np.array(ys, dtype=np.int64), tuple(names),
                  photo=True, notes=tuple(notes), skipped=skipped)


def fit_square(rgb, size: int) -> np.ndarray:
    """Centre-crop to a square and resize to ``size``: (3, size, size) floats in [0, 1]."""
    from PIL import Image, ImageOps

    fitted = ImageOps.fit(rgb, (size, size), Image.Resampling.LANCZOS, centering=(0.5, 0.5))
    return np.asarray(fitted, dtype=np.float32).transpose(2, 0, 1) / 255.0


def preview(data: ClassImages, n: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """What the model sees: up to ``n`` training images spread over the classes, as
    (n, size, size, channels) and their labels."""
    order = np.concatenate([np.flatnonzero(data.y_train == c)[: -(-n // data.n_classes)]
                            for c in range(data.n_classes)])
    # round-robin over the classes, so every class shows in the first rows
    per_class = [np.flatnonzero(data.y_train[order] == c) for c in range(data.n_classes)]
    picked: list[int] = []
    for k in range(max((len(p) for p in per_class), default=0)):
        picked += [int(order[p[k]]) for p in per_class if k < len(p)]
    picked = picked[:n]
    return data.x_train[picked].transpose(0, 2, 3, 1), data.y_train[picked]

