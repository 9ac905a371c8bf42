"""The Gallery's search-by-meaning jobs (CLIP / SigLIP, issue 21): bring the index up to date,
and rank the images by a text. Light: no torch here (the work is in
:mod:`studio.pipelines.gallery_clip`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

MAX_SEARCH_RESULTS = 10_000


@dataclass
class GalleryIndexRequest:
    """Bring the Gallery's search-by-meaning index up to date: every image in the outputs folder
    that is new or changed since it was embedded gets its vector from ``model`` (a CLIP / SigLIP
    folder, or a name or repo id the library finds; empty: the first one found)."""

    model: str = ""

    def validate(self) -> None:
        return None

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "gallery-index", **dataclasses.asdict(self)}


@dataclass
class GallerySearchRequest:
    """Gallery images ranked by how well they match ``text`` (cosine similarity of CLIP / SigLIP
    vectors), best first, at most ``limit``; the index is brought up to date first."""

    text: str
    model: str = ""
    limit: int = 200

    def validate(self) -> None:
        if not str(self.text).strip():
            raise ValueError("Type what the images should show, e.g. 'a red fox at dusk'.")
        if not 1 <= int(self.limit) <= MAX_SEARCH_RESULTS:
            raise ValueError(f"The number of results must be between 1 and "
                             f"{MAX_SEARCH_RESULTS:,}, not {self.limit}.")

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "gallery-search", **dataclasses.asdict(self)}
