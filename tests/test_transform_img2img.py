"""img2img and inpainting: bit-for-bit equal to plain diffusers on CPU, sharing the loaded model."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from PIL import Image, ImageDraw

from studio.core.config import Settings, default_paths
from studio.core.jobs import CancelToken, JobCancelled
from studio.core.requests import Img2ImgRequest, Txt2ImgRequest
from studio.pipelines.diffusion.img2img import Img2ImgService, derived_size
from studio.pipelines.model_cache import ModelCache


class Sink:
    def __init__(self) -> None:
        self.steps: list[tuple[int, int]] = []
        self.previews = 0
        self.partials: list = []

    def __call__(self, step, total, preview=None):
        self.steps.append((step, total))
        self.previews += preview is not None

    def partial(self, result):
        self.partials.append(result)

    def message(self, text):
        pass


@pytest.fixture(scope="module")
def photo(tmp_path_factory):
    folder = tmp_path_factory.mktemp("img2img")
    rng = np.random.default_rng(3)
    small = (rng.random((9, 11, 3)) * 255).astype(np.uint8)
    image = Image.fromarray(small).resize((70, 61), Image.Resampling.BICUBIC)  # odd size
    path = folder / "photo.png"
    image.save(path)
    mask = Image.new("L", (70, 61), 0)
    ImageDraw.Draw(mask).ellipse((10, 10, 45, 40), fill=255)
    mask_path = folder / "mask.png"
    mask.save(mask_path)
    return path, mask_path


def _service(cache=None):
    settings = Settings(preview_mode="fast", device="cpu")
    return Img2ImgService(lambda: settings, default_paths, cache)


def _plain(cls_name, pipe):
    import diffusers

    cls = getattr(diffusers, cls_name)
    plain = cls(**pipe.components)
    plain.set_progress_bar_config(disable=True)
    return plain


def test_derived_size_rounds_down_to_multiples_of_8():
    assert derived_size(70, 61) == (64, 56)
    assert derived_size(8000, 4000, max_side=4096) == (4096, 2048)
    assert derived_size(3, 3) == (8, 8)


def test_img2img_equals_plain_diffusers(tiny_sd15_dir, photo):
    import torch

    service = _service()
    request = Img2ImgRequest(model=str(tiny_sd15_dir), image=str(photo[0]), prompt="a red barn",
                             negative_prompt="blurry", strength=0.6, steps=5, cfg=6.5, seed=11,
                             count=2)
    sink = Sink()
    results = service.run(request, sink, CancelToken())
    assert [r.seed for r in results] == [11, 12]
    assert results[0].image.size == (64, 56)
    # Strength 0.6 runs only part of the 5 steps; the total counts both images.
    last, total = sink.steps[-1]
    assert sink.previews > 0 and last == total and total % 2 == 0 and total < 10
    assert "Denoising strength: 0.6" in results[0].parameters
    pipe = service.cache.current
    plain = _plain("StableDiffusionImg2ImgPipeline", pipe)
    init = Image.open(photo[0]).convert("RGB").resize((64, 56), Image.Resampling.LANCZOS)
    for result in results:
        expected = plain(prompt="a red barn", negative_prompt="blurry", image=init, strength=0.6,
                         num_inference_steps=5, guidance_scale=6.5,
                         generator=torch.Generator("cpu").manual_seed(result.seed)).images[0]
        assert np.array_equal(np.asarray(result.image), np.asarray(expected))
        saved = Image.open(result.path)
        assert np.array_equal(np.asarray(saved.convert("RGB")), np.asarray(expected))
        assert "Denoising strength" in saved.text["parameters"]


def test_inpaint_equals_plain_diffusers_and_keeps_unmasked(tiny_sd15_dir, photo):
    import torch

    service = _service()
    request = Img2ImgRequest(model=str(tiny_sd15_dir), image=str(photo[0]), mask=str(photo[1]),
                             prompt="a cat", strength=0.9, steps=4, cfg=5.0, seed=5,
                             keep_unmasked=False)
    result = service.run(request, Sink(), CancelToken())[0]
    assert "Mask: mask.png" in result.parameters
    pipe = service.cache.current
    plain = _plain("StableDiffusionInpaintPipeline", pipe)
    init = Image.open(photo[0]).convert("RGB").resize((64, 56), Image.Resampling.LANCZOS)
    mask = Image.open(photo[1]).convert("L").resize((64, 56), Image.Resampling.NEAREST)
    expected = plain(prompt="a cat", image=init, mask_image=mask, width=64, height=56,
                     strength=0.9, num_inference_steps=4, guidance_scale=5.0,
                     generator=torch.Generator("cpu").manual_seed(5)).images[0]
    assert np.array_equal(np.asarray(result.image), np.asarray(expected))

    kept = service.run(dataclasses.replace(request, keep_unmasked=True), Sink(),
                       CancelToken())[0]
    outside = np.asarray(mask) == 0
    assert np.array_equal(np.asarray(kept.image)[outside], np.asarray(init)[outside])
    assert not np.array_equal(np.asarray(kept.image), np.asarray(init))


def test_shares_the_txt2img_cache_without_a_second_unet(tiny_sd15_dir, photo):
    from studio.pipelines.diffusion.txt2img import Txt2ImgService

    cache = ModelCache()
    settings = Settings(preview_mode="off", device="cpu")
    txt2img = Txt2ImgService(lambda: settings, default_paths, cache)
    img2img = Img2ImgService(lambda: settings, default_paths, cache)
    txt2img.run(Txt2ImgRequest(model=str(tiny_sd15_dir), steps=1, width=64, height=64), Sink(),
                CancelToken())
    base = cache.current
    unet_id = id(base.unet)
    img2img.run(Img2ImgRequest(model=str(tiny_sd15_dir), image=str(photo[0]), steps=2,
                               strength=0.5), Sink(), CancelToken())
    assert cache.loads == 1 and cache.current is base and id(base.unet) == unet_id
    from studio.pipelines.diffusion.img2img import derive_pipeline

    for inpaint in (False, True):
        derived = derive_pipeline(base, inpaint)
        assert derived.unet is base.unet and derived.vae is base.vae
        assert derived.text_encoder is base.text_encoder


def test_cancel_stops_within_a_step(tiny_sd15_dir, photo):
    service = _service()
    token = CancelToken()
    sink = Sink()

    def cancelling(step, total, preview=None):
        sink.steps.append((step, total))
        token.cancel()

    cancelling.partial = sink.partial
    cancelling.message = sink.message
    with pytest.raises(JobCancelled):
        service.run(Img2ImgRequest(model=str(tiny_sd15_dir), image=str(photo[0]), steps=10,
                                   strength=1.0, count=3), cancelling, token)
    assert len(sink.steps) == 1 and not sink.partials


def test_sdxl_img2img_runs(tiny_sdxl_dir, photo):
    result = _service().run(Img2ImgRequest(model=str(tiny_sdxl_dir), image=str(photo[0]),
                                           prompt="x", steps=2, strength=0.5), Sink(),
                            CancelToken())[0]
    assert result.image.size == (64, 56)


def test_sdxl_inpaint_equals_plain_diffusers(tiny_sdxl_dir, photo):
    import torch

    service = _service()
    request = Img2ImgRequest(model=str(tiny_sdxl_dir), image=str(photo[0]), mask=str(photo[1]),
                             prompt="a cat", negative_prompt="blurry", strength=0.8, steps=4,
                             cfg=5.0, seed=7, keep_unmasked=False)
    result = service.run(request, Sink(), CancelToken())[0]
    pipe = service.cache.current
    plain = _plain("StableDiffusionXLInpaintPipeline", pipe)
    init = Image.open(photo[0]).convert("RGB").resize((64, 56), Image.Resampling.LANCZOS)
    mask = Image.open(photo[1]).convert("L").resize((64, 56), Image.Resampling.NEAREST)
    expected = plain(prompt="a cat", negative_prompt="blurry", image=init, mask_image=mask,
                     width=64, height=56, strength=0.8, num_inference_steps=4, guidance_scale=5.0,
                     generator=torch.Generator("cpu").manual_seed(7)).images[0]
    assert result.image.size == (64, 56)
    assert np.array_equal(np.asarray(result.image), np.asarray(expected))
    assert "Mask: mask.png" in result.parameters
    inside = np.asarray(mask) >= 128  # it did repaint the masked region
    assert not np.array_equal(np.asarray(result.image)[inside], np.asarray(init)[inside])


def test_img2img_and_inpaint_share_txt2img_s_nan_check_and_out_of_memory_message(
        tiny_sd15_dir, photo, monkeypatch):
    """One batch loop (diffusion/batch.py): img2img used to save a black image where txt2img
    reported NaN, and worded running out of memory differently."""
    import torch

    from studio.core.jobs import UserFacingError

    service = _service()
    for mask in ("", str(photo[1])):
        request = Img2ImgRequest(model=str(tiny_sd15_dir), image=str(photo[0]), mask=mask,
                                 steps=2, strength=0.5)
        service.run(request, Sink(), CancelToken())  # load it
        vae = service.cache.current.vae
        original = vae.decode

        def nan_decode(*args, original=original, **kwargs):
            out = original(*args, **kwargs)
            (out[0] if isinstance(out, tuple) else out.sample)[:] = float("nan")
            return out

        with monkeypatch.context() as patch:
            patch.setattr(vae, "decode", nan_decode)
            sink = Sink()
            with pytest.raises(UserFacingError, match="NaN values"):
                service.run(request, sink, CancelToken())
            assert not sink.partials  # nothing black was saved or shown

        def boom(*args, **kwargs):
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

        with monkeypatch.context() as patch:
            import diffusers

            for name in ("StableDiffusionImg2ImgPipeline", "StableDiffusionInpaintPipeline"):
                patch.setattr(getattr(diffusers, name), "__call__", boom)
            with pytest.raises(UserFacingError,
                               match="Out of memory at 64×56 — try a smaller size, or close"):
                service.run(request, Sink(), CancelToken())
