"""ControlNet's model-based preprocessors (issue 14): a depth map and an OpenPose skeleton, made
with transformers models from the Hugging Face cache (see :mod:`studio.library.preprocessor_models`).

- ``depth``: Depth Anything / DPT (``AutoModelForDepthEstimation``) predicts relative inverse
  depth; it is resized to the image and scaled to 0–255, near = white, as A1111's depth modules
  give it to depth ControlNets.
- ``openpose``: ViTPose (``VitPoseForPoseEstimation``) finds the 17 COCO keypoints of the person
  in the image (the whole image is the person's box: one person, as in a reference pose), drawn
  as OpenPose's 18-point skeleton in OpenPose's colours on black, which openpose ControlNets
  were trained on. Keypoints it is unsure of (score < :data:`MIN_SCORE`) are left out.

The model is loaded for the job and released after it (they are small next to the image model).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from studio.core.jobs import UserFacingError

if TYPE_CHECKING:
    from PIL import Image

#: keypoints scored below this are not drawn
MIN_SCORE = 0.3
#: OpenPose's 18 points from COCO's 17 (None: the neck, the middle of the shoulders)
_OPENPOSE_FROM_COCO = (0, None, 6, 8, 10, 5, 7, 9, 12, 14, 16, 11, 13, 15, 2, 1, 4, 3)
#: OpenPose's limbs (pairs of its points) and its colours, one per limb and point
_LIMBS = ((1, 2), (1, 5), (2, 3), (3, 4), (5, 6), (6, 7), (1, 8), (8, 9), (9, 10), (1, 11),
          (11, 12), (12, 13), (1, 0), (0, 14), (14, 16), (0, 15), (15, 17))
_COLOURS = ((255, 0, 0), (255, 85, 0), (255, 170, 0), (255, 255, 0), (170, 255, 0),
            (85, 255, 0), (0, 255, 0), (0, 255, 85), (0, 255, 170), (0, 255, 255),
            (0, 170, 255), (0, 85, 255), (0, 0, 255), (85, 0, 255), (170, 0, 255),
            (255, 0, 255), (255, 0, 170), (255, 0, 85))


def _load(name: str, folder: Path | None, processor_class: Any, model_class: Any
          ) -> tuple[Any, Any]:
    """The processor and the model (in eval mode) of preprocessor ``name``, from ``folder`` or
    the cache; a missing or broken model is a sentence with its download line."""
    from studio.library import preprocessor_models

    found = folder or preprocessor_models.find(name)
    if found is None:
        raise UserFacingError(preprocessor_models.needs(name))
    try:
        processor = processor_class.from_pretrained(str(found), local_files_only=True)
        model = model_class.from_pretrained(str(found), local_files_only=True)
    except (OSError, ValueError) as exc:
        raise UserFacingError(
            f"The '{name}' preprocessor's model in {found} cannot be loaded "
            f"({str(exc).splitlines()[0][:200]}); download it again with: "
            f"{preprocessor_models.MODELS[name].download}") from None
    return processor, model.eval()


def depth_map(image: Image.Image, folder: Path | None = None) -> Image.Image:
    """The depth map of ``image`` (RGB PIL): near is white, far is black."""
    import numpy as np
    import torch
    from PIL import Image
    from transformers import AutoImageProcessor, AutoModelForDepthEstimation

    processor, model = _load("depth", folder, AutoImageProcessor, AutoModelForDepthEstimation)
    with torch.no_grad():
        out = model(**processor(images=image, return_tensors="pt"))
    depth = processor.post_process_depth_estimation(
        out, target_sizes=[(image.height, image.width)])[0]["predicted_depth"]
    values = depth.float().numpy()
    low, high = float(values.min()), float(values.max())
    scaled = (values - low) / (high - low) if high > low else np.zeros_like(values)
    return Image.fromarray((scaled * 255).round().astype(np.uint8)).convert("RGB")


def pose_keypoints(image: Image.Image, folder: Path | None = None) -> tuple[Any, Any]:
    """The 17 COCO keypoints (x, y in pixels) and their scores of the person in ``image``."""
    import torch
    from transformers import AutoProcessor, VitPoseForPoseEstimation

    processor, model = _load("openpose", folder, AutoProcessor, VitPoseForPoseEstimation)
    boxes = [[[0.0, 0.0, float(image.width), float(image.height)]]]
    inputs = processor(images=image, boxes=boxes, return_tensors="pt")
    with torch.no_grad():
        out = model(**inputs)
    person = processor.post_process_pose_estimation(out, boxes=boxes)[0][0]
    return person["keypoints"].float().numpy(), person["scores"].float().numpy()


def draw_openpose(keypoints: Any, scores: Any, width: int, height: int) -> Any:
    """COCO keypoints drawn as OpenPose's skeleton (limbs at 60 % colour, points at full), on
    black."""
    from PIL import Image, ImageDraw

    points: list[tuple[float, float] | None] = []
    for coco in _OPENPOSE_FROM_COCO:
        if coco is None:  # the neck: between the shoulders, when both are seen
            seen = scores[5] >= MIN_SCORE and scores[6] >= MIN_SCORE
            points.append(((keypoints[5][0] + keypoints[6][0]) / 2,
                           (keypoints[5][1] + keypoints[6][1]) / 2) if seen else None)
        else:
            points.append((float(keypoints[coco][0]), float(keypoints[coco][1]))
                          if scores[coco] >= MIN_SCORE else None)
    canvas = Image.new("RGB", (width, height))
    draw = ImageDraw.Draw(canvas)
    stick = max(2, round(min(width, height) / 128))
    for (a, b), colour in zip(_LIMBS, _COLOURS, strict=False):
        start, end = points[a], points[b]
        if start is not None and end is not None:
            draw.line([start, end], width=stick,
                      fill=tuple(round(c * 0.6) for c in colour))
    for point, colour in zip(points, _COLOURS, strict=True):
        if point is not None:
            x, y = point
            draw.ellipse([x - stick, y - stick, x + stick, y + stick], fill=colour)
    return canvas


def pose_map(image: Image.Image, folder: Path | None = None) -> Image.Image:
    """The OpenPose skeleton of the person in ``image``."""
    keypoints, scores = pose_keypoints(image, folder)
    return draw_openpose(keypoints, scores, image.width, image.height)
