"""CycleGAN generators on disk and in the catalog. No Qt, no torch.

Discovery looks in ``<models>/cyclegan/`` (any depth up to 3), the user's extra model folders and
files added by hand, and recognises a generator by its key layout alone: a ``.safetensors`` by its
JSON header, a ``.pth`` by the strings in its pickle (read with :mod:`pickletools`, which only
*lists* opcodes and never executes one), so a scan neither loads weights nor runs code.

Names follow the reference's conventions: ``checkpoints/horse2zebra_pretrained/latest_net_G.pth``
is "horse2zebra"; training outputs ``latest_net_G_A.pth`` / ``latest_net_G_B.pth`` in one folder
make one model with both directions (G_A: A→B, G_B: B→A); a generator in the Hugging Face cache is
named by its repo id. That one name (:func:`model_name`) is what every place shows — the Transform
picker (installed or offered for download: a catalog entry's ``name`` is the name its download
gets), the Models library, the results' metadata and the Gallery; a catalog entry's ``title``
("Photo → Monet") only describes it.
"""

from __future__ import annotations

import json
import logging
import pickletools
import re
import struct
import zipfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from studio import ASSETS_DIR
from studio.core.config import Paths, Settings, default_paths
from studio.core.files import StatCache
from studio.core.jobs import UserFacingError
from studio.library.kinds import wrong_kind_message

log = logging.getLogger(__name__)

CATALOG_FILE = ASSETS_DIR / "catalogs" / "cyclegan.json"
SUFFIXES = (".pth", ".pt", ".safetensors")
DIRECTIONS = ("AtoB", "BtoA")
_GENERIC_STEM = re.compile(r"^(latest|best|\d+|iter_\d+)_net_G(_[AB])?$")
_PAIR_STEM = re.compile(r"^(?P<prefix>.*)net_G_(?P<side>[AB])$")
_FIRST_KEY = "model.1.weight"
_BLOCK_KEY = re.compile(r"^model\.10\.conv_block\.1\.weight$")
_MAX_PICKLE_BYTES = 4 << 20  # the key table of a generator is a few KB; never read more than this
_pth_cache: StatCache[frozenset[str]] = StatCache(1024)


@dataclass
class CatalogEntry:
    """A released model the user can download."""

    name: str
    title: str
    description: str
    url: str
    filename: str = "latest_net_G.pth"
    size_mb: int = 0
    sha256: str = ""
    group: str = ""

    def target(self, paths: Paths) -> Path:
        """Where a download goes: ``<models>/cyclegan/<name>/latest_net_G.pth``."""
        return paths.models_dir / "cyclegan" / self.name / self.filename


@dataclass
class CycleGANModel:
    """One translation model: a file per direction it offers."""

    name: str
    directions: dict[str, Path] = field(default_factory=dict)  # "AtoB" / "BtoA" → file
    source: str = "studio"  # studio | extra | file

    @property
    def path(self) -> Path:
        """What a request names: the single file, or the folder holding a G_A/G_B pair."""
        files = list(self.directions.values())
        if len(files) == 1:
            return files[0]
        return files[0].parent

    def file_for(self, direction: str) -> Path:
        if direction not in self.directions:
            offered = " or ".join(self.directions)
            raise UserFacingError(f"{self.name} translates {offered} only, not {direction}.")
        return self.directions[direction]


def load_catalog(path: Path = CATALOG_FILE) -> list[CatalogEntry]:
    """The released models, in the catalog's order."""
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    known = set(CatalogEntry.__dataclass_fields__)
    return [CatalogEntry(**{k: v for k, v in m.items() if k in known}) for m in data["models"]]


# -- recognising a generator without loading it ---------------------------------------------------
def _safetensors_keys(path: Path) -> frozenset[str]:
    from studio.library.detect import header_fact

    try:  # once while the file is unchanged: an SDXL header has ~2,500 names
        return header_fact(path, "tensor_names", _header_names)
    except UserFacingError:
        return frozenset()


def _header_names(header: dict) -> frozenset[str]:
    return _without_module_prefix(k for k in header if k != "__metadata__")


def _without_module_prefix(keys: Iterable[str]) -> frozenset[str]:
    """Tensor names with the ``module.`` prefix of a DataParallel save dropped."""
    return frozenset(k[7:] if k.startswith("module.") else k for k in keys)


