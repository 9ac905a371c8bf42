"""The self-test generate check's further steps on the image it made: a LoRA trained a step, the
Gallery's search by meaning, and a tiny ControlNet built from the tiny model's UNet guiding a
two-step image with the canny preprocessor, and an int8 copy of the model (Make smaller) drawing
again — so an installed bundle proves LoRA training, CLIP
search, ControlNet, scikit-image's Canny and the A1111 ControlNet keys work frozen. Kept apart
from self_checks.py, which holds the checks themselves."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from studio.core.config import Paths, Settings


def controlnet_step(model: Path, settings: Settings, paths: Paths, image: Path, side: int,
                    steps: int) -> str:
    import torch
    from diffusers import ControlNetModel, UNet2DConditionModel
    from PIL import Image

    from studio.cli.self_checks import CheckFailed, _run_jobs
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
    [(results, _)] = _run_jobs(settings, paths, [request])
    if not results:
        raise CheckFailed("the ControlNet job made no image")
    with Image.open(results[0].path) as made:
        text = made.info.get("parameters", "")
    if 'ControlNet 0: "Module: canny, Model: self-test-cn' not in text:
        raise CheckFailed("the ControlNet image does not say its ControlNet in its parameters")
    return "a ControlNet guided one (canny)"


def gallery_search(settings: Settings, paths: Paths, image: Path) -> str:
    """The Gallery's search by meaning (`studio gallery search`'s jobs): a tiny CLIP embeds the
    outputs folder into the gallery database and finds the generated image by text."""
    from studio.cli.self_checks import CheckFailed, _run_jobs, build_tiny_clip
    from studio.core.gallery_requests import GalleryIndexRequest, GallerySearchRequest

    model = str(build_tiny_clip(paths.models_dir / "tiny-clip"))
    [(report, _), (hits, _)] = _run_jobs(settings, paths, [
        GalleryIndexRequest(model=model), GallerySearchRequest("a lighthouse", model=model)])
    if report.embedded < 1 or [h.path for h in hits[:1]] != [image]:
        raise CheckFailed(f"the gallery search did not find {image.name}: "
                          f"{report.sentence()}; found {[h.path.name for h in hits]}")
    return "found by a CLIP search"


def lora_step(model: Path, settings: Settings, paths: Paths, image: Path, side: int) -> str:
    """`studio train-lora`'s trainer: one step on the generated image, a kohya LoRA file that
    the library recognises as a LoRA."""
    import shutil

    from studio.cli.self_checks import CheckFailed
    from studio.library.classify import classify_file
    from studio.pipelines.train.lora_config import LoraTrainConfig
    from studio.pipelines.train.lora_sd import LoraTrainer

    data = paths.data_dir / "lora-data"
    data.mkdir(parents=True, exist_ok=True)
    shutil.copy(image, data / "one.png")
    (data / "one.txt").write_text("a lighthouse", encoding="utf-8")
    config = LoraTrainConfig(data_dir=data, base=str(model), name="self-test", rank=2, alpha=2,
                             steps=1, resolution=side)
    trainer = LoraTrainer(config, settings, paths)
    trainer.prepare()
    out = trainer.run()
    kind = classify_file(out)
    if kind.kind != "lora":
        raise CheckFailed(f"the trained LoRA {out.name} reads as {kind.kind}: {kind.reason}")
    return "a LoRA trained a step"


def shrink_step(model: Path, settings: Settings, paths: Paths, side: int, steps: int) -> str:
    """Make smaller on the tiny image model (`image-shrink`, torchao int8 through diffusers'
    quantizer), then an image from the copy through Generate's loader."""
    from studio.cli.self_checks import CheckFailed, _run_jobs
    from studio.core.requests import Txt2ImgRequest
    from studio.core.shrink_requests import ImageShrinkRequest

    [(report, _)] = _run_jobs(settings, paths, [ImageShrinkRequest(
        model=str(model), method="int8", steps=steps, size=side)])
    if report is None or not report.path.is_dir():
        raise CheckFailed("the int8 copy of the image model was not made")
    [(results, _)] = _run_jobs(settings, paths, [Txt2ImgRequest(
        model=str(report.path), prompt="a lighthouse at dawn", steps=steps, cfg=5.0,
        width=side, height=side, seed=42)])
    if not results:
        raise CheckFailed("the int8 copy of the image model made no image")
    return "its int8 copy made one"
