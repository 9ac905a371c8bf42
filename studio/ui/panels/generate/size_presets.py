"""Image sizes each family was trained for (from the family registry), offered as presets.
No Qt."""

from __future__ import annotations

from studio.library.families import FAMILIES, Preset
from studio.library.families import family as family_of

_UNKNOWN: list[Preset] = [
    (512, 512, "1:1 square"),
    (512, 768, "2:3 portrait"),
    (768, 512, "3:2 landscape"),
    (768, 768, "1:1 square"),
    (1024, 1024, "1:1 square (SDXL)"),
    (832, 1216, "2:3 portrait (SDXL)"),
    (1216, 832, "3:2 landscape (SDXL)"),
]
#: The size a fresh form starts at for a family.
DEFAULT_SIZE = {f.key: f.default_size for f in FAMILIES.values()}


def presets_for(family: str) -> list[Preset]:
    """Presets for ``family`` ("sd1", "sd2", "sdxl" …); a mixed list when it is unknown."""
    found = family_of(family)
    return list(found.presets if found is not None else _UNKNOWN)
