"""Every lesson, by its `studio train` name, with its title and one-line summary.

Importing this module imports no torch: ``studio train --list``, a misspelt lesson name and the
lesson list read :data:`LESSONS`; a lesson's module (and torch) is imported only by
:func:`lesson_class`, when the lesson is used. Each lesson's :class:`LessonInfo` takes its title
and summary from here, so the two never disagree.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TypedDict

from studio.pipelines.train.base import InvalidParameter, Trainer


@dataclass(frozen=True)
class Lesson:
    """A lesson as the list shows it, and where its trainer class lives ("module:Class")."""

    key: str
    title: str
    summary: str
    path: str


def _lessons(*rows: tuple[str, str, str, str]) -> dict[str, Lesson]:
    return {row[0]: Lesson(*row) for row in rows}


#: lesson key -> Lesson, in the order the window lists them.
LESSONS: dict[str, Lesson] = _lessons(
    ("optimizers", "Optimizers race",
     "SGD, Momentum, Nesterov, RMSProp, Adam and AdamW race down a loss surface.",
     "studio.pipelines.train.optimizers:OptimizerRace"),
    ("classifier-2d", "A neural net on 2D data",
     "Watch a small network bend its decision boundary around moons, spirals, XOR…",
     "studio.pipelines.train.classifier2d:Classifier2D"),
    ("autoencoder", "Autoencoder",
     "Squeeze small images (digits, or faces) through a 2-number code and rebuild them.",
     "studio.pipelines.train.autoencoders:AutoencoderTrainer"),
    ("denoising-autoencoder", "Denoising autoencoder",
     "Rebuild clean digits (or faces) from noisy ones.",
     "studio.pipelines.train.autoencoders:DenoisingAutoencoderTrainer"),
    ("vae", "Variational autoencoder (VAE)",
     "Learn a smooth latent space you can sample from; watch β trade sharpness for order.",
     "studio.pipelines.train.autoencoders:VAETrainer"),
    ("gan-2d", "GAN on 2D data",
     "A generator and a discriminator play cat and mouse on a 2D point cloud.",
     "studio.pipelines.train.gan2d:GAN2D"),
    ("wgan-gp-2d", "WGAN-GP on 2D data",
     "A critic measures the distance between the distributions; the generator shrinks it.",
     "studio.pipelines.train.gan2d:WGANGP2D"),
    ("ddpm-2d", "Diffusion (DDPM) on 2D data",
     "Learn to undo noise one small step at a time.",
     "studio.pipelines.train.ddpm2d:DDPM2D"),
    ("cnn", "CNN: classify images",
     "A small convolutional network learns to tell digits, shapes, photos or your own images "
     "apart.",
     "studio.pipelines.train.cnn:CNNTrainer"),
    ("dcgan", "DCGAN: generate images",
     "A convolutional generator learns to draw digits, faces or your own images by fooling a "
     "discriminator.",
     "studio.pipelines.train.dcgan:DCGANTrainer"),
    ("cyclegan", "CycleGAN: translate images",
     "Two generators learn to turn one kind of image into another and back, from unpaired "
     "examples (or your two folders).",
     "studio.pipelines.train.cyclegan:CycleGANTrainer"),
    ("tokenizer", "Tokenizer (byte-level BPE)",
     "Train a GPT-2-style tokenizer live: watch merges appear and tokens per word fall.",
     "studio.pipelines.train.text_lessons:TokenizerLesson"),
    ("char-rnn", "RNN: an LSTM writes text",
     "A recurrent network learns to write Shakespeare (or your text) one character at a time.",
     "studio.pipelines.train.text_lessons:CharRNNTrainer"),
    ("gpt", "GPT: a small transformer",
     "A tiny GPT-2 learns the same text; see its attention heads, then chat with it.",
     "studio.pipelines.train.text_lessons:GPTTrainer"),
    ("lora-chat", "LoRA: teach a chat model",
     "Fine-tune a chat model with small LoRA adapters on questions and answers; compare its "
     "answers before and after, then chat with it.",
     "studio.pipelines.train.lora_chat:LoraChatLesson"),
    ("dpo", "DPO: learn from preferences",
     "A small GPT learns which of two answers people prefer (DPO with TRL); compare its "
     "answers before and after.",
     "studio.pipelines.train.dpo:DPOLesson"),
    ("lora-sd", "LoRA: your style in Generate",
     "Train a LoRA for a Stable Diffusion 1.x, SDXL, FLUX.1, SD 3.5 or Qwen-Image model on your "
     "own images; watch samples arrive, then use it in Generate.",
     "studio.pipelines.train.lora_sd_lesson:LoraSDLesson"),
    ("ddpm", "Image diffusion (DDPM)",
     "A small UNet learns to turn noise into digits, faces or your own images; then draw new "
     "ones in Generate.",
     "studio.pipelines.train.ddpm:DDPMImageTrainer"),
    ("distill", "Distillation: a small student",
     "A small student learns from a large teacher's soft labels, beside a twin that sees only "
     "the true labels.",
     "studio.pipelines.train.distill:DistillTrainer"),
    ("federated", "Federated learning",
     "Several clients train on their own digits and share only weights; FedAvg or FedProx "
     "merges them.",
     "studio.pipelines.train.federated:FederatedTrainer"),
    ("quantize", "Quantization: fewer bits",
     "The digits CNN, trained, then stored in float16, bfloat16, float8, int8 and int4: bytes, "
     "speed and accuracy of each, and the rounding grid.",
     "studio.pipelines.train.quantize:QuantizeLesson"),
    ("prune", "Pruning: fewer weights",
     "The digits CNN, trained, then pruned weight by weight or filter by filter, and "
     "fine-tuned: accuracy against sparsity, and which filters went.",
     "studio.pipelines.train.prune:PruneLesson"),
)
#: lesson key -> "module:Class".
LESSON_PATHS: dict[str, str] = {key: lesson.path for key, lesson in LESSONS.items()}


def lesson(key: str) -> Lesson:
    """The lesson called ``key`` (no import); an unknown name lists the known ones."""
    try:
        return LESSONS[key]
    except KeyError:
        raise InvalidParameter(
            f"Unknown lesson {key!r}; choose one of: {', '.join(LESSONS)}.") from None


class LessonText(TypedDict):
    """The words of a lesson the registry holds (a lesson's module adds the rest)."""

    key: str
    title: str
    summary: str


def lesson_text(key: str) -> LessonText:
    """``title`` and ``summary`` of a lesson, for its :class:`LessonInfo`."""
    entry = LESSONS[key]
    return {"key": key, "title": entry.title, "summary": entry.summary}


def lesson_class(key: str) -> type[Trainer]:
    """The trainer class of a lesson (imports its module, and torch); an unknown name lists the
    known ones."""
    module, _, name = lesson(key).path.partition(":")
    return getattr(importlib.import_module(module), name)


def lesson_keys() -> list[str]:
    return list(LESSONS)
