"""Settings and the places where Studio keeps its data. No Qt here.

Settings live in ``user_config_dir/settings.json`` (platformdirs, app name ``Studio``). Setting the
environment variable ``STUDIO_HOME`` moves *everything* (settings, models, outputs, database, runs)
under one folder, which is how tests and portable installs keep the user's real folders untouched.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from studio.core.files import atomic_write_text
from studio.core.jobs import UserFacingError
from studio.core.wording import write_failure

log = logging.getLogger(__name__)

APP_NAME = "Studio"
SCHEMA_VERSION = 2

DEVICES = ("auto", "cuda", "mps", "cpu")
PRECISIONS = ("auto", "fp16", "bf16", "fp32")
PREVIEW_MODES = ("fast", "taesd", "off")
THEMES = ("dark", "light")
LOAD_IN = ("auto", "8bit", "4bit")
#: bitsandbytes weights of an image model (studio.pipelines.diffusion.quantize says where they run)
QUANTIZE_MODES = ("none", "nf4", "int8")
OFFLOAD_MODES = ("none", "model", "sequential")  # accelerate offload of an image model (CUDA only)  # chat models: auto follows precision; 8/4-bit need bitsandbytes


@dataclass
class Paths:
    """Every folder Studio writes to. Build it with :func:`default_paths`."""

    config_dir: Path
    data_dir: Path
    models_dir: Path
    outputs_dir: Path
    runs_dir: Path
    #: Images go into a YYYY-MM-DD folder under outputs_dir; False (``--out DIR`` on the command
    #: line) writes them into outputs_dir itself.
    dated_outputs: bool = True

    @property
    def settings_file(self) -> Path:
        return self.config_dir / "settings.json"

    @property
    def database(self) -> Path:
        return self.data_dir / "studio.db"


def default_paths() -> Paths:
    """The platform's folders, or everything under ``$STUDIO_HOME`` when it is set."""
    home = os.environ.get("STUDIO_HOME")
    if home:
        root = Path(home).expanduser()
        return Paths(
            config_dir=root / "config",
            data_dir=root / "data",
            models_dir=root / "data" / "models",
            outputs_dir=root / "outputs",
            runs_dir=root / "data" / "runs",
        )
    import platformdirs

    data = Path(platformdirs.user_data_dir(APP_NAME, appauthor=False))
    return Paths(
        config_dir=Path(platformdirs.user_config_dir(APP_NAME, appauthor=False)),
        data_dir=data,
        models_dir=data / "models",
        outputs_dir=Path(platformdirs.user_pictures_dir()) / APP_NAME,
        runs_dir=data / "runs",
    )


def _model_key(path: str | Path) -> str:
    return str(Path(path).expanduser().resolve())


@dataclass(frozen=True)
class MemoryOptions:
    """Low-memory options for one image model (diffusers + accelerate).

    ``attention_slicing`` and ``vae_tiling`` trade speed for peak memory on any device;
    ``offload`` keeps the weights in RAM and moves them to the GPU per model ("model") or per
    layer ("sequential", slowest, least VRAM) — it needs CUDA and is ignored elsewhere;
    ``quantize`` loads the denoiser and the large text encoders in NF4 or int8 (bitsandbytes)."""

    attention_slicing: bool = False
    vae_tiling: bool = False
    offload: str = "none"  # one of OFFLOAD_MODES
    quantize: str = "none"  # one of QUANTIZE_MODES

    @classmethod
    def from_dict(cls, raw: dict) -> MemoryOptions:
        offload = raw.get("offload", "none") if isinstance(raw, dict) else "none"
        quantize = raw.get("quantize", "none") if isinstance(raw, dict) else "none"
        return cls(attention_slicing=bool(raw.get("attention_slicing", False)) if raw else False,
                   vae_tiling=bool(raw.get("vae_tiling", False)) if raw else False,
                   offload=offload if offload in OFFLOAD_MODES else "none",
                   quantize=quantize if quantize in QUANTIZE_MODES else "none")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


