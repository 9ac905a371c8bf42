"""Putting a Transform result's settings back into the panel ("Reuse parameters").

The :class:`~studio.media.transform_reuse.TransformReuse` comes from the Gallery, or from the
dialog shown when an image is dropped on the window; it was read off the result's ``studio``
PNG chunk and names the picture to open (the recorded source, or the result when that is gone).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from studio.core.requests import Img2ImgRequest, TransformRequest
from studio.media.transform_reuse import TransformReuse

if TYPE_CHECKING:
    from studio.ui.panels.transform.panel import TransformPanel

MODE_NAMES = {"cyclegan": "CycleGAN", "img2img": "img2img", "inpaint": "inpaint",
              "upscale": "upscale", "edit": "Edit with instructions"}


def restore(panel: TransformPanel, reuse: TransformReuse) -> bool:
    """Show ``reuse`` in the TransformPanel ``panel``: mode, picture, mask, model and settings.
    False when the picture cannot be opened (the panel then shows why)."""
    from studio.ui.panels.transform.panel import read_qimage

    panel.set_mode(reuse.mode)
    if not panel.open_image(reuse.image):
        return False
    notes = list(reuse.notes)
    request = reuse.request
    if reuse.mode == "cyclegan":
        notes += _restore_cyclegan(panel, request)
    elif reuse.mode == "upscale" and not isinstance(request, Img2ImgRequest):
        panel.upscale.apply(request)
    else:
        if reuse.mode == "upscale":  # SD upscale: its own settings, the rest img2img's
            panel.upscale.apply(request)
        panel.sd_picker.select_model(request.model)  # listed even if a scan does not find it
        panel.diffusion.apply(request)
        if reuse.mask is not None:
            mask = read_qimage(reuse.mask)
            if mask.isNull():
                notes.append(f"The mask {reuse.mask.name} could not be read — paint the area to "
                             "repaint again.")
            else:
                panel.canvas.set_mask(mask)
    name = reuse.result.name if reuse.result else reuse.image.name
    panel.status.setText(" ".join([f"Settings of {name} ({MODE_NAMES[reuse.mode]}) restored.",
                                   *notes]))
    return True


def _restore_cyclegan(panel: TransformPanel, request: TransformRequest) -> list[str]:
    notes = []
    picker, options = panel.cyclegan, panel.cyclegan_options
    waiting = False
    if not picker.select_path(request.model):
        if picker.scanning:
            # The panel is still looking for models: select it and its direction when done.
            waiting = True
            picker.refresh(select=request.model)
        else:
            notes.append(f"The CycleGAN model {Path(request.model).name} is not installed any "
                         "more — pick another one.")
    options.select_direction(request.direction, wait_for_model=waiting)
    options.max_side.setValue(request.max_side)
    return notes
