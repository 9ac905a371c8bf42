"""The self-test's Train checks: one step of every lesson, one in a spawned process (as the
window runs them), the faces data set, and models trained in Studio used by Generate and
Transform. Split from :mod:`studio.cli.self_checks`, whose helpers they use."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from studio.cli.self_checks import (
    IMAGE_SIDE,
    JOB_TIMEOUT,
    CheckFailed,
    _one_saved_png,
    _run_jobs,
    _tiny_image_inputs,
    scratch_settings,
)
from studio.core.wording import count_of

if TYPE_CHECKING:
    from multiprocessing.queues import Queue


def lesson_step(key: str) -> float:
    """The loss of the first training step of lesson ``key`` (default settings, seed 0)."""
    import math

    from studio.pipelines.train.base import step_loss
    from studio.pipelines.train.registry import lesson_class

    cls = lesson_class(key)
    trainer = cls(cls.validate_config(), seed=0)
    found = step_loss(trainer.step())
    loss = float("nan") if found is None else found
    if not math.isfinite(loss):
        raise CheckFailed(f"{key}: the first step's loss is {loss}")
    return loss


def _lesson_step_in_child(key: str, answers: Queue[tuple[str, Any]]) -> None:
    try:
        answers.put(("ok", lesson_step(key)))
    except BaseException as exc:  # noqa: BLE001 - reported to the parent
        answers.put(("error", f"{type(exc).__name__}: {exc}"))


def check_trained_models(root: Path) -> str:
    """Train, then use: a dcgan, a ddpm and a cyclegan trained a step, exported into a scratch
    library, then drawn from a seed and walked (the txt2img and gan-walk jobs), drawn by
    Generate's pixel-diffusion path (txt2img) and used by Transform."""
    from studio.core.requests import GanWalkRequest, TransformRequest, Txt2ImgRequest
    from studio.pipelines.train.cyclegan import CycleGANTrainer
    from studio.pipelines.train.dcgan import DCGANTrainer
    from studio.pipelines.train.ddpm import DDPMImageTrainer
    from studio.pipelines.train.export import export_trainer

    settings, paths = scratch_settings(root)
    dcgan = DCGANTrainer({"batch_size": 8, "width": 4, "latent_dim": 4})
    cyclegan = CycleGANTrainer({"batch_size": 1, "ngf": 4, "ndf": 4, "blocks": 1,
                                "image_size": "16"})
    ddpm = DDPMImageTrainer({"batch_size": 4, "width": 4, "preview_steps": 2})
    for trainer in (dcgan, cyclegan, ddpm):
        trainer.step()
    gan = export_trainer(dcgan, paths.models_dir, "self-test-gan").path
    pixel = export_trainer(ddpm, paths.models_dir, "self-test-ddpm").path
    translator = export_trainer(cyclegan, paths.models_dir, "self-test-cyclegan").path
    picture, _ = _tiny_image_inputs(root / "inputs")
    [(drawn, _), (walk, _), (denoised, _), (moved, _)] = _run_jobs(settings, paths, [
        Txt2ImgRequest(model=str(gan), seed=1, width=IMAGE_SIDE, height=IMAGE_SIDE),
        GanWalkRequest(model=str(gan), seed=1, seed_to=2, frames=3, gif=True),
        Txt2ImgRequest(model=str(pixel), seed=1, steps=2),
        TransformRequest(str(translator), [str(picture)], "BtoA")])
    _one_saved_png(drawn, "GAN: ")
    _one_saved_png(denoised, "trained DDPM: ", int(ddpm.config["image_size"]))  # its own size
    _one_saved_png(moved, "trained CycleGAN: ")
    if len(walk or []) != 4 or not Path(walk[-1].path).is_file():
        raise CheckFailed(f"the latent walk made {count_of(len(walk or []), 'file')}, not 3 frames and a GIF")
    return ("a trained GAN drawn and walked, a trained DDPM drawn, a trained CycleGAN used by "
            f"Transform, {check_exported_classifier(paths.models_dir, picture)}")


