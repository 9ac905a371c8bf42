"""T2I-Adapters (issue 14): a tiny random T2IAdapter in the library's controlnet folder is listed
as a ControlNet-kind model labelled T2I-Adapter, guides text to image exactly as plain diffusers'
StableDiffusionAdapterPipeline does (one adapter, and two through MultiAdapter), reports every
step through the old-style callback those pipelines take, is written as A1111's ControlNet
extension writes it, and what the adapter pipelines cannot do is refused with a sentence."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from PIL import Image

from studio.core.config import Settings, default_paths
from studio.core.jobs import CancelToken, UserFacingError
from studio.core.requests import Txt2ImgRequest
from studio.media.infotext import parse_infotext
from studio.pipelines.diffusion import controlnet as cn
from studio.pipelines.diffusion.txt2img import Txt2ImgService
from tests.fixtures.sinks import RecordingSink as Sink
from tests.fixtures.tiny_controlnet import write_drawing
from tests.fixtures.torch_threads import one_torch_thread  # noqa: F401


@pytest.fixture
def model(tiny_sd15_dir, tmp_path):
    """The tiny SD 1.x pipeline with a UNet whose blocks an adapter's features fit (attention
    first, as SD's own UNet has it)."""
    import torch
    from diffusers import UNet2DConditionModel

    folder = tmp_path / "tiny-sd-adapter"
    shutil.copytree(tiny_sd15_dir, folder, ignore=shutil.ignore_patterns("unet"))
    torch.manual_seed(3)
    UNet2DConditionModel(
        block_out_channels=(32, 64), layers_per_block=1, sample_size=8, in_channels=4,
        out_channels=4, down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=32,
        attention_head_dim=(2, 4), norm_num_groups=32).save_pretrained(str(folder / "unet"))
    return folder


@pytest.fixture
def adapters():
    import torch
    from diffusers import T2IAdapter

    root = default_paths().models_dir / "controlnet"
    out = []
    for seed in (1, 2):
        torch.manual_seed(seed)
        adapter = T2IAdapter(in_channels=3, channels=[32, 64], num_res_blocks=1,
                             downscale_factor=8, adapter_type="full_adapter")
        adapter.save_pretrained(str(root / f"t2iadapter_sketch_tiny{seed}"))
        out.append(root / f"t2iadapter_sketch_tiny{seed}")
    return out


@pytest.fixture
def drawing(tmp_path):
    return write_drawing(tmp_path)


def _service():
    return Txt2ImgService(lambda: Settings(preview_mode="fast", device="cpu"), default_paths)


def _request(model, units):
    return Txt2ImgRequest(model=str(model), prompt="a cat", negative_prompt="blurry", steps=3,
                          cfg=6.0, width=32, height=24, seed=11, controlnets=units)


def _plain(base, folders, images, scale):
    import torch
    from diffusers import MultiAdapter, StableDiffusionAdapterPipeline, T2IAdapter

    models = [T2IAdapter.from_pretrained(str(f)) for f in folders]
    pipe = StableDiffusionAdapterPipeline(
        **{k: base.components[k] for k in ("vae", "text_encoder", "tokenizer", "unet",
                                            "scheduler")},
        adapter=models[0] if len(models) == 1 else MultiAdapter(models), safety_checker=None,
        feature_extractor=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    return pipe(prompt="a cat", negative_prompt="blurry", num_inference_steps=3,
                guidance_scale=6.0, width=32, height=24,
                image=images[0] if len(images) == 1 else images, adapter_conditioning_scale=scale,
                generator=torch.Generator("cpu").manual_seed(11)).images[0]


def test_one_and_two_adapters_equal_plain_diffusers(model, adapters, drawing):
    from studio.library.catalog import list_models

    listed = {e.name: e for e in list_models(Settings(), default_paths())}
    entry = listed["t2iadapter_sketch_tiny1"]
    assert entry.kind == "controlnet" and entry.family == "sd1"
    assert "T2I-Adapter (scribble)" in entry.detail

    service, sink = _service(), Sink()
    unit = {"model": "t2iadapter_sketch_tiny1", "image": str(drawing), "preprocess": "invert",
            "weight": 0.8}
    [result] = service.run(_request(model, [unit]), sink, CancelToken())
    control = cn.preprocess("invert", cn.crop_and_resize(Image.open(drawing), 32, 24))
    expected = _plain(service.cache.current, adapters[:1], [control], 0.8)
    assert np.array_equal(np.asarray(result.image), np.asarray(expected))
    plain_sink = Sink()
    plain = service.run(_request(model, []), plain_sink, CancelToken())[0]
    # steps are reported through the old-style callback (which skips PNDM's warm-up step)
    steps, plain_steps = [s[0] for s in sink.steps], [s[0] for s in plain_sink.steps]
    assert steps[-1] == plain_steps[-1] and set(steps) <= set(plain_steps)
    assert not np.array_equal(np.asarray(result.image), np.asarray(plain.image))  # it guides
    assert parse_infotext(result.parameters)["ControlNet 0"].startswith(
        "Module: invert (from white bg & black line), Model: t2iadapter_sketch_tiny1, Weight: 0.8")

    two = [unit, {"model": str(adapters[1]), "image": str(drawing), "preprocess": "canny",
                  "weight": 0.5}]
    [result] = service.run(_request(model, two), Sink(), CancelToken())
    base = cn.crop_and_resize(Image.open(drawing), 32, 24)
    expected = _plain(service.cache.current, adapters, [control, cn.preprocess("canny", base)],
                      [0.8, 0.5])
    assert np.array_equal(np.asarray(result.image), np.asarray(expected))


def test_what_the_adapter_pipelines_cannot_do_is_refused(model, adapters, drawing):
    fake = default_paths().models_dir / "controlnet" / "some-controlnet"
    fake.mkdir()
    (fake / "config.json").write_text(json.dumps({"_class_name": "ControlNetModel",
                                                  "cross_attention_dim": 32}))
    (fake / "diffusion_pytorch_model.safetensors").write_bytes(b"")
    service = _service()
    adapter = {"model": "t2iadapter_sketch_tiny1", "image": str(drawing)}
    for units, words in (
            ([adapter | {"start": 0.2}], "acts from the first step"),
            ([adapter | {"end": 0.5}], "act on every step"),
            ([adapter, {"model": "some-controlnet", "image": str(drawing)}],
             "cannot guide one image together")):
        with pytest.raises(UserFacingError, match=words):
            service.run(_request(model, units), Sink(), CancelToken())
    with pytest.raises(UserFacingError, match="Prompt editing"):
        service.run(Txt2ImgRequest(model=str(model), prompt="a [cat:dog:0.5]", steps=2,
                                   width=32, height=24, controlnets=[adapter]),
                    Sink(), CancelToken())
