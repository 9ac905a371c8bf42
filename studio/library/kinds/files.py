"""Kinds the catalog's walk recognises from a file's header (:mod:`studio.library.classify`):
LoRAs, textual-inversion embeddings and TAESD preview decoders, and what is none of them."""

from __future__ import annotations

from studio.library.kinds import ModelKind

KINDS = (
    ModelKind("preview", "Preview decoder (TAESD)", 7,
              cli_use="Studio uses it for live previews in the window (Settings → Live "
                      "preview)."),
    ModelKind("lora", "LoRA", 8,
              cli_use="Apply it to a Stable Diffusion model with '--lora {spec}' in 'studio "
                      "generate' or 'studio img2img'.",
              where=" — add it to a model in Generate's LoRA section or with a <lora:…> tag"),
    ModelKind("embedding", "Textual inversion", 9,
              cli_use="Write its name ({name}) in a prompt of 'studio generate' or 'studio "
                      "img2img'.",
              where=" — write its name ({name}) in a prompt"),
    ModelKind("unknown", "Unknown", 99),
)
