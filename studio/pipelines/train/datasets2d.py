"""Small 2D data sets, generated on the spot from a seeded numpy Generator (no downloads, no Qt).

Two families:

- :func:`sample_2d` draws points of an *unlabelled* distribution for the generative lessons (GAN,
  WGAN-GP, DDPM): ``8-gaussians``, ``ring``, ``swiss-roll``, ``moons`` and ``drawn`` (a shape the user
  drew, given as ``points``). Every distribution is centred and scaled to roughly [-2, 2] so the
  same plot ranges and learning rates suit all of them.
- :func:`classification_2d` draws *labelled* points for the classifier lesson: ``moons``,
  ``circles``, ``spirals``, ``xor``, ``gaussians``.

Everything depends only on the ``rng`` passed in, so a seed gives the same data on any machine and
never touches numpy's global random state.
"""

from __future__ import annotations

import numpy as np

from studio.core.wording import count_of
from studio.pipelines.train.base import InvalidParameter

#: Distributions :func:`sample_2d` knows, in the order a choice box lists them.
DATASETS_2D: tuple[str, ...] = ("8-gaussians", "ring", "swiss-roll", "moons", "drawn")
#: What a person reads for each (the ids stay the stored values and what ``--set`` takes).
DATASET_NAMES_2D: dict[str, str] = {"8-gaussians": "8 Gaussians in a ring", "ring": "Ring",
                                    "swiss-roll": "Swiss roll", "moons": "Two moons",
                                    "drawn": "Your drawing"}

#: Labelled sets :func:`classification_2d` knows.
CLASSIFICATION_DATASETS: tuple[str, ...] = ("moons", "circles", "spirals", "xor", "gaussians")
CLASSIFICATION_NAMES: dict[str, str] = {"moons": "Two moons", "circles": "Circle in a circle",
                                        "spirals": "Two spirals", "xor": "XOR (four corners)",
                                        "gaussians": "Two Gaussian blobs"}

#: A drawn shape needs at least this many points to be learnable at all.
MIN_DRAWN_POINTS = 20

#: The square every data set lives in (plots use it as their range).
EXTENT = 2.5


