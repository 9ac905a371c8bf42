"""One name per CycleGAN model (the Transform picker, the Models library, the results' metadata and
the Gallery agree), and the inpainting mask blur (A1111's "Mask blur": applied to the mask the
pipeline gets, written into the PNG text, equal to plain diffusers given the blurred mask)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFilter

from studio.core.config import Settings, default_paths
from studio.core.jobs import CancelToken
from studio.core.requests import Img2ImgRequest, TransformRequest
from studio.library.cyclegan_models import model_name
from tests.fixtures.tiny_cyclegan import tiny_generator


class Sink:
    def __call__(self, step, total, preview=None):
        pass

    def partial(self, result):
        pass

    def message(self, text):
        pass


def _photo(path: Path, w: int, h: int, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    small = (rng.random((6, 8, 3)) * 255).astype(np.uint8)
    Image.fromarray(small).resize((w, h), Image.Resampling.BICUBIC).save(path)
    return path


def test_model_names_from_paths():
    assert model_name(Path("/m/cyclegan/style_monet/latest_net_G.pth")) == "style_monet"
    assert model_name(Path("/c/horse2zebra_pretrained/latest_net_G.pth")) == "horse2zebra"
    assert model_name(Path("/x/mystyle/mystyle_net_G_B.pth")) == "mystyle"
    assert model_name(Path("/x/checkpoints/mystyle_cyclegan")) == "mystyle"  # a pair's folder
    hub = Path("/hf/hub/models--someone--horse2zebra/snapshots/0123abcd/latest_net_G.pth")
    assert model_name(hub) == "someone/horse2zebra"  # not the snapshot's hash


def test_one_name_in_library_metadata_and_gallery(tmp_path, qtbot):
    import torch

    from studio.library.catalog import list_models
    from studio.media.transform_reuse import read_transform_reuse
    from studio.pipelines.cyclegan.service import TransformService
    from studio.ui.panels.gallery.details import DetailsPane

    paths = default_paths()
    weights = paths.models_dir / "cyclegan" / "style_monet" / "latest_net_G.pth"
    weights.parent.mkdir(parents=True)
    torch.save(tiny_generator(6, 8, seed=1).state_dict(), weights)
    settings = Settings(device="cpu")
    library = [e for e in list_models(settings, paths) if e.kind == "transform"]
    assert [e.name for e in library] == ["style_monet"]

    source = _photo(tmp_path / "field.png", 40, 30)
    result = TransformService(lambda: settings, lambda: paths).run(
        TransformRequest(str(weights), [str(source)]), Sink(), CancelToken())[0]
    assert "CycleGAN: style_monet," in result.parameters
    reuse = read_transform_reuse(result.path)
    assert reuse.model_name == "style_monet"

    from studio.media.metadata import read_image_metadata

    pane = DetailsPane()
    qtbot.addWidget(pane)
    pane.set_metadata(read_image_metadata(result.path), None, reuse)
    assert pane.fields["model"].text() == "style_monet · A → B"  # not "latest_net_G.pth"


@pytest.fixture(scope="module")
def picture(tmp_path_factory):
    folder = tmp_path_factory.mktemp("blur")
    image = _photo(folder / "photo.png", 64, 56, seed=3)
    mask = Image.new("L", (64, 56), 0)
    ImageDraw.Draw(mask).rectangle((16, 12, 44, 40), fill=255)
    mask.save(folder / "mask.png")
    return image, folder / "mask.png"


def test_mask_blur_softens_the_mask_and_is_recorded(tiny_sd15_dir, picture):
    import torch
    from diffusers import StableDiffusionInpaintPipeline

    from studio.pipelines.diffusion.img2img import Img2ImgService

    settings = Settings(preview_mode="off", device="cpu")
    service = Img2ImgService(lambda: settings, default_paths)
    request = Img2ImgRequest(model=str(tiny_sd15_dir), image=str(picture[0]),
                             mask=str(picture[1]), prompt="a door", strength=0.9, steps=3,
                             seed=5, keep_unmasked=False, mask_blur=4)
    result = service.run(request, Sink(), CancelToken())[0]
    assert "Mask blur: 4," in result.parameters
    plain = StableDiffusionInpaintPipeline(**service.cache.current.components)
    plain.set_progress_bar_config(disable=True)
    init = Image.open(picture[0]).convert("RGB")
    blurred = Image.open(picture[1]).convert("L").filter(ImageFilter.GaussianBlur(4))
    expected = plain(prompt="a door", image=init, mask_image=blurred, width=64, height=56,
                     strength=0.9, num_inference_steps=3, guidance_scale=7.0,
                     generator=torch.Generator("cpu").manual_seed(5)).images[0]
    assert np.array_equal(np.asarray(result.image), np.asarray(expected))

    # Kept outside the mask, the edge is feathered: just outside the painted square the result
    # blends into the picture instead of stopping at a hard line.
    kept = service.run(dataclasses.replace(request, keep_unmasked=True), Sink(),
                       CancelToken())[0]
    out, src = np.asarray(kept.image).astype(int), np.asarray(init).astype(int)
    assert np.array_equal(out[0:2, 0:4], src[0:2, 0:4])  # far from the mask: the picture
    assert not np.array_equal(out[41:43, 20:40], src[41:43, 20:40])  # the soft edge
    sharp = service.run(dataclasses.replace(request, keep_unmasked=True, mask_blur=0), Sink(),
                        CancelToken())[0]
    assert "Mask blur: 0," in sharp.parameters
    assert np.array_equal(np.asarray(sharp.image)[41:43, 20:40], src[41:43, 20:40])


def test_mask_blur_bounds_and_old_requests():
    request = Img2ImgRequest(model="m", image="x.png", mask="m.png", mask_blur=65)
    with pytest.raises(ValueError, match="Mask blur must be 0 to 64"):
        request.validate()
    # Results made before the setting existed were made without a blur: reuse repeats that.
    old = {"kind": "inpaint", "model": "m", "image": "x.png", "mask": "m.png", "seed": 3}
    assert Img2ImgRequest.from_dict(old).mask_blur == 0
    again = Img2ImgRequest.from_dict(Img2ImgRequest(model="m", image="x.png", mask="m.png",
                                                    mask_blur=7).to_dict())
    assert again.mask_blur == 7
