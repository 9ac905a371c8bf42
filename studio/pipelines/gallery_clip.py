"""Search the Gallery by meaning: CLIP / SigLIP vectors of its images, ranked by a text's vector.

The ``gallery-index`` job (GPU lane, progress per batch, cancellable between batches) rescans the
outputs folder through :class:`~studio.media.gallery.GalleryIndex` and embeds each image that is
new or changed since its vector was stored (:class:`~studio.media.gallery.ImageVectors`, the same
SQLite database, one row per file and model). ``gallery-search`` does the same, then encodes the
text and ranks every stored vector by cosine similarity. The model is read through
transformers' ``AutoModel`` / ``AutoProcessor`` (never remote code) and kept in a model cache, so
a second search costs one text encoding.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from studio.core.config import Paths, Settings
from studio.core.gallery_requests import GalleryIndexRequest, GallerySearchRequest
from studio.core.jobs import CancelToken, ProgressSink, UserFacingError, checked
from studio.library.clip_models import ClipModelEntry, resolve_clip_model
from studio.media.gallery import GALLERY_DB, GalleryIndex, GalleryItem, ImageVectors
from studio.pipelines.model_cache import ModelCache

if TYPE_CHECKING:
    import torch

BATCH = 16  # images per forward pass: progress and cancel between batches


@dataclass
class IndexReport:
    """What a ``gallery-index`` job did."""

    model: str
    images: int  # in the gallery
    embedded: int  # vectors computed now
    skipped: list[str]  # files that could not be read as images

    def sentence(self) -> str:
        done = f"{self.images:,} image{'s' if self.images != 1 else ''} searchable with " \
               f"{self.model}"
        new = f"; {self.embedded:,} embedded now" if self.embedded else ""
        bad = f"; {len(self.skipped):,} unreadable skipped" if self.skipped else ""
        return done + new + bad


@dataclass
class SearchHit:
    """One image found, with its cosine similarity to the text (higher is closer)."""

    path: Path
    score: float
    item: GalleryItem | None = None


class ClipEncoder:
    """A loaded CLIP / SigLIP model: L2-normalised float32 vectors for images and texts."""

    def __init__(self, entry: ClipModelEntry, device: str) -> None:
        from transformers import AutoModel, AutoProcessor

        self.name = entry.name
        self.key = str(Path(entry.path).resolve())  # what its vectors are stored under
        self.device = device
        self.siglip = entry.model_type.startswith("siglip")
        try:
            self.processor = AutoProcessor.from_pretrained(entry.path)
            self.model = AutoModel.from_pretrained(entry.path).to(device).eval()
        except (OSError, ValueError, KeyError) as exc:
            raise UserFacingError(f"{entry.name} could not be loaded as a CLIP / SigLIP model: "
                                  f"{exc}") from exc

    @staticmethod
    def _features(out: Any) -> Any:
        import torch

        # transformers 5 returns the model output with the projection in pooler_output
        features = out if isinstance(out, torch.Tensor) else out.pooler_output
        return torch.nn.functional.normalize(features.float(), dim=-1).detach().cpu().numpy()

    def images(self, images: list[Any]) -> Any:
        import torch

        inputs = self.processor(images=images, return_tensors="pt").to(self.device)
        with torch.inference_mode():
            return self._features(self.model.get_image_features(**inputs))

    def text(self, text: str) -> Any:
        import torch

        # SigLIP was trained on texts padded to the full length; CLIP on unpadded ones.
        padding: Any = "max_length" if self.siglip else True
        inputs = self.processor(text=[text], return_tensors="pt", padding=padding,
                                truncation=True).to(self.device)
        inputs.pop("token_type_ids", None)
        with torch.inference_mode():
            return self._features(self.model.get_text_features(**inputs))[0]


def load_clip(entry: ClipModelEntry, device: str, dtype: torch.dtype | None = None) -> ClipEncoder:
    """The model cache's loader."""
    return ClipEncoder(entry, device)