def _moons_raw(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Two interleaving half circles (like scikit-learn's make_moons), centred, with labels."""
    n_out = n // 2
    n_in = n - n_out
    t_out = rng.uniform(0.0, np.pi, n_out)
    t_in = rng.uniform(0.0, np.pi, n_in)
    outer = np.stack([np.cos(t_out), np.sin(t_out)], axis=1)
    inner = np.stack([1.0 - np.cos(t_in), 0.5 - np.sin(t_in)], axis=1)
    x = np.concatenate([outer, inner]) - np.array([0.5, 0.25])
    y = np.concatenate([np.zeros(n_out), np.ones(n_in)])
    return x, y


def sample_2d(name: str, n: int, rng: np.random.Generator,
              points: np.ndarray | None = None) -> np.ndarray:
    """``n`` points (float32, shape (n, 2)) of the distribution ``name``.

    ``drawn`` samples the user's ``points`` (shape (k, 2), k >= :data:`MIN_DRAWN_POINTS`) with a
    little jitter so the model sees a smooth shape rather than k exact dots.
    """
    if n <= 0:
        raise InvalidParameter(f"The number of points must be positive, not {n}.")
    if name == "8-gaussians":
        centres = np.array([(np.cos(a), np.sin(a)) for a in np.arange(8) * (np.pi / 4)]) * 1.6
        idx = rng.integers(0, 8, n)
        x = centres[idx] + rng.normal(0.0, 0.08, (n, 2))
    elif name == "ring":
        a = rng.uniform(0.0, 2 * np.pi, n)
        r = 1.5 + rng.normal(0.0, 0.06, n)
        x = np.stack([r * np.cos(a), r * np.sin(a)], axis=1)
    elif name == "swiss-roll":
        t = 1.5 * np.pi * (1.0 + 2.0 * rng.uniform(0.0, 1.0, n))
        x = np.stack([t * np.cos(t), t * np.sin(t)], axis=1) / 7.0
        x = x + rng.normal(0.0, 0.04, (n, 2))
    elif name == "moons":
        x, _ = _moons_raw(n, rng)
        x = x * 1.4 + rng.normal(0.0, 0.05, (n, 2))
        x = x[rng.permutation(n)]
    elif name == "drawn":
        if points is None:
            raise InvalidParameter("Draw a shape first: the 'drawn' data set needs your points.")
        pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
        pts = pts[np.isfinite(pts).all(axis=1)]
        if len(pts) < MIN_DRAWN_POINTS:
            raise InvalidParameter(
                f"The drawn shape has {count_of(len(pts), 'point')}; draw at least "
                f"{MIN_DRAWN_POINTS}.")
        idx = rng.integers(0, len(pts), n)
        x = pts[idx] + rng.normal(0.0, 0.03, (n, 2))
    else:
        raise InvalidParameter(
            f"Unknown 2D data set {name!r}; choose one of: {', '.join(DATASETS_2D)}.")
    return np.clip(x, -EXTENT, EXTENT).astype(np.float32)


def classification_2d(name: str, n: int, rng: np.random.Generator,
                      noise: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
    """``n`` labelled points: (x float32 (n, 2), y int64 (n,)) of the set ``name``.

    ``noise`` is the standard deviation of the Gaussian jitter, in data units.
    """
    if n < 4:
        raise InvalidParameter(f"The data set needs at least 4 points, not {n}.")
    if name == "moons":
        x, y = _moons_raw(n, rng)
        x = x * 1.5
    elif name == "circles":
        half = n // 2
        a = rng.uniform(0.0, 2 * np.pi, n)
        r = np.concatenate([np.full(half, 1.6), np.full(n - half, 0.7)])
        x = np.stack([r * np.cos(a), r * np.sin(a)], axis=1)
        y = np.concatenate([np.zeros(half), np.ones(n - half)])
    elif name == "spirals":
        half = n // 2
        t = np.sqrt(rng.uniform(0.0, 1.0, n)) * 3.0 * np.pi  # sqrt: even density along the arm
        arm = np.concatenate([np.zeros(half), np.ones(n - half)])
        angle = t + arm * np.pi
        r = t / (3.0 * np.pi) * 2.0
        x = np.stack([r * np.cos(angle), r * np.sin(angle)], axis=1)
        y = arm
    elif name == "xor":
        x = rng.uniform(-2.0, 2.0, (n, 2))
        # Keep a thin margin around the axes so the classes are separable in principle.
        x = x + np.sign(x) * 0.1
        y = ((x[:, 0] > 0) ^ (x[:, 1] > 0)).astype(np.float64)
    elif name == "gaussians":
        half = n // 2
        y = np.concatenate([np.zeros(half), np.ones(n - half)])
        centres = np.where(y[:, None] == 0, np.array([-1.0, -0.6]), np.array([1.0, 0.6]))
        x = centres + rng.normal(0.0, 0.6, (n, 2))
    else:
        raise InvalidParameter(f"Unknown data set {name!r}; choose one of: "
                               f"{', '.join(CLASSIFICATION_DATASETS)}.")
    x = x + rng.normal(0.0, noise, x.shape)
    order = rng.permutation(n)
    return x[order].astype(np.float32), y[order].astype(np.int64)


def train_test_split(x: np.ndarray, y: np.ndarray, test_fraction: float,
                     rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray,
                                                        np.ndarray]:
    """A seeded shuffle split: (x_train, y_train, x_test, y_test)."""
    n = len(x)
    n_test = max(1, min(n - 1, int(round(n * test_fraction))))
    order = rng.permutation(n)
    test, train = order[:n_test], order[n_test:]
    return x[train], y[train], x[test], y[test]
