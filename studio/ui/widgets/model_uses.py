"""Which picked models fit which job, for greying them out in a model picker with the reason.

The services refuse the same models with the same sentences when asked anyway (a reused request,
the command line): txt2img for instruction editors, img2img for editors and families without an
image-to-image pipeline, Edit with instructions for every family that does not edit. Here only
what the library entry already says is judged: a model of unknown family is never greyed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from studio.library.families import FAMILIES, family

if TYPE_CHECKING:
    from studio.ui.widgets.model_picker import PickedModel


def _editors() -> str:
    return " or ".join(f.label for f in FAMILIES.values() if f.edit)


def for_generate(entry: PickedModel) -> str:
    """Why ``entry`` cannot make pictures from a prompt in Generate ("" when it can)."""
    found = family(getattr(entry, "family", ""))
    if found is not None and found.edit:
        return (f"{found.label} edits pictures from instructions: use it in Transform → "
                "Edit with instructions.")
    return ""


def for_img2img(entry: PickedModel) -> str:
    """Why ``entry`` cannot take a picture as a start (image to image, inpaint, SD upscale)."""
    if getattr(entry, "format", "") == "gan":
        return "A GAN trained in Studio draws from a seed only: use it in Generate."
    if getattr(entry, "family", "") == "ddpm":
        return "A model from Train's image diffusion lesson draws from noise only: use it in " \
               "Generate."
    found = family(getattr(entry, "family", ""))
    if found is not None and found.edit:
        return f"{found.label} edits pictures from instructions: use the Edit tab."
    if found is not None and not found.img2img:
        return f"{found.label} has no image-to-image pipeline: use it in Generate."
    return ""


def for_edit(entry: PickedModel) -> str:
    """Why ``entry`` cannot edit a picture from instructions ("" when it can)."""
    if getattr(entry, "format", "") == "gan" or getattr(entry, "family", "") == "ddpm":
        return f"It does not edit from instructions: choose {_editors()}."
    found = family(getattr(entry, "family", ""))
    if found is not None and not found.edit:
        return f"{found.label} does not edit from instructions: choose {_editors()}."
    return ""
