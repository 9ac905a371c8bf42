"""The Gallery's search by meaning: a tiny random CLIPModel found where the library looks, images
embedded into the gallery database (only new or changed files), ranked exactly as transformers
computes the similarity, cancellable, `studio gallery`, and the Gallery's box."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from studio.cli.self_checks import build_tiny_clip, scratch_settings
from studio.core.gallery_requests import GalleryIndexRequest, GallerySearchRequest
from studio.core.jobs import CancelToken, JobState, UserFacingError
from studio.library.clip_models import DOWNLOAD_COMMAND, find_clip_models, resolve_clip_model
from studio.media.gallery import GALLERY_DB, ImageVectors
from studio.pipelines.gallery_clip import GalleryClipService

COLOURS = {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (20, 40, 230),
           "noise": None}


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory):
    return build_tiny_clip(tmp_path_factory.mktemp("clip") / "tiny-clip")


@pytest.fixture(autouse=True)
def _empty_hf_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-hf-cache"))


def write_images(folder: Path) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    rng = np.random.default_rng(0)
    for name, colour in COLOURS.items():
        image = Image.fromarray(rng.integers(0, 255, (30, 40, 3), dtype=np.uint8)) \
            if colour is None else Image.new("RGB", (40, 30), colour)
        out[name] = folder / f"{name}.png"
        image.save(out[name])
    return out


@pytest.fixture
def studio(tmp_path, tiny_clip):
    """Settings and folders with the tiny CLIP in the models folder and four images."""
    settings, paths = scratch_settings(tmp_path / "home")
    paths.models_dir.mkdir(parents=True)
    os.symlink(tiny_clip, paths.models_dir / "tiny-clip")
    images = write_images(paths.outputs_dir / "2026-01-01")
    return settings, paths, images


class Sink:
    def __init__(self, cancel_at: int | None = None, token: CancelToken | None = None) -> None:
        self.steps: list[tuple[int, int]] = []
        self.messages: list[str] = []
        self.cancel_at, self.token = cancel_at, token

    def __call__(self, step: int, total: int, preview=None) -> None:
        self.steps.append((step, total))
        if self.token is not None and step >= (self.cancel_at or 0):
            self.token.cancel()

    def partial(self, result) -> None:
        pass

    def message(self, text: str) -> None:
        self.messages.append(text)


def service(studio) -> GalleryClipService:
    settings, paths, _ = studio
    return GalleryClipService(lambda: settings, lambda: paths)


def test_the_model_is_found_in_the_models_folder_and_a_missing_one_names_hf_download(
        studio, tmp_path):
    settings, paths, _ = studio
    [entry] = find_clip_models(settings, paths)
    assert (entry.name, entry.model_type) == ("tiny-clip", "clip")
    # a diffusers pipeline's CLIP text encoder is not a search model
    _, bare = scratch_settings(tmp_path / "bare")
    with pytest.raises(UserFacingError, match=DOWNLOAD_COMMAND):
        resolve_clip_model("", settings, bare)
    with pytest.raises(UserFacingError, match="not a CLIP or SigLIP model folder"):
        resolve_clip_model(str(tmp_path), settings, paths)


def test_search_ranks_by_the_same_similarity_as_transformers(studio, tiny_clip):
    import torch
    from transformers import CLIPModel, CLIPProcessor

    _, _, images = studio
    hits = service(studio).run(GallerySearchRequest("a red square"), Sink(), CancelToken())
    assert len(hits) == len(images)
    scores = [h.score for h in hits]
    assert scores == sorted(scores, reverse=True)
    # plain transformers: cosine of the projected, normalised embeddings
    model = CLIPModel.from_pretrained(tiny_clip).eval()
    processor = CLIPProcessor.from_pretrained(tiny_clip)
    names = list(images)
    pictures = [Image.open(images[n]).convert("RGB") for n in names]
    inputs = processor(text=["a red square"], images=pictures, return_tensors="pt",
                       padding=True)
    with torch.inference_mode():
        out = model(**inputs)
    expected = (out.text_embeds @ out.image_embeds.T)[0].numpy()
    got = {h.path: h.score for h in hits}
    np.testing.assert_allclose([got[images[n]] for n in names], expected, atol=1e-5)
    assert hits[0].item is not None and hits[0].item.width == 40


def test_only_new_and_changed_images_are_embedded_again(studio):
    settings, paths, images = studio
    svc = service(studio)
    first = svc.run(GalleryIndexRequest(), Sink(), CancelToken())
    assert (first.images, first.embedded, first.skipped) == (4, 4, [])
    assert svc.run(GalleryIndexRequest(), Sink(), CancelToken()).embedded == 0
    Image.new("RGB", (40, 30), "yellow").save(images["red"])  # changed
    os.utime(images["red"], (1, 1))
    images["blue"].unlink()  # gone
    (images["red"].parent / "broken.png").write_bytes(b"not an image")
    again = svc.run(GalleryIndexRequest(), Sink(), CancelToken())
    assert again.embedded == 1 and [Path(p).name for p in again.skipped] == ["broken.png"]
    assert "1 unreadable skipped" in again.sentence()
    with ImageVectors(paths.data_dir / GALLERY_DB) as vectors:
        key = str((paths.models_dir / "tiny-clip").resolve())
        assert sorted(Path(p).name for p, _ in vectors.vectors(key)) == \
            ["green.png", "noise.png", "red.png"]


def test_indexing_reports_progress_and_stops_when_cancelled(studio, monkeypatch):
    from studio.core.jobs import JobCancelled
    from studio.pipelines import gallery_clip

    monkeypatch.setattr(gallery_clip, "BATCH", 1)
    _, paths, _ = studio
    token = CancelToken()
    sink = Sink(cancel_at=1, token=token)
    with pytest.raises(JobCancelled):
        service(studio).run(GalleryIndexRequest(), sink, token)
    assert sink.steps[:2] == [(0, 4), (1, 4)]
    with ImageVectors(paths.data_dir / GALLERY_DB) as vectors:
        key = str((paths.models_dir / "tiny-clip").resolve())
        assert vectors.count(key) == 2  # what was embedded before the cancel is kept
    finished = service(studio).run(GalleryIndexRequest(), Sink(), CancelToken())
    assert finished.embedded == 2


def test_the_engine_runs_both_kinds_on_one_service(studio):
    from studio.pipelines.services import build_engine

    settings, paths, images = studio
    engine = build_engine(lambda: settings, lambda: paths)
    try:
        index = engine.submit(GalleryIndexRequest())
        search = engine.submit(GallerySearchRequest("green"))
        assert engine.wait(search, timeout=300)
        assert index.state is JobState.DONE and search.state is JobState.DONE, search.error
        assert {h.path for h in search.result} == set(images.values())
        assert engine.service("gallery-search") is engine.service("gallery-index")
        bad = engine.submit(GallerySearchRequest("   "))
        engine.wait(bad, timeout=60)
        assert bad.state is JobState.FAILED and "Type what the images should show" in bad.error
    finally:
        engine.shutdown(wait=True, timeout=30)


def test_cli_search_prints_paths_best_first_and_says_what_to_download(studio, monkeypatch,
                                                                     tmp_path):
    from studio.core.config import save_settings
    from tests.fixtures.cli_run import studio_in_process

    settings, paths, images = studio
    home = tmp_path / "cli-home"
    monkeypatch.setenv("STUDIO_HOME", str(home))
    save_settings(settings.__class__(output_dir=str(paths.outputs_dir),
                                     added_models=[str(paths.models_dir / "tiny-clip")]),
                  home / "config" / "settings.json")
    proc = studio_in_process("gallery", "search", "a green field", "--json", "--limit", "3")
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    assert len(rows) == 3 and {"path", "score", "prompt"} <= set(rows[0])
    assert [r["score"] for r in rows] == sorted((r["score"] for r in rows), reverse=True)
    assert {Path(r["path"]) for r in rows} <= set(images.values())
    proc = studio_in_process("gallery", "index")
    assert proc.returncode == 0 and "4 images searchable with tiny-clip" in proc.stdout
    save_settings(settings.__class__(output_dir=str(paths.outputs_dir)),
                  home / "config" / "settings.json")
    proc = studio_in_process("gallery", "search", "anything")
    assert proc.returncode == 2 and DOWNLOAD_COMMAND in proc.stderr


# -- the Gallery's box ---------------------------------------------------------------------------
@pytest.mark.gui
def test_the_gallery_box_ranks_by_meaning_and_names_the_download_without_a_model(
        qtbot, studio_home, tmp_path, tiny_clip):
    import dataclasses

    from studio.core.config import Settings
    from studio.ui.panels.gallery import GalleryPanel
    from tests.gui_fixtures import app_context

    outputs = tmp_path / "outputs"
    images = write_images(outputs / "2026-01-01")
    ctx = app_context(Settings(output_dir=str(outputs)))
    panel = GalleryPanel(ctx)
    qtbot.addWidget(panel)
    panel.resize(1200, 800)
    try:
        with qtbot.waitSignal(panel.itemsLoaded) as loaded:
            panel.show()
        assert loaded.args[0] == 4
        # no model anywhere: the box stays usable and the page says what to download
        panel.search_mode.setCurrentIndex(1)
        qtbot.waitUntil(lambda: DOWNLOAD_COMMAND in panel.empty.text())
        assert panel.search.isEnabled() and "Describe an image" in panel.search.placeholderText()
        assert DOWNLOAD_COMMAND in panel.search.toolTip()
        panel.search.setText("a red square")
        qtbot.waitUntil(lambda: DOWNLOAD_COMMAND in panel.empty.text())
        # a model is added: the index is built in the queue, then the text ranks the images
        ctx.settings = dataclasses.replace(ctx.settings, added_models=[str(tiny_clip)])
        with qtbot.waitSignal(panel.meaning.results) as ranked:
            panel.search_mode.setCurrentIndex(0)
            panel.search_mode.setCurrentIndex(1)
        text, items = ranked.args
        assert text == "a red square" and {i.path for i in items} == set(images.values())
        qtbot.waitUntil(lambda: panel.stack.currentIndex() == 0)
        listed = [Path(panel.model.item(r).path) for r in range(panel.model.rowCount())]
        assert listed == [i.path for i in items]  # best match first
        kinds = {job.kind for job in ctx.bridge.jobs()}
        assert {"gallery-index", "gallery-search"} <= kinds
        # back to prompt words: the plain list, newest first
        with qtbot.waitSignal(panel.itemsLoaded):
            panel.search.clear()
            panel.search_mode.setCurrentIndex(0)
        assert panel.search.placeholderText() == "Search prompts…"
    finally:
        panel.shutdown()
        ctx.bridge.shutdown()