TIMELINE_FRAMES = 60  # the denoising timeline's frames per image (studio.media.timeline)
TIMELINE_MAX_FRAMES = 240
MAX_GGUF_CONTEXT = 1 << 20  # tokens (llama.cpp models reach 1M)

@dataclass
class Settings:
    """What the user chose in the Settings dialog. Saved as JSON; unknown keys are ignored."""

    schema_version: int = SCHEMA_VERSION
    device: str = "auto"  # auto | cuda | mps | cpu
    precision: str = "auto"  # auto (fp16 on CUDA, fp32 elsewhere) | fp16 | bf16 | fp32
    output_dir: str = ""  # empty: the platform's pictures folder / Studio
    models_dir: str = ""  # empty: the data folder / models
    extra_model_dirs: list[str] = field(default_factory=list)
    added_models: list[str] = field(default_factory=list)  # single files/folders from "Add model…"
    preview_mode: str = "fast"  # fast (latent→RGB every step) | taesd (when installed) | off
    taesd_every: int = 4  # a TAESD preview every N steps
    # Generate keeps a denoising timeline of at most this many frames per image (0: none)
    timeline_frames: int = TIMELINE_FRAMES
    theme: str = "dark"  # dark | light
    last_model: str = ""  # the model picked last time, restored at start-up
    load_in: str = "auto"  # chat models: auto | 8bit | 4bit (bitsandbytes, CUDA only)
    # OpenAI-compatible servers: {"name": ..., "base_url": ..., "api_key_ref": ...} each
    remote_endpoints: list[dict] = field(default_factory=list)
    last_chat_model: str = ""  # the chat model picked last time
    # GGUF chat models (llama.cpp) run with this context in tokens, or their own when smaller
    # (a 128K-token model's full KV cache would take gigabytes); 0: their own, whole
    gguf_context: int = 8192
    # Models kept in memory between jobs while they fit in this many GB (VRAM on CUDA, RAM
    # otherwise); 0 = automatic (most of the GPU's memory, half of the RAM).
    memory_budget_gb: float = 0.0
    # Low-memory options per image model, keyed by the model's resolved path (see MemoryOptions)
    model_options: dict[str, dict] = field(default_factory=dict)
    # ComfyUI split files: the text-encoder / VAE file the user chose for a diffusion-model
    # file, keyed by its resolved path: {role ("clip_l", "t5xxl", "vae" …): file}
    split_parts: dict[str, dict] = field(default_factory=dict)

    def parts_for(self, path: str | Path) -> dict[str, str]:
        """The parts chosen for the split diffusion-model file at ``path`` (role → file)."""
        return dict(self.split_parts.get(_model_key(path), {}))

    def with_part(self, path: str | Path, role: str, file: str | Path | None) -> Settings:
        """A copy with ``file`` chosen as the ``role`` part of ``path`` (None: the guess again)."""
        table = {k: dict(v) for k, v in self.split_parts.items()}
        chosen = table.setdefault(_model_key(path), {})
        if file is None:
            chosen.pop(role, None)
        else:
            chosen[role] = _model_key(file)
        if not chosen:
            table.pop(_model_key(path))
        return dataclasses.replace(self, split_parts=table)

    def memory_options_for(self, path: str | Path) -> MemoryOptions:
        """The low-memory options chosen for the model at ``path`` (defaults when none)."""
        raw = self.model_options.get(_model_key(path), {})
        return MemoryOptions.from_dict(raw)

    def with_memory_options(self, path: str | Path, options: MemoryOptions) -> Settings:
        """A copy with ``options`` stored for ``path`` (defaults are not stored)."""
        table = {k: dict(v) for k, v in self.model_options.items()}
        if options == MemoryOptions():
            table.pop(_model_key(path), None)
        else:
            table[_model_key(path)] = options.to_dict()
        return dataclasses.replace(self, model_options=table)

    def validated(self) -> Settings:
        """A copy with every out-of-range value replaced by its default (and logged)."""
        fixed = dataclasses.replace(self, extra_model_dirs=list(self.extra_model_dirs),
                                    added_models=list(self.added_models),
                                    remote_endpoints=list(self.remote_endpoints or []))
        defaults = Settings()
        for name, allowed in (
            ("device", DEVICES),
            ("precision", PRECISIONS),
            ("preview_mode", PREVIEW_MODES),
            ("theme", THEMES),
            ("load_in", LOAD_IN),
        ):
            if getattr(fixed, name) not in allowed:
                log.warning("settings: %s=%r is not one of %s", name, getattr(fixed, name), allowed)
                setattr(fixed, name, getattr(defaults, name))
        if not isinstance(fixed.taesd_every, int) or fixed.taesd_every < 1:
            fixed.taesd_every = defaults.taesd_every
        if (not isinstance(fixed.timeline_frames, int)
                or not 0 <= fixed.timeline_frames <= TIMELINE_MAX_FRAMES):
            log.warning("settings: timeline_frames=%r is out of range", fixed.timeline_frames)
            fixed.timeline_frames = defaults.timeline_frames
        fixed.extra_model_dirs = [str(p) for p in fixed.extra_model_dirs if str(p).strip()]
        fixed.added_models = [str(p) for p in fixed.added_models if str(p).strip()]
        fixed.remote_endpoints = [dict(e) for e in fixed.remote_endpoints
                                  if isinstance(e, dict) and str(e.get("base_url", "")).strip()]
        if (isinstance(fixed.gguf_context, bool) or not isinstance(fixed.gguf_context, int)
                or not 0 <= fixed.gguf_context <= MAX_GGUF_CONTEXT):
            log.warning("settings: gguf_context=%r is out of range", fixed.gguf_context)
            fixed.gguf_context = defaults.gguf_context
        if (isinstance(fixed.memory_budget_gb, bool)
                or not isinstance(fixed.memory_budget_gb, (int, float))
                or not 0 <= fixed.memory_budget_gb <= 4096):
            log.warning("settings: memory_budget_gb=%r is out of range", fixed.memory_budget_gb)
            fixed.memory_budget_gb = defaults.memory_budget_gb
        fixed.model_options = {str(k): MemoryOptions.from_dict(v).to_dict()
                               for k, v in dict(fixed.model_options or {}).items()
                               if isinstance(v, dict)}
        fixed.split_parts = {str(k): {str(r): str(f) for r, f in v.items() if isinstance(f, str)}
                             for k, v in dict(fixed.split_parts or {}).items()
                             if isinstance(v, dict)}
        return fixed

    def resolved_paths(self, base: Paths | None = None) -> Paths:
        """The folders in force: the defaults, with the user's overrides applied."""
        p = base or default_paths()
        if self.output_dir:
            p = dataclasses.replace(p, outputs_dir=Path(self.output_dir).expanduser())
        if self.models_dir:
            p = dataclasses.replace(p, models_dir=Path(self.models_dir).expanduser())
        return p

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True)


