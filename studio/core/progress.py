"""Where a batch job's progress stands, in the words people use ("image 2/4 · step 4/8"): the
queue drawer, the preview's caption and the command line's progress say it the same way. No Qt,
no torch.
"""

from __future__ import annotations


def batch_position(step: int, total: int, count: int, steps: int = 0
                   ) -> tuple[int, int, int, int]:
    """Where a batch job's progress stands: ``(image, image_step, image_steps, count)``.

    Image jobs report the steps of the whole batch (``step`` of ``count × steps``, see
    ``run_common.step_callback``); people think in "image 2 of 4, step 4 of 8". ``image`` counts
    from 1. A total that does not divide by ``count`` is read as one image. ``steps`` (the
    request's) is what the user asked for: a scheduler that runs a different number of model
    calls per image (PNDM runs 9 for 8 steps) is shown on that scale, so 8 steps never read 9.
    """
    count = max(1, int(count or 1))
    if total <= 0 or total % count:
        return 1, step, total, 1
    per = total // count
    image = min(count, max(1, (step - 1) // per + 1)) if step > 0 else 1
    image_step = step - (image - 1) * per
    if steps > 0 and per != steps:
        image_step = min(steps, max(1 if image_step > 0 else 0, round(image_step * steps / per)))
        per = steps
    return image, image_step, per, count


def batch_progress_text(step: int, total: int, count: int, steps: int = 0) -> str:
    """'image 2/4 · step 4/8', or 'step 4/8' for a single image."""
    image, image_step, per, count = batch_position(step, total, count, steps)
    if count > 1:
        return f"image {image}/{count} · step {image_step}/{per}"
    return f"step {image_step}/{per}"
