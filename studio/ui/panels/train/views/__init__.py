"""Lesson views: the lesson-specific plots of the Train workspace, one module per lesson family.

Each view is a QWidget subclass of :class:`studio.ui.panels.train.views.base.LessonView`; the
workspace builds the one for the chosen lesson from this table.
"""

from __future__ import annotations

import importlib

#: lesson key -> "module:Class"
VIEW_PATHS: dict[str, str] = {
    "optimizers": "studio.ui.panels.train.views.optimizers:OptimizerView",
    "classifier-2d": "studio.ui.panels.train.views.classifier:ClassifierView",
    "autoencoder": "studio.ui.panels.train.views.autoencoders:AutoencoderView",
    "denoising-autoencoder": "studio.ui.panels.train.views.autoencoders:AutoencoderView",
    "vae": "studio.ui.panels.train.views.autoencoders:AutoencoderView",
    "gan-2d": "studio.ui.panels.train.views.gan:GANView",
    "wgan-gp-2d": "studio.ui.panels.train.views.gan:GANView",
    "ddpm-2d": "studio.ui.panels.train.views.ddpm:DDPMView",
    "cnn": "studio.ui.panels.train.views.cnn:CNNView",
    "dcgan": "studio.ui.panels.train.views.dcgan:DCGANView",
    "cyclegan": "studio.ui.panels.train.views.cyclegan:CycleGANView",
    "tokenizer": "studio.ui.panels.train.views.text:TokenizerView",
    "char-rnn": "studio.ui.panels.train.views.text:LanguageModelView",
    "gpt": "studio.ui.panels.train.views.text:LanguageModelView",
    "dpo": "studio.ui.panels.train.views.preferences:PreferenceView",
    "ddpm": "studio.ui.panels.train.views.ddpm_images:DDPMImageView",
    "lora-chat": "studio.ui.panels.train.views.lora_chat:LoraChatView",
    "distill": "studio.ui.panels.train.views.distill:DistillView",
    "federated": "studio.ui.panels.train.views.federated:FederatedView",
    "quantize": "studio.ui.panels.train.views.compress:QuantizeView",
    "prune": "studio.ui.panels.train.views.compress:PruneView",
    "lora-sd": "studio.ui.panels.train.views.lora_sd:LoraSDView",
}


def view_class(key: str):
    module, _, name = VIEW_PATHS[key].partition(":")
    return getattr(importlib.import_module(module), name)
