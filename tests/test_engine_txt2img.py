"""Txt2ImgService: equivalence with plain diffusers, progress/previews, saving, cancel, errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from studio.core.config import Settings, default_paths
from studio.core.jobs import CancelToken, JobCancelled, UserFacingError
from studio.core.requests import Txt2ImgRequest
from studio.pipelines.diffusion.txt2img import Txt2ImgService
from studio.pipelines.model_cache import ModelCache
from tests.fixtures.sinks import RecordingSink


def make_service(preview_mode="fast", cache=None, **settings_kw):
    settings = Settings(device="cpu", precision="fp32", preview_mode=preview_mode, **settings_kw)
    return Txt2ImgService(lambda: settings, default_paths, cache=cache)


def plain_diffusers(folder, cls_name, req, seed):
    import diffusers

    cls = getattr(diffusers, cls_name)
    kwargs = {"safety_checker": None} if cls_name == "StableDiffusionPipeline" else {}
    pipe = cls.from_pretrained(str(folder), local_files_only=True, **kwargs)
    pipe.set_progress_bar_config(disable=True)
    return pipe(req.prompt, negative_prompt=req.negative_prompt,
                num_inference_steps=req.steps, guidance_scale=req.cfg, width=req.width,
                height=req.height, generator=torch.Generator("cpu").manual_seed(seed)).images[0]


@pytest.mark.parametrize("which,cls_name", [("sd15", "StableDiffusionPipeline"),
                                            ("sdxl", "StableDiffusionXLPipeline")])
def test_images_equal_plain_diffusers_bit_for_bit(which, cls_name, request):
    folder = request.getfixturevalue(f"tiny_{which}_dir")
    req = Txt2ImgRequest(model=str(folder), prompt="a watercolor fox in the snow",
                         negative_prompt="blurry", steps=4, cfg=6.5, width=64, height=64,
                         seed=1234, count=2)
    sink = RecordingSink()
    results = make_service("fast").run(req, sink, CancelToken())

    assert [r.seed for r in results] == [1234, 1235]
    assert sum(p is not None for _, _, p in sink.steps) == len(sink.steps) > 0  # previews on
    for result in results:
        expected = np.asarray(plain_diffusers(folder, cls_name, req, result.seed))
        assert np.array_equal(np.asarray(result.image), expected)
        saved = Image.open(result.path)
        assert np.array_equal(np.asarray(saved.convert("RGB")), expected)
        assert f"Seed: {result.seed}" in result.parameters
    # Different seeds give different images (the test above would pass trivially otherwise).
    assert not np.array_equal(np.asarray(results[0].image), np.asarray(results[1].image))


def test_progress_previews_and_partials(tiny_sd15_dir):
    req = Txt2ImgRequest(model=str(tiny_sd15_dir), prompt="cat", steps=3, cfg=5.0, width=64,
                         height=48, seed=7, count=2, scheduler="euler")
    sink = RecordingSink()
    results = make_service("fast").run(req, sink, CancelToken())
    assert "Loading model…" in sink.messages
    assert [s for s, _, _ in sink.steps] == [1, 2, 3, 4, 5, 6]
    assert {t for _, t, _ in sink.steps} == {6}
    preview = sink.steps[0][2]
    assert preview.shape == (48 // 8, 64 // 8, 3) and preview.dtype == np.uint8
    assert [p.index for p in sink.partials] == [0, 1] and sink.partials == results
    assert results[0].image.size == (64, 48)
    assert results[0].path.exists() and results[0].path.suffix == ".png"
    assert "Sampler: Euler" in results[0].parameters


def test_previews_off_reports_progress_without_previews(tiny_sd15_dir):
    req = Txt2ImgRequest(model=str(tiny_sd15_dir), prompt="cat", steps=2, width=64, height=64,
                         scheduler="ddim")
    sink = RecordingSink()
    make_service("off").run(req, sink, CancelToken())
    assert sink.steps and all(p is None for _, _, p in sink.steps)


def test_cancel_during_step_two_keeps_finished_images(tiny_sd15_dir):
    steps = 4
    req = Txt2ImgRequest(model=str(tiny_sd15_dir), prompt="cat", steps=steps, width=64,
                         height=64, seed=3, count=3, scheduler="euler")
    token = CancelToken()
    calls = []

    def on_step(step, total):
        calls.append(step)
        if step == steps + 2:  # step 2 of the second image
            token.cancel()

    sink = RecordingSink(on_step)
    with pytest.raises(JobCancelled):
        make_service("fast").run(req, sink, token)
    # The pipeline stopped within one step: no progress after the cancelling step.
    assert calls[-1] == steps + 2
    assert [p.index for p in sink.partials] == [0]
    pngs = sorted(default_paths().outputs_dir.rglob("*.png"))
    assert pngs == [sink.partials[0].path]


def test_model_is_loaded_once_and_switched(tiny_sd15_dir, tiny_sdxl_dir):
    cache = ModelCache()
    service = make_service("off", cache=cache)
    for model in (tiny_sd15_dir, tiny_sd15_dir, tiny_sdxl_dir):
        req = Txt2ImgRequest(model=str(model), prompt="x", steps=1, width=64, height=64)
        service.run(req, RecordingSink(), CancelToken())
    assert cache.loads == 2
    # Both fit the automatic memory budget, so both stay loaded; SDXL is the most recent.
    keys = cache.loaded_keys()
    assert [Path(k[0]).name for k in keys] == [tiny_sd15_dir.name, tiny_sdxl_dir.name]
    assert type(cache.current).__name__ == "StableDiffusionXLPipeline"
    cache.unload_all()
    assert cache.loaded_keys() == []


@pytest.mark.parametrize("change,needle", [
    ({"width": 60}, "multiple of 8"),
    ({"model": "/nonexistent/model"}, "does not exist"),
    ({"model": "someone/not-cached"}, "not in your Hugging Face cache"),
])
def test_invalid_requests_fail_with_a_message(tiny_sd15_dir, change, needle):
    req = Txt2ImgRequest(model=str(tiny_sd15_dir), prompt="x", steps=1, width=64, height=64)
    for key, value in change.items():
        setattr(req, key, value)
    with pytest.raises(UserFacingError, match=needle):
        make_service().run(req, RecordingSink(), CancelToken())


def test_out_of_memory_becomes_a_user_message(tiny_sd15_dir, monkeypatch):
    service = make_service("off")
    req = Txt2ImgRequest(model=str(tiny_sd15_dir), prompt="x", steps=1, width=64, height=64)
    service.run(req, RecordingSink(), CancelToken())  # load it
    pipe = service.cache.current

    def boom(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(type(pipe), "__call__", boom)
    with pytest.raises(UserFacingError, match="Out of memory at 64×64"):
        service.run(req, RecordingSink(), CancelToken())


def test_nan_images_are_reported(tiny_sd15_dir, monkeypatch):
    service = make_service("off")
    req = Txt2ImgRequest(model=str(tiny_sd15_dir), prompt="x", steps=1, width=64, height=64)
    service.run(req, RecordingSink(), CancelToken())
    vae = service.cache.current.vae
    original = vae.decode

    def nan_decode(*args, **kwargs):
        out = original(*args, **kwargs)
        (out[0] if isinstance(out, tuple) else out.sample)[:] = float("nan")
        return out

    monkeypatch.setattr(vae, "decode", nan_decode)
    with pytest.raises(UserFacingError, match="NaN"):
        service.run(req, RecordingSink(), CancelToken())


def test_broken_model_folder_fails_with_an_actionable_message(tmp_path, tiny_sd15_dir):
    import shutil

    broken = tmp_path / "broken-model"
    shutil.copytree(tiny_sd15_dir, broken)
    weights = broken / "unet" / "diffusion_pytorch_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    req = Txt2ImgRequest(model=str(broken), prompt="x", steps=1, width=64, height=64)
    with pytest.raises(UserFacingError, match="Could not load broken-model.*re-download"):
        make_service().run(req, RecordingSink(), CancelToken())