def check_exported_classifier(models_dir: Path, picture: Path) -> str:
    """The federated lesson's global model exported as a classifier (safetensors + config.json)
    and used as Gallery's Classify uses it."""
    from studio.pipelines.train.classify import classify_with_model
    from studio.pipelines.train.export import export_trainer
    from studio.pipelines.train.federated import FederatedTrainer

    trainer = FederatedTrainer({"local_steps": 1, "hidden": 4})
    trainer.step()
    folder = export_trainer(trainer, models_dir, "self-test-classifier").path
    answer = classify_with_model(picture, folder)
    if len(answer.top) != 3 or not 0.0 < sum(p for _c, p in answer.top) <= 1.0 + 1e-6:
        raise CheckFailed(f"the exported classifier answered {answer.top}")
    return "a trained classifier used by Gallery's Classify"


def check_smaller() -> str:
    """The quantize and prune lessons past their training: every setting quantized with torchao
    (whose kernels a frozen app must carry) and measured, and a copy pruned to the sparsity
    asked."""
    from studio.pipelines.train.prune import pruned_copy
    from studio.pipelines.train.quantize import SETTINGS, QuantizeLesson

    quantize = QuantizeLesson({"train_steps": 10, "width": 4})
    for _ in range(10 + len(SETTINGS)):
        quantize.step()
    rows = {r["key"]: r for r in quantize.snapshot()["table"]}
    if not all(r["measured"] for r in rows.values()):
        raise CheckFailed("the quantize lesson left settings unmeasured: "
                          + ", ".join(k for k, r in rows.items() if not r["measured"]))
    share = rows["int8_weight"]["bytes"] / rows["float32"]["bytes"]
    if share >= 1 or "fc quantized" not in rows["int8_weight"]["note"]:
        raise CheckFailed(f"int8 quantization did not shrink the CNN ({rows['int8_weight']['note']})")
    model = pruned_copy(quantize.net, "magnitude", 0.5)
    zero = float((model.fc.weight == 0).float().mean() + (model.conv2.weight == 0).float().mean())
    if zero == 0:
        raise CheckFailed("magnitude pruning set no weight to zero")
    return f"the CNN quantized ({len(rows)} settings; int8 {share:.0%} of its bytes) and pruned"


def check_train(lessons: tuple[str, ...] | None = None, spawned: str = "gan-2d",
                root: Path | None = None) -> str:
    """One training step of each lesson in the registry (their data ships with the app), and
    one in a spawned process, as the Train workspace runs lessons (a frozen app must hand the
    child to multiprocessing.freeze_support instead of starting a second app). With ``root``,
    also :func:`check_trained_models` there."""
    import multiprocessing
    import queue

    from studio.pipelines.train.registry import lesson_keys

    keys = list(lessons or lesson_keys())
    for key in keys:
        lesson_step(key)
    faces = check_faces()
    if root is not None:
        faces = f"{faces}; {check_trained_models(root)}; {check_smaller()}"
    if not spawned:
        return f"{count_of(len(keys), 'lesson')}, one step each; {faces}"
    context = multiprocessing.get_context("spawn")
    answers = context.Queue()
    child = context.Process(target=_lesson_step_in_child, args=(spawned, answers), daemon=True)
    child.start()
    try:
        status, value = answers.get(timeout=JOB_TIMEOUT)
    except queue.Empty:
        raise CheckFailed(f"the spawned {spawned} step gave no answer "
                          f"(exit code {child.exitcode})") from None
    finally:
        child.join(timeout=30)
        if child.is_alive():
            child.kill()
    if status != "ok":
        raise CheckFailed(f"the spawned {spawned} step failed: {value}")
    return (f"{count_of(len(keys), 'lesson')}, one step each; {spawned} in a spawned process; "
            f"{faces}")


def check_faces() -> str:
    """The faces data set loads where it is available, and an installer ships it (a frozen app
    without it fails). Elsewhere it is optional (scikit-image): said, not failed."""
    from studio.pipelines.train.image_sets import faces_available, load_image_set

    if not faces_available():
        if getattr(sys, "frozen", False):
            raise CheckFailed("the faces data set (datasets/lfw_subset.npy) is not in the app")
        return "faces data set not installed (optional: scikit-image)"
    faces = load_image_set("faces")
    return f"faces data set ({len(faces.x_train)} training images)"