def _migrate(raw: dict) -> dict:
    """Bring an older settings dict up to SCHEMA_VERSION."""
    version = raw.get("schema_version", 1)
    if not isinstance(version, int) or isinstance(version, bool):
        version = SCHEMA_VERSION  # a hand-edited value: take the file as it is
    if version < 2:
        # v1 called the preview setting "previews" and stored a bool.
        if "previews" in raw:
            raw["preview_mode"] = "fast" if raw.pop("previews") else "off"
        if isinstance(raw.get("extra_model_dirs"), str):
            raw["extra_model_dirs"] = [p for p in raw["extra_model_dirs"].split(os.pathsep) if p]
    raw["schema_version"] = SCHEMA_VERSION
    return raw


def _field_type_ok(default: object, value: object) -> bool:
    """Whether ``value`` has the JSON type of the field whose default is ``default``."""
    if isinstance(default, bool):
        return isinstance(value, bool)
    if isinstance(default, int):
        return isinstance(value, int) and not isinstance(value, bool)
    if isinstance(default, float):
        return (isinstance(value, (int, float)) and not isinstance(value, bool)
                and value == value and abs(value) != float("inf"))
    if isinstance(default, str):
        return isinstance(value, str) and "\0" not in value
    if isinstance(default, dict):
        return isinstance(value, dict)
    if isinstance(default, list):
        return isinstance(value, list)
    return True


