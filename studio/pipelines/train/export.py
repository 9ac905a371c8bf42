"""Train, then use: a lesson's trained model written into the model library.

- ``cyclegan``: ``<models>/cyclegan/<name>/latest_net_G_A.pth`` and ``latest_net_G_B.pth`` in the
  junyanz layout (state dicts only); Transform lists the folder as one model with both directions.
- ``dcgan``: ``<models>/gan/<name>/`` with the generator's weights as ``generator.safetensors``
  and its shape in ``gan.json`` (:mod:`studio.library.gan_models`); Generate lists it as a GAN.
- ``ddpm``: ``<models>/ddpm/<name>/``, a diffusers ``DDPMPipeline`` folder (UNet and a DDIM
  scheduler in safetensors and JSON, ``class_names.json`` when class-conditional,
  :func:`studio.pipelines.train.ddpm.export_state`); Generate lists it with a class picker.
- ``gpt``: ``<models>/chat/<name>/``, a ``transformers`` model folder (config, safetensors,
  tokenizer with a plain-continuation chat template); Chat lists it like any chat model.
- ``lora-sd``: ``<models>/loras/<name>/<name>.safetensors``, the LoRA in kohya's format with
  its ``ss_`` metadata and ``<name>.preview.png`` (the page also writes ``<models>/loras/<name>``
  itself when it reaches its steps).
- ``lora-chat``: ``<models>/chat/<name>/``, the merged model (a ``transformers`` folder with the
  base's tokenizer and chat template) and the LoRA adapter alone in ``adapter/`` (peft format).
- ``cnn``, ``distill`` (the distilled student), ``federated`` (the global model):
  ``<models>/classifier/<name>/`` with ``model.safetensors`` and ``config.json`` (architecture,
  shape, input size and channels, class names; :mod:`studio.library.classifier_models`);
  Gallery's image menu classifies an image with it.

A name already taken is refused (nothing is overwritten). No Qt here; torch is imported with the
lesson.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from studio.core.jobs import UserFacingError

#: lesson → (the models sub-folder its export goes to, the workspace that uses it)
EXPORTS: dict[str, tuple[str, str]] = {"cyclegan": ("cyclegan", "Transform"),
                                       "dcgan": ("gan", "Generate"),
                                       "ddpm": ("ddpm", "Generate"), "gpt": ("chat", "Chat"),
                                       "lora-chat": ("chat", "Chat"),
                                       "dpo": ("chat", "Chat"),
                                       "cnn": ("classifier", "Gallery"),
                                       "distill": ("classifier", "Gallery"),
                                       "federated": ("classifier", "Gallery"),
                                       "prune": ("classifier", "Gallery"),
                                       "lora-sd": ("loras", "Generate")}
_CLASSIFY = ("Gallery's image menu → Classify with an exported model… lists it (the top classes "
             "with their probabilities)")
#: lesson → how the student uses what it exported
USES = {"cyclegan": "Transform → CycleGAN lists it beside the released models",
        "dcgan": "Generate lists it as a GAN model (a seed makes an image)",
        "ddpm": "Generate lists it with a class picker instead of the prompt",
        "gpt": "Chat lists it (it continues the text you type)",
        "lora-chat": "Chat lists it (the merged model; the LoRA adapter alone is in its adapter "
                     "folder)",
        "dpo": "Chat lists it (it answers the prompt you type)",
        "cnn": _CLASSIFY, "distill": _CLASSIFY + "; it is the distilled student",
        "federated": _CLASSIFY + "; it is the global (averaged) model",
        "prune": _CLASSIFY + "; it is the pruned, fine-tuned CNN (its removed weights are "
                             "zeros)",
        "lora-sd": "Generate lists it among the LoRAs (kohya's format: A1111, Forge and ComfyUI "
                   "load it too)"}
# the lessons whose export is a classifier
CLASSIFIERS = ("cnn", "distill", "federated", "prune")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._ -]{0,79}$")


@dataclass(frozen=True)
class Exported:
    """Where an export went and the sentence that tells the student how to use it (without
    the folder: it is ``path``)."""

    name: str
    path: Path
    files: tuple[Path, ...]
    message: str


def can_export(lesson: str) -> bool:
    return lesson in EXPORTS


def check_name(name: str) -> str:
    name = str(name).strip()
    if not _NAME.match(name):
        raise UserFacingError(
            f"{name!r} cannot name a model: use letters, digits, spaces, dots, dashes or "
            "underscores (up to 80), starting with a letter or digit.")
    return name


def target(lesson: str, models_dir: Path, name: str) -> Path:
    """The folder ``lesson``'s export called ``name`` goes to; a lesson without an export, a
    bad name or a name already taken is refused (``studio train --export`` asks before
    training)."""
    if lesson not in EXPORTS:
        known = ", ".join(EXPORTS)
        raise UserFacingError(f"The {lesson} lesson makes no model to use elsewhere; {known} do.")
    name = check_name(name)
    folder = Path(models_dir) / EXPORTS[lesson][0] / name
    if folder.exists():
        raise UserFacingError(f"A model called {name} exists already ({folder}): choose another "
                              "name, or delete that one in Models first.")
    return folder


def export_trainer(trainer: Any, models_dir: Path, name: str) -> Exported:
    """Write ``trainer``'s model into the library as ``name``."""
    lesson = trainer.info.key

    def write(folder: Path) -> list[Path]:
        if lesson == "cyclegan":
            return list(trainer.export_generators(folder))
        if lesson in ("gpt", "ddpm", "lora-chat", "dpo", "lora-sd"):
            return list(trainer.export_model(folder))
        if lesson in CLASSIFIERS:
            from studio.pipelines.train.classifier_models import write_classifier

            return write_classifier(folder, trainer.classifier_spec(), trainer.classifier_state(),
                                    lesson, trainer.step_count,
                                    trainer.config.get("dataset", "digits"))
        return list(trainer.export_generator(folder))

    return _export(lesson, write, models_dir, name)


