"""One model in the library, of any kind: what ``studio models list`` prints and Models shows.

Kept apart from the catalog so that each kind module (:mod:`studio.library.kinds`) builds its
entries without importing the catalog that lists them. No Qt, no torch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

#: Where a model was found. "file" is a file *or folder* added where it is (Add model…,
#: ``studio models import`` without --copy), so its title says that, not "single file".
SOURCE_TITLES = {"studio": "Studio folder", "hf-cache": "Hugging Face cache",
                 "extra": "Extra folder", "file": "Added in place"}


@dataclass
class LibraryEntry:
    """One model in the library. ``spec`` is what a request or ``studio models info`` names."""

    name: str
    kind: str  # one of KINDS
    path: Path
    source: str  # studio | hf-cache | extra | file
    format: str  # diffusers | single-file | transformers | pth | safetensors | LoRA format
    size_bytes: int = 0
    precision: str = ""
    family: str = ""  # sd1 | sd2 | sdxl (image models, LoRAs, TAESD)
    repo_id: str = ""
    detail: str = ""  # the reason for an unknown, the architecture of a chat model, …
    workspaces: tuple[str, ...] = ()
    last_used: float | None = None
    files: list[Path] = field(default_factory=list)  # what removing it deletes (default: path)

    @property
    def spec(self) -> str:
        """A hub repo is named by its id; a file inside one (a LoRA, a checkpoint) by its path."""
        whole_repo = self.source == "hf-cache" and self.repo_id and self.name == self.repo_id
        return self.repo_id if whole_repo else str(self.path)

    @property
    def kind_title(self) -> str:
        from studio.library.kinds import all_kinds  # the registry imports this module

        found = all_kinds().get(self.kind)
        return found.title if found is not None else self.kind

    @property
    def source_title(self) -> str:
        return SOURCE_TITLES.get(self.source, self.source)

    def to_json(self) -> dict:
        """A plain dict for ``--json`` output."""
        return {"name": self.name, "kind": self.kind, "path": str(self.path),
                "source": self.source, "format": self.format, "size_bytes": self.size_bytes,
                "precision": self.precision, "family": self.family, "repo_id": self.repo_id,
                "detail": self.detail, "workspaces": list(self.workspaces),
                "last_used": self.last_used, "spec": self.spec}
