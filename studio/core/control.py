"""What a request's ControlNets are (issue 14): the checked units and the preprocessors' names.

The work is in :mod:`studio.pipelines.diffusion.controlnet`; this is the part every front end
shares to check a request before it is queued (the window, ``studio generate --controlnet`` and
the server). No torch, no Qt.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

#: at most this many ControlNets guide one image
MAX_CONTROLNETS = 3
#: preprocessor key → what it does (for the window's tooltips and ``--help``)
PREPROCESSORS = {
    "none": "the image is already a control map",
    "canny": "Canny edges, white on black",
    "softedge": "soft edges (gradient of the softened image)",
    "lineart": "line art (lineart_standard: a blurred copy minus the image)",
    "invert": "black-on-white drawing → white on black (scribbles)",
    "depth": "depth map, near = white (Depth Anything or DPT from the Hugging Face cache)",
    "openpose": "the person's pose as an OpenPose skeleton (ViTPose from the Hugging Face cache)",
}
@dataclass(frozen=True)
class ControlUnit:
    """One ControlNet of a request, checked (see :func:`units`)."""

    model: str
    image: str
    preprocess: str = "none"
    weight: float = 1.0
    start: float = 0.0
    end: float = 1.0

    def as_dict(self) -> dict[str, Any]:
        return {"model": self.model, "image": self.image, "preprocess": self.preprocess,
                "weight": self.weight, "start": self.start, "end": self.end}


def units(raw: list[dict[str, Any]]) -> list[ControlUnit]:
    """The request's ``controlnets`` as units; a wrong one raises ValueError with a sentence."""
    if len(raw) > MAX_CONTROLNETS:
        raise ValueError(f"At most {MAX_CONTROLNETS} ControlNets at once, not {len(raw)}.")
    out = []
    for number, item in enumerate(raw, 1):
        if not isinstance(item, dict):
            raise ValueError(f"ControlNet {number} must be an object with a model and an image.")
        unknown = set(item) - {"model", "image", "preprocess", "weight", "start", "end"}
        if unknown:
            raise ValueError(f"ControlNet {number} has unknown fields: {', '.join(sorted(unknown))}.")
        model = str(item.get("model") or "").strip()
        if not model:
            raise ValueError(f"ControlNet {number} names no model.")
        image = str(item.get("image") or "").strip()
        if not image:
            raise ValueError(f"ControlNet {number} ({model}) has no control image: choose one.")
        preprocess = str(item.get("preprocess") or "none")
        if preprocess not in PREPROCESSORS:
            raise ValueError(f"ControlNet {number}: unknown preprocessor {preprocess!r}; use one "
                             f"of {', '.join(PREPROCESSORS)}.")
        try:
            weight = float(item.get("weight", 1.0))
            start = float(item.get("start", 0.0))
            end = float(item.get("end", 1.0))
        except (TypeError, ValueError):
            raise ValueError(f"ControlNet {number}: weight, start and end must be numbers."
                             ) from None
        if not 0.0 <= weight <= 2.0:
            raise ValueError(f"ControlNet {number}: the weight must be between 0 and 2, not "
                             f"{weight}.")
        if not 0.0 <= start < end <= 1.0:
            raise ValueError(f"ControlNet {number}: it must start before it ends, both between "
                             f"0 and 1 (start {start}, end {end}).")
        out.append(ControlUnit(model, image, preprocess, weight, start, end))
    return out


def parse_cli(spec: str, preprocess: str = "none") -> dict[str, Any]:
    """``MODEL:IMAGE[:WEIGHT]`` (``studio generate --controlnet``) as a request item; a drive
    letter (``C:/pics/a.png``) is not a separator."""
    import re

    rest, weight = spec, 1.0
    head, sep, tail = spec.rpartition(":")
    if sep and re.fullmatch(r"\d+(\.\d*)?|\.\d+", tail.strip()):
        rest, weight = head, float(tail)
    for i, char in enumerate(rest):
        drive = i == 1 and rest[0].isalpha() and rest[2:3] in ("/", "\\")
        if char == ":" and not drive:
            model, image = rest[:i], rest[i + 1:]
            if model.strip() and image.strip():
                return {"model": model.strip(), "image": image.strip(),
                        "preprocess": preprocess, "weight": weight}
            break
    raise ValueError(f"--controlnet {spec!r}: write MODEL:IMAGE or MODEL:IMAGE:WEIGHT (a "
                     "ControlNet's name or folder, the control image, and a weight from 0 to 2).")


#: A1111's ControlNet extension names for our preprocessors (metadata), and back
A1111_MODULES = {"none": "none", "canny": "canny", "softedge": "softedge_pidinet",
                 "lineart": "lineart_standard (from white bg & black line)",
                 "invert": "invert (from white bg & black line)",
                 "depth": "depth_anything_v2", "openpose": "openpose"}
_FROM_A1111 = {v: k for k, v in A1111_MODULES.items()} | {"lineart_standard": "lineart",
                                                          "invert": "invert",
                                                          "softedge_hed": "softedge",
                                                          "scribble_xdog": "lineart",
                                                          "depth_midas": "depth",
                                                          "depth_anything": "depth",
                                                          "depth_zoe": "depth",
                                                          "openpose_full": "openpose"}


def from_infotext(parsed: dict[str, str]) -> list[dict[str, Any]]:
    """The ControlNet units an A1111 infotext names (``ControlNet 0``, ``ControlNet 1`` …), without
    their images (A1111 does not store them): the model's name, the preprocessor (one Studio has,
    else ``none``), weight, start and end."""
    import re

    found = []
    for key in sorted(k for k in parsed if re.fullmatch(r"ControlNet \d+", k)):
        fields = dict(re.findall(r"\s*([\w ]+):\s*([^,]*)", parsed[key]))
        model = re.sub(r"\s*\[[0-9a-f]{8,}\]$", "", fields.get("Model", "").strip())
        if not model or model == "None":
            continue

        def number(name: str, default: float, fields: dict[str, str] = fields) -> float:
            try:
                return float(fields.get(name, default))
            except ValueError:
                return default

        found.append({"model": model, "image": "",
                      "preprocess": _FROM_A1111.get(fields.get("Module", "none").strip(), "none"),
                      "weight": number("Weight", 1.0), "start": number("Guidance Start", 0.0),
                      "end": number("Guidance End", 1.0)})
    return found
