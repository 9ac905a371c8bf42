"""The models ``studio serve`` offers: ids clients use, mapped to the specs the studio loads.

An id is the name a person would type: a folder's name or a Hugging Face repo id. The spec the
model was named by (a full path, say) is accepted as well. Building the catalog reads only JSON
and safetensors headers, never weights; models load on the GPU worker at their first request.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass
from pathlib import Path

from studio.core.config import Paths, Settings
from studio.core.jobs import UserFacingError

log = logging.getLogger(__name__)

CHAT = "chat"
IMAGE = "txt2img"


@dataclass(frozen=True)
class ServedModel:
    """One model on offer: ``kind`` is ``chat`` or ``txt2img``; ``spec`` goes into the request;
    ``gan`` marks a GAN trained in Studio (a seed makes its image: it cannot edit one);
    ``family`` is an image model's family ("flux-kontext" …: /v1/images/edits runs an editing
    model's instruction edit)."""

    id: str
    kind: str
    spec: str
    gan: bool = False
    family: str = ""


class Catalog:
    """Id → :class:`ServedModel`, with aliases (the spec as named) for lookups."""

    def __init__(self, models: list[ServedModel]) -> None:
        self.created = int(time.time())
        self.models: list[ServedModel] = []
        self._by_name: dict[str, ServedModel] = {}
        for model in models:
            mid = model.id
            if mid in self._by_name:  # two folders with one name: the second keeps its path
                mid = model.spec
            if mid in self._by_name:
                continue
            model = dataclasses.replace(model, id=mid)
            self.models.append(model)
            self._by_name[mid] = model
        for model in self.models:
            self._by_name.setdefault(model.spec, model)

    def get(self, name: str) -> ServedModel | None:
        return self._by_name.get(name)

    def only(self, kind: str) -> list[ServedModel]:
        return [m for m in self.models if m.kind == kind]


def _id_for(spec: str) -> str:
    path = Path(spec).expanduser()
    return path.name if path.exists() else spec


def classify(spec: str, settings: Settings, paths: Paths) -> ServedModel:
    """A :class:`ServedModel` for a ``--model`` argument (a library name, a path, a cached repo
    id or openai:URL#MODEL); raises UserFacingError if neither a chat model nor a text-to-image
    model."""
    from studio.library.resolve import resolve_named
    from studio.pipelines.chat.remote import is_remote_spec, parse_model_spec

    if is_remote_spec(spec):  # serve as a proxy: requests go on to that server
        try:
            return ServedModel(parse_model_spec(spec)[1], CHAT, spec.strip())
        except ValueError as exc:
            raise UserFacingError(str(exc)) from exc
    resolved = resolve_named(spec, ("image", "chat"), settings, paths, command="studio serve")
    image = resolved.kind in ("image", "gan")
    return ServedModel(_id_for(spec.strip()), IMAGE if image else CHAT, resolved.spec,
                       getattr(resolved.entry, "format", "") == "gan",
                       str(getattr(resolved.entry, "family", "") or ""))


def build_catalog(specs: list[str], settings: Settings, paths: Paths) -> Catalog:
    """The named models, or else every chat and image model in the library."""
    if specs:
        return Catalog([classify(s, settings, paths) for s in specs])
    from studio.library.chat_models import find_chat_models
    from studio.library.models import find_txt2img_models

    models = [ServedModel(e.name if e.gguf else e.repo_id or e.name, CHAT, e.spec)
              for e in find_chat_models(settings, paths)]
    models += [ServedModel(e.repo_id or e.name, IMAGE,
                           e.repo_id if e.source == "hf-cache" and e.repo_id else str(e.path),
                           e.format == "gan", e.family)
               for e in find_txt2img_models(settings, paths)]
    return Catalog(models)
