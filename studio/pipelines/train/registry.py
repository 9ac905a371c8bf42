"""Every lesson, by its `studio train` name. Modules are imported only when a lesson is used."""

from __future__ import annotations

import importlib

from studio.pipelines.train.base import InvalidParameter, Trainer

#: lesson key -> "module:Class", in the order the window lists them.
LESSON_PATHS: dict[str, str] = {
    "optimizers": "studio.pipelines.train.optimizers:OptimizerRace",
    "classifier-2d": "studio.pipelines.train.classifier2d:Classifier2D",
    "autoencoder": "studio.pipelines.train.autoencoders:AutoencoderTrainer",
    "denoising-autoencoder": "studio.pipelines.train.autoencoders:DenoisingAutoencoderTrainer",
    "vae": "studio.pipelines.train.autoencoders:VAETrainer",
    "gan-2d": "studio.pipelines.train.gan2d:GAN2D",
    "wgan-gp-2d": "studio.pipelines.train.gan2d:WGANGP2D",
    "ddpm-2d": "studio.pipelines.train.ddpm2d:DDPM2D",
}


def lesson_class(key: str) -> type[Trainer]:
    """The trainer class of a lesson; an unknown name lists the known ones."""
    try:
        path = LESSON_PATHS[key]
    except KeyError:
        raise InvalidParameter(
            f"Unknown lesson {key!r}; choose one of: {', '.join(LESSON_PATHS)}.") from None
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)


def lesson_keys() -> list[str]:
    return list(LESSON_PATHS)