def _read_rgb(path: str) -> Any:
    from PIL import Image

    with Image.open(path) as im:
        im.draft("RGB", (512, 512))  # JPEGs decode at reduced scale: the model sees 224 px
        return im.convert("RGB")


class GalleryClipService:
    """Runs ``gallery-index`` and ``gallery-search`` jobs (one model cache for both)."""

    def __init__(self, settings_getter: Callable[[], Settings],
                 paths_getter: Callable[[], Paths]) -> None:
        self._settings = settings_getter
        self._paths = paths_getter
        self.cache = ModelCache(loader=load_clip, kind="clip", settings_getter=settings_getter)

    def encoder(self, spec: str, progress: ProgressSink) -> ClipEncoder:
        from studio.pipelines.diffusion.batch import job_device

        settings, paths = self._settings(), self._paths()
        entry = resolve_clip_model(spec, settings, paths)
        progress.message(f"Loading {entry.name}…")
        return self.cache.get(entry, job_device(settings), None)

    def run(self, request: GalleryIndexRequest | GallerySearchRequest, progress: ProgressSink,
            cancel: CancelToken) -> Any:
        checked(request)
        encoder = self.encoder(request.model, progress)
        report, items = self.update_index(encoder, progress, cancel)
        if isinstance(request, GallerySearchRequest):
            return self.search(encoder, request, items)
        return report

    def update_index(self, encoder: ClipEncoder, progress: ProgressSink,
                     cancel: CancelToken) -> tuple[IndexReport, dict[str, GalleryItem]]:
        """Rescan the outputs folder and embed what is new or changed."""
        import numpy as np

        paths = self._paths()
        progress.message("Looking for new images…")
        with GalleryIndex(paths.outputs_dir, paths.data_dir / GALLERY_DB) as index:
            index.refresh()
            files = index.files()
            items = {str(item.path): item for item in index.list()}
        skipped: list[str] = []
        with ImageVectors(paths.data_dir / GALLERY_DB) as vectors:
            todo = vectors.stale(files, encoder.key)
            for start in range(0, len(todo), BATCH):
                cancel.raise_if_cancelled()
                progress.message(f"Embedding images for search ({start:,} of {len(todo):,})…")
                progress(start, len(todo), None)
                batch, images = [], []
                for path in todo[start:start + BATCH]:
                    try:
                        images.append(_read_rgb(path))
                        batch.append(path)
                    except Exception:  # noqa: BLE001 - an unreadable file is skipped, said once
                        skipped.append(path)
                if not images:
                    continue
                found = encoder.images(images).astype(np.float32)
                vectors.put(encoder.key, [(p, *files[p], v.tobytes())
                                           for p, v in zip(batch, found, strict=True)])
            progress(len(todo), len(todo), None)
        report = IndexReport(encoder.name, len(files) - len(skipped), len(todo) - len(skipped),
                             skipped)
        progress.message(report.sentence())
        return report, items

    def search(self, encoder: ClipEncoder, request: GallerySearchRequest,
               items: dict[str, GalleryItem]) -> list[SearchHit]:
        """Stored vectors ranked by cosine similarity to the text, best first."""
        import numpy as np

        with ImageVectors(self._paths().data_dir / GALLERY_DB) as vectors:
            stored = [(p, v) for p, v in vectors.vectors(encoder.key) if p in items]
        if not stored:
            return []
        matrix = np.stack([np.frombuffer(v, dtype=np.float32) for _, v in stored])
        query = encoder.text(request.text).astype(np.float32)
        if matrix.shape[1] != query.shape[0]:
            raise UserFacingError(f"The stored vectors do not fit {encoder.name}; refresh the "
                                  "Gallery to rebuild them.")
        scores = matrix @ query
        order = np.argsort(-scores, kind="stable")[: int(request.limit)]
        return [SearchHit(Path(stored[i][0]), float(scores[i]), items.get(stored[i][0]))
                for i in order]
