"""Config folders that let diffusers load a single-file checkpoint without the network.

``Pipeline.from_single_file`` needs a diffusers-layout folder of configs (model_index.json,
unet/vae/text encoder configs, scheduler, tokenizers) matching the checkpoint's architecture. By
default diffusers downloads it from the Hub; Studio ships the JSON configs in
``assets/configs/<sd15|sd2|sdxl>/`` and generates the tokenizer files from the shipped CLIP BPE
merges. The complete folder is materialised once per family under
``<data_dir>/cache/single_file_configs/<family>/`` (built in a temp folder, then renamed, so an
interrupted build never leaves half a folder) and reused afterwards.

Overrides, for tests and for users with unusual checkpoints (e.g. an SD 2.x 768-px v-prediction
model): :data:`CONFIG_OVERRIDES` maps a family to a folder, and the environment variable
``STUDIO_SINGLE_FILE_CONFIG_DIR`` names a folder holding ``sd1/``, ``sd2/`` and/or ``sdxl/``
sub-folders, each a complete config folder as described above. No torch here.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from studio.core.config import Paths
from studio.core.jobs import UserFacingError
from studio.library.clip_tokenizer import ASSETS_DIR, write_clip_tokenizer
from studio.library.families import FAMILIES

CONFIGS_DIR = ASSETS_DIR / "configs"
#: family → the shipped asset folder name (from the family registry).
ASSET_NAMES = {f.key: f.single_file_assets for f in FAMILIES.values() if f.single_file_assets}
#: family → {tokenizer sub-folder: padding token}.
TOKENIZERS = {f.key: dict(f.tokenizers) for f in FAMILIES.values() if f.tokenizers}
ENV_OVERRIDE = "STUDIO_SINGLE_FILE_CONFIG_DIR"
#: family → config folder; takes precedence over everything else (set by tests or plugins).
CONFIG_OVERRIDES: dict[str, Path] = {}
_MARKER = ".complete"


def _build(family: str, dest: Path) -> None:
    src = CONFIGS_DIR / ASSET_NAMES[family]
    if not (src / "model_index.json").is_file():
        raise UserFacingError(f"Studio's bundled configuration for {family} is missing ({src}). "
                              "Reinstall Studio.")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{family}-", dir=dest.parent))
    try:
        shutil.copytree(src, tmp, dirs_exist_ok=True)
        for sub, pad in TOKENIZERS.get(family, {}).items():  # Chroma has no CLIP
            write_clip_tokenizer(tmp / sub, pad)
        (tmp / _MARKER).write_text("ok\n", encoding="utf-8")
        try:
            os.replace(tmp, dest)
        except OSError:
            # Another process finished first (the target exists and is not empty): use theirs.
            if not (dest / _MARKER).is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def single_file_config_dir(family: str, paths: Paths) -> Path:
    """The config folder for a single-file checkpoint of ``family`` (sd1 | sd2 | sdxl)."""
    if family not in ASSET_NAMES:
        raise UserFacingError(f"Single-file checkpoints of family {family!r} are not supported.")
    if family in CONFIG_OVERRIDES:
        return Path(CONFIG_OVERRIDES[family])
    env = os.environ.get(ENV_OVERRIDE)
    if env and (Path(env) / family / "model_index.json").is_file():
        return Path(env) / family
    dest = paths.data_dir / "cache" / "single_file_configs" / family
    if not (dest / _MARKER).is_file():
        if dest.exists():  # a stale folder from an older Studio: rebuild it
            shutil.rmtree(dest, ignore_errors=True)
        _build(family, dest)
    return dest