def _pickle_strings(data: bytes, limit: int = 5) -> set[str]:
    """Unicode strings in up to ``limit`` consecutive pickles (the legacy torch format stores
    magic, protocol, system info and then the state dict as separate pickles)."""
    found: set[str] = set()
    pos = 0
    for _ in range(limit):
        if pos >= len(data):
            break
        try:
            for op, arg, end in pickletools.genops(data[pos:]):
                if isinstance(arg, str):
                    found.add(arg)
                if op.name == "STOP":
                    pos += (end or 0) + 1
                    break
            else:
                break
        except (ValueError, IndexError, struct.error, UnicodeDecodeError, EOFError):
            break
    return found


def _pth_keys(path: Path) -> frozenset[str]:
    """The strings in a pickled weight file. Those of unchanged files (same size, modification
    time and inode) come from a small in-memory cache, as safetensors headers do: one library scan
    asks about every ``.pth`` twice (is it a CycleGAN generator? a ControlNet?) and each rescan
    asks again, and listing a pickle's opcodes is the slowest part of a scan. Kept with the
    ``module.`` prefixes dropped, as :func:`file_keys` answers."""
    return _pth_cache.get(path, lambda p, _st: _without_module_prefix(_read_pth_keys(p)))


def _read_pth_keys(path: Path) -> set[str]:
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as zf:
            name = next((n for n in zf.namelist() if n.endswith("/data.pkl") or n == "data.pkl"),
                        None)
            if name is None or zf.getinfo(name).file_size > _MAX_PICKLE_BYTES:
                return set()
            return _pickle_strings(zf.read(name), limit=1)
    with open(path, "rb") as fh:
        return _pickle_strings(fh.read(_MAX_PICKLE_BYTES))


def file_keys(path: Path) -> frozenset[str]:
    """The tensor names of a weight file without loading it (for a pickle: every string in it,
    ``module.`` prefixes dropped); empty when it cannot be read. Worked out once while the file
    is unchanged."""
    path = Path(path)
    try:
        keys = _safetensors_keys(path) if path.suffix.lower() == ".safetensors" \
            else _pth_keys(path)
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        log.info("cannot read %s: %s", path, exc)
        return frozenset()
    return keys


def looks_like_generator(path: Path) -> bool:
    """True when ``path`` holds a CycleGAN ResNet generator's keys (nothing is loaded)."""
    keys = file_keys(path)
    return _FIRST_KEY in keys and any(_BLOCK_KEY.match(k) for k in keys)


def _hf_repo_id(folder: Path) -> str:
    """``org/name`` when ``folder`` is a snapshot in the Hugging Face cache, else ''."""
    snapshots = folder.parent
    repo = snapshots.parent.name
    if snapshots.name == "snapshots" and repo.startswith("models--"):
        return repo.removeprefix("models--").replace("--", "/")
    return ""


def model_name(path: Path) -> str:
    """The model's name: the file stem, or for generic names (``latest_net_G``) its folder's
    (without ``_pretrained``) or its Hugging Face repo id. A folder (of a G_A/G_B pair) is
    named as its files are."""
    path = Path(path)
    if not path.suffix or path.suffix.lower() not in SUFFIXES:  # a folder named in a request
        return _folder_name(path) or path.name
    stem = path.stem
    if _GENERIC_STEM.match(stem):
        return _folder_name(path.parent) or stem
    return re.sub(r"_net_G(_[AB])?$", "", stem)


def _folder_name(folder: Path) -> str:
    repo = _hf_repo_id(folder)
    if repo:
        return repo
    name = folder.name
    for suffix in ("_pretrained", "_cyclegan"):
        name = name.removesuffix(suffix)
    return name


def catalog_titles() -> dict[str, str]:
    """Catalog name → its title ("style_monet" → "Photo → Monet"); empty if unreadable."""
    try:
        return {e.name: e.title for e in load_catalog()}
    except (OSError, ValueError, TypeError) as exc:
        log.warning("cannot read the CycleGAN catalog: %s", exc)
        return {}


def group_models(files: list[Path], source: str) -> list[CycleGANModel]:
    """Models for generator files: a ``…net_G_A`` / ``…net_G_B`` pair in one folder becomes one
    model with both directions; any other file translates one way (AtoB)."""
    pairs: dict[tuple[Path, str], dict[str, Path]] = {}
    singles: list[Path] = []
    for f in files:
        m = _PAIR_STEM.match(f.stem)
        if m:
            pairs.setdefault((f.parent, m.group("prefix")), {})[m.group("side")] = f
        else:
            singles.append(f)
    models = [CycleGANModel(model_name(f), {"AtoB": f}, source) for f in singles]
    for (_folder, _prefix), sides in pairs.items():
        name = model_name(next(iter(sides.values())))
        directions = {}
        if "A" in sides:
            directions["AtoB"] = sides["A"]
        if "B" in sides:
            directions["BtoA"] = sides["B"]
        models.append(CycleGANModel(name, directions, source))
    return sorted(models, key=lambda m: m.name.lower())