def _export(lesson: str, write: Callable[[Path], list[Path]], models_dir: Path,
            name: str) -> Exported:
    """``write(folder)`` into a hidden folder, renamed to ``<models>/<sub>/<name>`` when whole."""
    folder = target(lesson, models_dir, name)
    name = folder.name
    new = folder.with_name(f".{name}.exporting")
    try:
        written = write(new)
        new.rename(folder)
    except OSError as exc:
        raise UserFacingError(f"Could not write the model into {folder.parent}: "
                              f"{exc.strerror or exc}. Nothing was exported.") from exc
    finally:
        if new.exists():  # a ddpm export has sub-folders (unet/, scheduler/)
            shutil.rmtree(new, ignore_errors=True)
    files = tuple(folder / Path(f).name for f in written)
    return Exported(name, folder, files, f"Exported {name}: {USES[lesson]}.")


def _read_checkpoint(run: Any, tries: int = 10) -> tuple[dict[str, Any], dict[str, Any]]:
    """The run's checkpoint, read without touching the folder: the run may be on screen, its
    session swapping a new checkpoint in (for a moment there is none); a few short retries."""
    import time

    from studio.pipelines.train.checkpoint import load_state
    from studio.pipelines.train.runs import CHECKPOINT_JSON

    for _ in range(tries):
        try:
            return load_state(run.path / CHECKPOINT_JSON)
        except (OSError, ValueError):
            time.sleep(0.05)
    return run.load_checkpoint()  # an older run's layout, or the reason it cannot be read


def export_run(run_path: Path, models_dir: Path, name: str = "") -> Exported:
    """Export the model of a saved run (its last checkpoint) as ``name`` (the run's id when
    empty)."""
    from studio.pipelines.train.runs import Run

    run = Run(Path(run_path))
    if run.lesson not in EXPORTS:
        known = ", ".join(EXPORTS)
        raise UserFacingError(f"The {run.lesson} lesson makes no model to use elsewhere; {known} "
                              "do.")
    if not run.has_checkpoint:
        raise UserFacingError(f"The run {run.run_id} has no checkpoint yet: train it a few steps "
                              "(Play, then Pause) and export again.")
    # From the checkpoint's tensors alone: the lesson's data set is not read again.
    state, doc = _read_checkpoint(run)

    def write(folder: Path) -> list[Path]:
        if run.lesson == "cyclegan":
            from studio.pipelines.train.cyclegan import write_generators

            return write_generators(folder, state["G_A"], state["G_B"])
        if run.lesson == "gpt":
            from studio.pipelines.train.text_lessons import write_gpt

            return write_gpt(folder, state["model"], doc["config"], state["tokenizer"])
        if run.lesson == "lora-chat":
            from studio.pipelines.train.lora_chat import write_lora_chat

            return write_lora_chat(folder, {**state, "config": doc["config"]})
        if run.lesson == "lora-sd":
            from studio.pipelines.train.lora_sd_lesson import write_lora_export

            return write_lora_export(folder, state)
        if run.lesson == "dpo":
            from studio.pipelines.train.dpo import CHAT_TEMPLATE, EOS, byte_tokenizer
            from studio.pipelines.train.text_lessons import write_gpt

            return write_gpt(folder, state["model"], doc["config"], byte_tokenizer().to_str(),
                             chat_template=CHAT_TEMPLATE, eos_token=EOS)
        if run.lesson == "ddpm":
            from studio.pipelines.train.ddpm import export_state

            return export_state(state, folder)
        if run.lesson in CLASSIFIERS:
            from studio.pipelines.train.classifier_models import (
                checkpoint_classifier,
                write_classifier,
            )

            if run.lesson == "prune":
                from studio.pipelines.train.prune import checkpoint_pruned

                spec, weights = checkpoint_pruned(state)
            else:
                spec, weights = checkpoint_classifier(run.lesson, state, doc["config"])
            return write_classifier(folder, spec, weights, run.lesson, int(doc["step"]),
                                    doc["config"].get("dataset", "digits"))
        from studio.pipelines.train.dcgan import write_generator

        return write_generator(folder, state["generator"], doc["config"],
                               int(state["channels"]), int(doc["step"]), int(doc["seed"]))

    return _export(run.lesson, write, models_dir, name or run.run_id)
