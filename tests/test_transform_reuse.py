"""Rebuilding Transform requests from result images: CycleGAN and img2img/inpaint chunks, missing
source and mask files, and images that hold no Transform request."""

from __future__ import annotations

import dataclasses

from PIL import Image

from studio.core.requests import Img2ImgRequest, TransformRequest, Txt2ImgRequest
from studio.media.outputs import (
    save_image_with_metadata,
    save_img2img_image,
    save_txt2img_image,
)
from studio.media.transform_reuse import read_transform_reuse


def _img2img_result(tmp_path, request: Img2ImgRequest, seed: int):
    path, _ = save_img2img_image(Image.new("RGB", (32, 24), "teal"), request, seed,
                                 tmp_path / "out", model_name="tiny", model_hash="abcd",
                                 sampler="Euler a", schedule_type="Automatic")
    return path


def _files(tmp_path):
    source = tmp_path / "room.png"
    Image.new("RGB", (32, 24), "gray").save(source)
    mask = tmp_path / "mask.png"
    Image.new("L", (32, 24), 255).save(mask)
    return source, mask


def test_inpaint_result_gives_back_its_request_seed_and_files(tmp_path):
    source, mask = _files(tmp_path)
    request = Img2ImgRequest(model="/models/sd15", image=str(source), mask=str(mask),
                             prompt="a window", negative_prompt="blurry", strength=0.65, steps=12,
                             cfg=5.5, seed=100, count=3, scheduler="dpmpp_2m_karras")
    result = _img2img_result(tmp_path, request, seed=102)  # the third image of the batch
    reuse = read_transform_reuse(result)
    assert reuse.mode == "inpaint" and reuse.notes == []
    assert reuse.image == source and reuse.mask == mask and reuse.result == result
    assert reuse.request == dataclasses.replace(request, seed=102, count=1)


def test_missing_source_uses_the_result_and_missing_mask_is_said(tmp_path):
    source, mask = _files(tmp_path)
    request = Img2ImgRequest(model="/models/sd15", image=str(source), mask=str(mask),
                             prompt="a window", seed=5)
    result = _img2img_result(tmp_path, request, seed=5)
    source.unlink()
    mask.unlink()
    reuse = read_transform_reuse(result)
    assert reuse.mode == "inpaint" and reuse.image == result and reuse.mask is None
    assert reuse.request.image == str(result) and reuse.request.mask == ""
    assert "room.png" in reuse.notes[0] and "no longer exists" in reuse.notes[0]
    assert "mask.png" in reuse.notes[1] and "paint" in reuse.notes[1]


def test_img2img_result(tmp_path):
    source, _ = _files(tmp_path)
    request = Img2ImgRequest(model="/models/sdxl", image=str(source), prompt="oil painting",
                             strength=0.4, seed=9)
    reuse = read_transform_reuse(_img2img_result(tmp_path, request, seed=9))
    assert reuse.mode == "img2img" and reuse.mask is None and reuse.request == request


def test_cyclegan_result(tmp_path):
    source, _ = _files(tmp_path)
    request = TransformRequest(model="/models/cyclegan/mystyle", inputs=[str(source)],
                               direction="BtoA", max_side=640)
    result = save_image_with_metadata(Image.new("RGB", (32, 24)), tmp_path / "out", "x", "",
                                      {"transform": request.to_dict(), "source": str(source)})
    reuse = read_transform_reuse(result)
    assert reuse.mode == "cyclegan" and reuse.image == source and reuse.notes == []
    assert reuse.request == request
    source.unlink()
    gone = read_transform_reuse(result)
    assert gone.image == result and gone.request.inputs == [str(result)]
    assert "room.png" in gone.notes[0]


def test_images_without_a_transform_request(tmp_path):
    txt2img = Txt2ImgRequest(model="/models/sd15", prompt="a fox", width=32, height=24)
    path, _ = save_txt2img_image(Image.new("RGB", (32, 24)), txt2img, 0, tmp_path,
                                 model_name="sd15", model_hash="", sampler="Euler",
                                 schedule_type="Automatic")
    assert read_transform_reuse(path) is None
    plain = tmp_path / "plain.png"
    Image.new("RGB", (8, 8)).save(plain)
    assert read_transform_reuse(plain) is None
    assert read_transform_reuse(tmp_path / "missing.png") is None
    odd = save_image_with_metadata(Image.new("RGB", (8, 8)), tmp_path, "odd", "",
                                   {"request": {"kind": "inpaint", "strength": "lots"}})
    assert read_transform_reuse(odd) is None  # no model, no image: nothing to rebuild