_LIST_ITEM = {"extra_model_dirs": str, "added_models": str, "remote_endpoints": dict}


def _typed_fields(raw: dict) -> tuple[dict, list[str]]:
    """The known fields of ``raw`` whose type is right, and the names of those that were not
    (``"output_dir": 5``, a list where a number belongs, null): each of those falls back to its
    default alone, instead of one bad value crashing every command."""
    defaults = Settings()
    good: dict = {}
    bad: list[str] = []
    for f in dataclasses.fields(Settings):
        if f.name not in raw:
            continue
        value = raw[f.name]
        item = _LIST_ITEM.get(f.name)
        if _field_type_ok(getattr(defaults, f.name), value) and (
                item is None or all(isinstance(v, item) for v in value)):
            good[f.name] = value
        else:
            bad.append(f.name)
    return good, bad


def _backup(path: Path) -> str:
    """Keep a copy of the settings file as it was; the sentence saying where, or ''."""
    backup = path.with_name(f"settings.corrupt-{time.strftime('%Y%m%d-%H%M%S')}.json")
    try:
        backup.write_bytes(path.read_bytes())
    except OSError:
        return ""
    return f" The file as it was is kept as {backup.name}."


@dataclass
class LoadedSettings:
    """Settings plus what happened while loading them (shown to the user once)."""

    settings: Settings
    notice: str = ""


def load_settings(path: Path | None = None) -> LoadedSettings:
    """Read settings; a missing file gives defaults, a corrupt one is backed up and replaced."""
    path = path or default_paths().settings_file
    if not path.exists():
        return LoadedSettings(Settings())
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(raw, dict):
            raise ValueError("the file does not hold a JSON object")
        raw = _migrate(raw)
        good, bad = _typed_fields(raw)
        settings = Settings(**good).validated()
    except RecursionError:
        exc: Exception = ValueError("it nests too deeply")
    except (ValueError, TypeError, OSError, UnicodeDecodeError) as error:
        exc = error
    else:
        if not bad:
            return LoadedSettings(settings)
        names = ", ".join(bad)
        log.warning("settings file %s: wrong type for %s; defaults used for those", path, names)
        where = _backup(path)
        try:
            save_settings(settings, path)  # so the notice is given once, not at every start
        except UserFacingError as err:
            log.warning("cannot rewrite %s: %s", path, err)
        return LoadedSettings(settings, notice=(
            f"Your settings file had a value of the wrong type for {names}, so "
            f"{'that setting is' if len(bad) == 1 else 'those settings are'} back to the "
            f"default.{where}"))
    backup = path.with_name(f"settings.corrupt-{time.strftime('%Y%m%d-%H%M%S')}.json")
    try:
        os.replace(path, backup)
        where = f" It was kept as {backup.name}."
    except OSError:
        where = ""
    log.warning("settings file %s is unreadable (%s); using defaults", path, exc)
    return LoadedSettings(
        Settings(),
        notice=f"Your settings file could not be read ({exc}), so defaults are in use.{where}",
    )


def save_settings(settings: Settings, path: Path | None = None) -> Path:
    """Write settings atomically; returns the file written."""
    path = path or default_paths().settings_file
    try:
        atomic_write_text(path, settings.validated().to_json() + "\n")
    except OSError as exc:  # a read-only config folder, a full disk: say so in words
        raise UserFacingError(write_failure(exc, "the settings", path.parent)) from exc
    return path