def matching_files(root: Path, depth: int, accept: Callable[[Path], bool]) -> list[Path]:
    """The files under ``root`` (``depth`` levels) that ``accept`` takes, sorted; hidden entries
    and diffusers / transformers model folders are not entered."""
    found: list[Path] = []
    try:
        children = sorted(root.iterdir())
    except OSError:
        return found
    for child in children:
        if child.name.startswith("."):
            continue
        if child.is_dir():
            model_folder = (child / "model_index.json").is_file() or \
                (child / "config.json").is_file()  # a diffusers or transformers model
            if depth > 1 and not model_folder:
                found += matching_files(child, depth - 1, accept)
        elif accept(child):
            found.append(child)
    return found


def _is_generator_file(path: Path) -> bool:
    return path.suffix.lower() in SUFFIXES and looks_like_generator(path)


def _generator_files(root: Path, depth: int = 3) -> list[Path]:
    return matching_files(root, depth, _is_generator_file)


def _hf_cache_generators() -> list[CycleGANModel]:
    """Generators in Hugging Face cache repos that hold loose weight files (used in place)."""
    from studio.library.hf_cache import hf_cache_repos, hf_loose_files, hf_main_snapshot

    models: list[CycleGANModel] = []
    for repo in hf_cache_repos():
        snap = hf_main_snapshot(repo)
        if snap is None:
            continue
        gens = [f for f in hf_loose_files(snap, SUFFIXES) if looks_like_generator(f)]
        models += group_models(gens, "hf-cache")  # a generic file name gets the repo id
    return models


def find_cyclegan_models(settings: Settings, paths: Paths) -> list[CycleGANModel]:
    """Every CycleGAN generator available offline (nothing is loaded)."""
    # The whole models folder: cyclegan/ is where downloads go, but a generator dropped anywhere
    # in it (or imported in place) is one too.
    models = group_models(_generator_files(paths.models_dir), "studio")
    for extra in settings.extra_model_dirs:
        root = Path(extra).expanduser()
        if root.is_dir():
            models += group_models(_generator_files(root, depth=2), "extra")
    for added in getattr(settings, "added_models", []):
        path = Path(added).expanduser()
        if path.is_file() and path.suffix.lower() in SUFFIXES and looks_like_generator(path):
            models += group_models([path], "file")
    models += _hf_cache_generators()
    seen: set[Path] = set()
    unique = []
    for m in models:
        key = m.path.resolve()
        if key not in seen:
            seen.add(key)
            unique.append(m)
    return unique


def _wrong_kind(path: Path) -> str:
    """"X is a <kind> model …" (the registry's answer), or '' when it is no model Studio knows."""
    return wrong_kind_message(path, "transform", default_paths())


def resolve_cyclegan(spec: str) -> CycleGANModel:
    """The model a request names: a generator file, or a folder with one (or a G_A/G_B pair)."""
    path = Path(str(spec).strip()).expanduser()
    if not str(spec).strip():
        raise UserFacingError("No CycleGAN model chosen.")
    if not path.exists():
        raise UserFacingError(f"{spec} does not exist.")
    if path.is_dir():
        files = [f for f in sorted(path.iterdir())
                 if f.suffix.lower() in SUFFIXES and looks_like_generator(f)]
        models = group_models(files, "file")
        if not models:
            raise UserFacingError(_wrong_kind(path) or
                                  f"{path} holds no CycleGAN generator (.pth or .safetensors).")
        both = [m for m in models if len(m.directions) == 2]
        return both[0] if both else models[0]
    if path.suffix.lower() not in SUFFIXES:
        raise UserFacingError(_wrong_kind(path) or
                              f"{path.name} is not a .pth or .safetensors file.")
    if path.suffix.lower() == ".safetensors" and not looks_like_generator(path):
        wrong = _wrong_kind(path)  # a checkpoint or LoRA picked by mistake; pickles load later
        if wrong:
            raise UserFacingError(wrong)
    if _PAIR_STEM.match(path.stem):
        # A file of a pair: offer both directions when its partner is beside it.
        partners = [f for f in path.parent.iterdir() if f.suffix.lower() in SUFFIXES]
        for model in group_models(partners, "file"):
            if path in model.directions.values():
                return model
    return CycleGANModel(model_name(path), {"AtoB": path}, "file")
