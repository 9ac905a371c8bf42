"""Chroma through Studio's code path (issue 15): a tiny random Chroma folder (the real classes)
is detected and generates bit for bit what plain diffusers' ChromaPipeline makes — with its
negative prompt and real CFG — with previews of its packed latents."""

from __future__ import annotations

import numpy as np
import torch

from studio.core.config import Settings, default_paths
from studio.core.jobs import CancelToken
from studio.core.requests import Txt2ImgRequest
from studio.library.detect import detect_diffusers_folder
from studio.pipelines.diffusion.txt2img import Txt2ImgService
from tests.fixtures.sinks import RecordingSink


def test_detected_and_bit_equal_with_its_negative_prompt(tiny_chroma_dir):
    from diffusers import ChromaPipeline

    assert detect_diffusers_folder(tiny_chroma_dir).family == "chroma"
    settings = Settings(device="cpu", precision="fp32", preview_mode="fast")
    req = Txt2ImgRequest(model=str(tiny_chroma_dir), prompt="a fox in the snow",
                         negative_prompt="blurry", steps=2, cfg=4.0, width=64, height=64,
                         seed=9, count=1)
    sink = RecordingSink()
    (result,) = Txt2ImgService(lambda: settings, default_paths).run(req, sink, CancelToken())
    pipe = ChromaPipeline.from_pretrained(str(tiny_chroma_dir), local_files_only=True)
    pipe.set_progress_bar_config(disable=True)

    def plain(negative):
        return pipe("a fox in the snow", negative_prompt=negative, num_inference_steps=2,
                    guidance_scale=4.0, width=64, height=64,
                    generator=torch.Generator("cpu").manual_seed(9)).images[0]

    assert np.array_equal(np.asarray(result.image), np.asarray(plain("blurry")))
    assert not np.array_equal(np.asarray(plain("blurry")), np.asarray(plain("")))  # it counts
    assert not result.warnings
    previews = [p for _, _, p in sink.steps if p is not None]
    assert previews and previews[0].shape == (8, 8, 3)
