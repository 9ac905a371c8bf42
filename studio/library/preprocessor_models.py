"""The models behind ControlNet's model-based preprocessors (issue 14): a depth estimator and a
pose estimator, found in the Hugging Face cache (nothing is downloaded). No torch here.

Each preprocessor names the repositories Studio uses, best first, and the one ``hf download``
line that provides one; :func:`find` returns the cached snapshot folder or None, and
:func:`needs` the sentence a request gets when none is cached.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class PreprocessorModel:
    """What a model-based preprocessor runs: the repositories it takes, best first, and how to
    get one."""

    what: str
    repos: tuple[str, ...]
    download: str


MODELS = {
    "depth": PreprocessorModel(
        "a depth estimator (Depth Anything or DPT)",
        ("depth-anything/Depth-Anything-V2-Small-hf", "depth-anything/Depth-Anything-V2-Base-hf",
         "depth-anything/Depth-Anything-V2-Large-hf", "LiheYoung/depth-anything-small-hf",
         "LiheYoung/depth-anything-base-hf", "Intel/dpt-hybrid-midas", "Intel/dpt-large"),
        "hf download depth-anything/Depth-Anything-V2-Small-hf"),
    "openpose": PreprocessorModel(
        "a pose estimator (ViTPose)",
        ("usyd-community/vitpose-base-simple", "usyd-community/vitpose-base",
         "usyd-community/vitpose-plus-small", "usyd-community/vitpose-plus-base"),
        "hf download usyd-community/vitpose-base-simple"),
}


def find(name: str) -> Path | None:
    """The snapshot folder of a cached model for preprocessor ``name``, or None."""
    from studio.library.hf_cache import first_cached_model

    return first_cached_model(MODELS[name].repos)


def needs(name: str) -> str:
    """The sentence for a request whose preprocessor's model is not cached."""
    wanted = MODELS[name]
    return (f"The '{name}' preprocessor needs {wanted.what} in the Hugging Face cache; "
            f"download one with: {wanted.download} — or pick a control image that is already a "
            f"{'depth map' if name == 'depth' else 'pose skeleton'} and the preprocessor 'none'.")


def missing() -> dict[str, str]:
    """Each model-based preprocessor whose model is not cached, with :func:`needs`' sentence
    (the window greys those out)."""
    return {name: needs(name) for name in MODELS if find(name) is None}
