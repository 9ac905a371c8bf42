"""The image data sets of the autoencoder lessons: scikit-learn's digits and scikit-image's faces.

Both ship inside their packages, so nothing is ever downloaded:

- ``digits``: scikit-learn's 1797 handwritten digits, 8×8, scaled to [0, 1]; a fixed train/test
  split (the same for every run, so runs compare). The latent scatter shows the test digits,
  coloured by class.
- ``faces``: the 100 faces of scikit-image's ``lfw_subset`` (25×25 grey crops of Labeled Faces
  in the Wild; the other 100 images of that file are non-faces and are left out). 80 train and
  20 test faces, fixed; the training set adds each training face mirrored left–right (a mirrored
  face is still a face), 160 images in all. Faces have no classes, so the latent scatter shows
  all 100 faces coloured by their mean brightness, in fifths (darkest … brightest): lighting is
  the first thing a small autoencoder of faces learns, so the colours show the latent order.

scikit-image is optional (``pip install scikit-image``, or the ``faces`` extra). Its file is read
directly (``skimage/data/lfw_subset.npy`` with ``allow_pickle=False``), never through
``skimage.data.lfw_subset()``, which would try to download the file from the internet where an
install left it out. The installers ship only that file (``datasets/lfw_subset.npy`` beside the
frozen app's ``assets/``), not scikit-image. No Qt and no torch here.
"""

from __future__ import annotations

import functools
import importlib.util
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from studio.pipelines.train.base import InvalidParameter

DATASETS: tuple[str, ...] = ("digits", "faces")
DATASET_NAMES: dict[str, str] = {"digits": "Handwritten digits", "faces": "Faces"}
FACES_NEED = ("The faces data set needs scikit-image, which is not installed: "
              "pip install scikit-image (or pip install \"studio[faces]\"), then restart Studio.")
SHOW_PER_CLASS = 2  # test digits per class in the reconstruction grid
N_FACES = 100  # the first 100 images of lfw_subset are faces
FACES_TEST = 20
BRIGHTNESS_BINS = ("darkest", "darker", "middle", "brighter", "brightest")


@dataclass(frozen=True)
class ImageSet:
    """Images as float32 rows of ``side × side`` values in [0, 1], and what the views need."""

    name: str
    side: int
    x_train: np.ndarray
    x_test: np.ndarray
    #: the images of the latent scatter and their colour group (index into ``group_names``)
    x_scatter: np.ndarray
    groups: np.ndarray
    group_names: tuple[str, ...]
    colour_by: str  # what the scatter's colours mean, in words
    scatter_of: str  # which images the scatter shows, in words
    shown: np.ndarray  # indices into x_test: the reconstruction grid (20 images)
    anchors: np.ndarray  # indices into x_scatter: interpolation ends 0…9
    anchor_names: tuple[str, ...]  # "digit 3", "face 3"
    scatter_is_test: bool  # x_scatter is x_test (same rows, same order)
    photo: bool  # grey photographs (0 = black in any theme), not ink strokes on paper

    @property
    def pixels(self) -> int:
        return self.side * self.side


def shipped_faces_file() -> Path | None:
    """The faces file an installer ships (a frozen app only; see packaging/studio.spec)."""
    if not getattr(sys, "frozen", False):
        return None
    from studio import ASSETS_DIR

    path = ASSETS_DIR.parent / "datasets" / "lfw_subset.npy"
    return path if path.is_file() else None


def faces_available() -> bool:
    """Whether the faces file is here: shipped with the app, or scikit-image is installed
    (checked without importing it: cheap, any thread)."""
    if shipped_faces_file() is not None:
        return True
    try:
        return importlib.util.find_spec("skimage") is not None
    except (ImportError, ValueError):
        return False


def unavailable_datasets() -> dict[str, str]:
    """Data sets that cannot be used on this install, with the reason a person can act on."""
    return {} if faces_available() else {"faces": FACES_NEED}


def check_dataset(name: str) -> None:
    """Refuse a data set that does not exist or cannot load here, with a message."""
    if name not in DATASETS:
        raise InvalidParameter(f"dataset must be one of {', '.join(DATASETS)}, not {name!r}.")
    reason = unavailable_datasets().get(name)
    if reason:
        raise InvalidParameter(reason)


def load_image_set(name: str) -> ImageSet:
    """The data set ``name`` (``digits`` or ``faces``); cached, the arrays must not be changed."""
    check_dataset(name)
    return _load(name)


@functools.lru_cache(maxsize=2)
def _load(name: str) -> ImageSet:
    return _digits() if name == "digits" else _faces()


def _digits() -> ImageSet:
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = (digits.data / 16.0).astype(np.float32)
    y = digits.target.astype(np.int64)
    order = np.random.default_rng(0).permutation(len(x))  # fixed split: runs share a test set
    n_test = len(x) // 6
    test, train = order[:n_test], order[n_test:]
    y_test = y[test]
    return ImageSet(
        name="digits", side=8, x_train=x[train], x_test=x[test], x_scatter=x[test],
        groups=y_test, group_names=tuple(str(d) for d in range(10)), colour_by="digit class",
        scatter_of="test digits",
        shown=np.concatenate([np.flatnonzero(y_test == c)[:SHOW_PER_CLASS] for c in range(10)]),
        anchors=np.array([np.flatnonzero(y_test == c)[0] for c in range(10)]),
        anchor_names=tuple(f"digit {d}" for d in range(10)), scatter_is_test=True,
        photo=False)


def faces_file() -> Path:
    """The installer's copy of ``lfw_subset.npy``, else scikit-image's (inside the package)."""
    shipped = shipped_faces_file()
    if shipped is not None:
        return shipped
    spec = importlib.util.find_spec("skimage")
    if spec is None or spec.origin is None:
        raise InvalidParameter(FACES_NEED)
    return Path(spec.origin).parent / "data" / "lfw_subset.npy"


def _faces() -> ImageSet:
    path = faces_file()
    if not path.is_file():
        raise InvalidParameter(
            f"This scikit-image install has no faces file ({path}); reinstall it with "
            "pip install --force-reinstall scikit-image.")
    images = np.load(path, allow_pickle=False)[:N_FACES].astype(np.float32)
    side = images.shape[1]
    x = np.clip(images.reshape(len(images), -1), 0.0, 1.0)
    order = np.random.default_rng(0).permutation(len(x))
    test, train = order[:FACES_TEST], order[FACES_TEST:]
    mirrored = images[train][:, :, ::-1].reshape(len(train), -1)
    x_train = np.concatenate([x[train], np.clip(mirrored, 0.0, 1.0)])
    x_scatter = np.concatenate([x[test], x[train]])  # test first: anchors index both
    brightness = x_scatter.mean(axis=1)
    edges = np.quantile(brightness, np.linspace(0, 1, len(BRIGHTNESS_BINS) + 1)[1:-1])
    groups = np.searchsorted(edges, brightness, side="right").astype(np.int64)
    return ImageSet(
        name="faces", side=side, x_train=np.ascontiguousarray(x_train), x_test=x[test],
        x_scatter=x_scatter, groups=groups, group_names=BRIGHTNESS_BINS,
        colour_by="brightness (faces have no classes)", scatter_of="all 100 faces",
        shown=np.arange(FACES_TEST), anchors=np.arange(10),
        anchor_names=tuple(f"face {i}" for i in range(10)), scatter_is_test=False,
        photo=True)
