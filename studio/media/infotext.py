"""AUTOMATIC1111-compatible ``parameters`` text ("infotext"): write it, parse it. No Qt, no torch.

The format, as AUTOMATIC1111's ``create_infotext`` writes it and ``parse_generation_parameters``
reads it::

    a prompt, possibly
    over several lines
    Negative prompt: the negative prompt
    Steps: 20, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 7, Seed: 1, Size: 512x512, ...

The last line holds ``Key: value`` pairs separated by ``, ``; a value containing a comma, colon,
quote or newline is written as a JSON string. Every tool that reads A1111 images (CivitAI, image
browsers, A1111 itself) understands this text, which is why Studio writes it too.
"""

from __future__ import annotations

import json
import re
from typing import Any

# Same grammar as A1111's re_param: a key (word characters, spaces, '-', '/'), a colon, then a
# JSON-quoted value or anything up to the next comma.
_PARAM = re.compile(r'\s*(\w[\w \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)')
_SIZE = re.compile(r"^(\d+)x(\d+)$")


def quote(value: Any) -> str:
    """A value as A1111 writes it: plain, or JSON-quoted when it would break the line's grammar."""
    text = str(value)
    if any(c in text for c in ',:"\n'):
        return json.dumps(text, ensure_ascii=False)
    return text


def unquote(text: str) -> str:
    if len(text) >= 2 and text[0] == '"' and text[-1] == '"':
        try:
            value = json.loads(text)
        except ValueError:
            return text
        return value if isinstance(value, str) else text
    return text


def format_number(value: float | int) -> str:
    """Numbers the way A1111 infotexts show them: ``7`` for 7.0, ``7.5`` stays ``7.5``."""
    f = float(value)
    if f.is_integer():
        return str(int(f))
    return repr(f)


def format_infotext(prompt: str, negative_prompt: str, params: dict[str, Any]) -> str:
    """Join prompt, negative prompt and the parameter line; ``None`` / ``""`` values are left out.

    A key whose value equals the key itself is written bare, as A1111 does for flags.
    """
    pairs = []
    for key, value in params.items():
        if value is None or value == "":
            continue
        pairs.append(key if key == value else f"{key}: {quote(value)}")
    negative = f"\nNegative prompt: {negative_prompt}" if negative_prompt else ""
    return f"{prompt}{negative}\n{', '.join(pairs)}".strip()


def parse_infotext(text: str) -> dict[str, str]:
    """Parse a ``parameters`` text the way A1111's ``parse_generation_parameters`` does.

    Returns ``{"Prompt": ..., "Negative prompt": ..., "Steps": "20", ...}`` with every value a
    string; a ``W x H`` value such as ``Size: 512x768`` becomes ``Size-1`` / ``Size-2``, like A1111.
    A1111's defaults for missing keys are not filled in: absent means absent.
    """
    res: dict[str, str] = {}
    *lines, last = (text or "").strip().split("\n")
    # The last line is the parameter line only when it holds at least three pairs; otherwise it is
    # still part of the prompt (a prompt written without settings).
    if len(_PARAM.findall(last)) < 3:
        lines.append(last)
        last = ""
    prompt: list[str] = []
    negative: list[str] = []
    in_negative = False
    for line in lines:
        line = line.strip()
        if line.startswith("Negative prompt:"):
            in_negative = True
            line = line[len("Negative prompt:"):].strip()
        (negative if in_negative else prompt).append(line)
    res["Prompt"] = "\n".join(prompt)
    res["Negative prompt"] = "\n".join(negative)
    for key, value in _PARAM.findall(last):
        value = unquote(value)
        size = _SIZE.match(value)
        if size:
            res[f"{key}-1"], res[f"{key}-2"] = size.group(1), size.group(2)
        else:
            res[key] = value
    return res


def _int(value: Any) -> int | None:
    try:
        return int(float(value))
    except (TypeError, ValueError):
        return None


def _float(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


#: Numeric infotext keys → (Studio's name, conversion).
_NUMBERS = (
    ("Steps", "steps", _int),
    ("CFG scale", "cfg", _float),
    ("Seed", "seed", _int),
    ("Variation seed", "variation_seed", _int),
    ("Variation seed strength", "variation_strength", _float),
    ("Size-1", "width", _int),
    ("Size-2", "height", _int),
    ("Denoising strength", "denoising_strength", _float),
    ("Hires upscale", "hires_scale", _float),
    ("Hires steps", "hires_steps", _int),
    ("Outpaint left", "outpaint_left", _int),
    ("Outpaint right", "outpaint_right", _int),
    ("Outpaint top", "outpaint_top", _int),
    ("Outpaint bottom", "outpaint_bottom", _int),
    ("SD upscale", "sd_upscale", _float),
    ("SD upscale tile", "sd_upscale_tile", _int),
    ("SD upscale overlap", "sd_upscale_overlap", _int),
)


def infotext_params(parsed: dict[str, str]) -> dict[str, Any]:
    """Studio's normalised parameter names (steps, cfg, seed, width, ...) from a parsed infotext."""
    out: dict[str, Any] = {}
    for key, name, conv in _NUMBERS:
        text = parsed.get(key)
        if text is None:  # absent (most keys): no conversion to fail and catch
            continue
        value = conv(text)
        if value is not None:
            out[name] = value
    for key, name in (
        ("Sampler", "sampler"),
        ("Schedule type", "scheduler"),
        ("Model", "model"),
        ("Model hash", "model_hash"),
        ("Version", "version"),
        ("Hires upscaler", "hires_upscaler"),
        ("Outpaint fill", "outpaint_fill"),
        ("SD upscale upscaler", "sd_upscaler"),
    ):
        if parsed.get(key):
            out[name] = parsed[key]
    return out
