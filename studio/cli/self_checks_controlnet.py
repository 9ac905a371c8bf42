"""The self-test's ControlNet step (part of its generate check): a tiny ControlNet built from the
tiny model's UNet guides a two-step image with the canny preprocessor, so an installed bundle
proves ControlNet, scikit-image's Canny and the A1111 ControlNet keys work frozen."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def controlnet_step(model: Path, settings: Any, paths: Any, image: Path,
                    run_jobs: Any, side: int, steps: int) -> str:
    import torch
    from diffusers import ControlNetModel, UNet2DConditionModel
    from PIL import Image

    from studio.cli.self_checks import CheckFailed
    from studio.core.requests import Txt2ImgRequest

    folder = paths.models_dir / "controlnet" / "self-test-cn"
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        unet = UNet2DConditionModel.from_pretrained(str(model / "unet"))
        ControlNetModel.from_unet(unet).save_pretrained(str(folder))
    request = Txt2ImgRequest(model=str(model), prompt="a lighthouse at dawn", steps=steps,
                             cfg=5.0, width=side, height=side, seed=42,
                             controlnets=[{"model": "self-test-cn", "image": str(image),
                                           "preprocess": "canny"}])
    [(results, _)] = run_jobs(settings, paths, [request])
    if not results:
        raise CheckFailed("the ControlNet job made no image")
    with Image.open(results[0].path) as made:
        text = made.info.get("parameters", "")
    if 'ControlNet 0: "Module: canny, Model: self-test-cn' not in text:
        raise CheckFailed("the ControlNet image does not say its ControlNet in its parameters")
    return "a ControlNet guided one (canny)"
