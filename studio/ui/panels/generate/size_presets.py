"""Image sizes each Stable Diffusion family was trained for, offered as presets. No Qt."""

from __future__ import annotations

Preset = tuple[int, int, str]  # width, height, label

_SD1: list[Preset] = [
    (512, 512, "1:1 square"),
    (512, 768, "2:3 portrait"),
    (768, 512, "3:2 landscape"),
    (512, 640, "4:5 portrait"),
    (640, 512, "5:4 landscape"),
    (448, 768, "9:16 tall"),
    (768, 448, "16:9 wide"),
]
_SD2: list[Preset] = [
    (768, 768, "1:1 square (768 models)"),
    (512, 512, "1:1 square (512 models)"),
    (576, 768, "3:4 portrait"),
    (768, 576, "4:3 landscape"),
    (512, 768, "2:3 portrait"),
    (768, 512, "3:2 landscape"),
]
_SDXL: list[Preset] = [
    (1024, 1024, "1:1 square"),
    (896, 1152, "7:9 portrait"),
    (1152, 896, "9:7 landscape"),
    (832, 1216, "2:3 portrait"),
    (1216, 832, "3:2 landscape"),
    (768, 1344, "9:16 tall"),
    (1344, 768, "16:9 wide"),
    (640, 1536, "5:12 very tall"),
    (1536, 640, "12:5 very wide"),
    (512, 512, "1:1 small (Turbo)"),
]
_UNKNOWN: list[Preset] = [
    (512, 512, "1:1 square"),
    (512, 768, "2:3 portrait"),
    (768, 512, "3:2 landscape"),
    (768, 768, "1:1 square"),
    (1024, 1024, "1:1 square (SDXL)"),
    (832, 1216, "2:3 portrait (SDXL)"),
    (1216, 832, "3:2 landscape (SDXL)"),
]
_BY_FAMILY = {"sd1": _SD1, "sd2": _SD2, "sdxl": _SDXL}

#: The size a fresh form starts at for a family.
DEFAULT_SIZE = {"sd1": (512, 512), "sd2": (768, 768), "sdxl": (1024, 1024)}


def presets_for(family: str) -> list[Preset]:
    """Presets for ``family`` ("sd1", "sd2", "sdxl"); a mixed list when it is unknown."""
    return list(_BY_FAMILY.get(family, _UNKNOWN))
