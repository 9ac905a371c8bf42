"""The model library's one index: every model Studio can find, of every kind, in one list.

:func:`list_models` reuses the scanners the workspaces' pickers already use (text-to-image,
chat, CycleGAN), so the library and the pickers never disagree, and adds what only the library
shows: TAESD preview decoders, LoRAs (and for which base), and every other weight file or model
folder as *unknown* with the reason. Sources are the studio models folder, the Hugging Face hub
cache (used in place), extra folders (an A1111 or ComfyUI install is searched in its
``models/…`` subfolders) and single files added by hand. Only headers and JSON are read.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from studio.core.config import Paths, Settings
from studio.core.jobs import UserFacingError
from studio.core.wording import count_of
from studio.library import usage
from studio.library.chat_models import chat_entry_for_folder, find_chat_models, weight_files
from studio.library.classify import (
    WEIGHT_SUFFIXES,
    classify_file,
    diffusers_weight_files,
    files_precision,
    is_taesd_folder,
    unknown_folder_reason,
)
from studio.library.cyclegan_models import SUFFIXES as CYCLEGAN_SUFFIXES
from studio.library.cyclegan_models import find_cyclegan_models, group_models, looks_like_generator
from studio.library.hf_cache import hf_cache_repos, hf_loose_files, one_hf_cache_scan
from studio.library.models import (
    _folder_size,
    ddpm_class_names,
    ddpm_shape,
    entry_for_path,
    find_txt2img_models,
)
from studio.library.upscalers import SUFFIXES as UPSCALER_SUFFIXES
from studio.library.upscalers import UpscalerFile, find_upscalers, looks_like_upscaler

log = logging.getLogger(__name__)

KINDS = ("image", "gan", "ddpm", "transform", "upscaler", "chat", "preview", "lora", "embedding",
         "unknown")
KIND_TITLES = {"image": "Image generation", "gan": "GAN (trained in Studio)",
               "ddpm": "Trained diffusion (DDPM)",
               "transform": "Image transform (CycleGAN)",
               "upscaler": "Upscaler (ESRGAN / Real-ESRGAN)",
               "chat": "Chat", "preview": "Preview decoder (TAESD)", "lora": "LoRA",
               "embedding": "Textual inversion", "unknown": "Unknown"}
#: Where a model was found. "file" is a file *or folder* added where it is (Add model…,
#: ``studio models import`` without --copy), so its title says that, not "single file".
SOURCE_TITLES = {"studio": "Studio folder", "hf-cache": "Hugging Face cache",
                 "extra": "Extra folder", "file": "Added in place"}
#: Where A1111 and ComfyUI keep models, relative to their install folder.
KNOWN_SUBDIRS = tuple(Path("models") / d for d in (
    "Stable-diffusion", "Lora", "checkpoints", "loras", "vae_approx", "embeddings")) + (
    Path("embeddings"),)  # A1111 keeps embeddings beside models/, not in it
TAESD_REPOS = ("madebyollin/taesd", "madebyollin/taesdxl")
_SCAN_DEPTH = 3


@dataclass
class LibraryEntry:
    """One model in the library. ``spec`` is what a request or ``studio models info`` names."""

    name: str
    kind: str  # one of KINDS
    path: Path
    source: str  # studio | hf-cache | extra | file
    format: str  # diffusers | single-file | transformers | pth | safetensors | LoRA format
    size_bytes: int = 0
    precision: str = ""
    family: str = ""  # sd1 | sd2 | sdxl (image models, LoRAs, TAESD)
    repo_id: str = ""
    detail: str = ""  # the reason for an unknown, the architecture of a chat model, …
    workspaces: tuple[str, ...] = ()
    last_used: float | None = None
    files: list[Path] = field(default_factory=list)  # what removing it deletes (default: path)

    @property
    def spec(self) -> str:
        """A hub repo is named by its id; a file inside one (a LoRA, a checkpoint) by its path."""
        whole_repo = self.source == "hf-cache" and self.repo_id and self.name == self.repo_id
        return self.repo_id if whole_repo else str(self.path)

    @property
    def kind_title(self) -> str:
        return KIND_TITLES.get(self.kind, self.kind)

    @property
    def source_title(self) -> str:
        return SOURCE_TITLES.get(self.source, self.source)

    def to_json(self) -> dict:
        """A plain dict for ``--json`` output."""
        return {"name": self.name, "kind": self.kind, "path": str(self.path),
                "source": self.source, "format": self.format, "size_bytes": self.size_bytes,
                "precision": self.precision, "family": self.family, "repo_id": self.repo_id,
                "detail": self.detail, "workspaces": list(self.workspaces),
                "last_used": self.last_used, "spec": self.spec}


def _image_entries(settings: Settings, paths: Paths) -> list[LibraryEntry]:
    return list(_image_entries_for(find_txt2img_models(settings, paths)))


def _ddpm_detail(folder: Path) -> str:
    """"16×16 grey, 10 classes" for a model the ddpm lesson saved."""
    size, channels = ddpm_shape(folder)
    colour = {1: " grey", 3: " colour"}.get(channels, "")
    try:
        classes = ddpm_class_names(folder)
    except UserFacingError:
        classes = []
    what = count_of(len(classes), "class", "classes") if classes else "unconditional"
    return f"Pixel diffusion trained in Train: {size}×{size}{colour}, {what}"


def _image_entries_for(models: list) -> Iterator[LibraryEntry]:
    for m in models:
        if m.format == "gan":
            yield _gan_entry(m)
            continue
        if m.family == "ddpm":
            yield LibraryEntry(m.name, "ddpm", m.path, m.source, m.format, m.size_bytes,
                               files_precision(diffusers_weight_files(m.path)), m.family,
                               m.repo_id, _ddpm_detail(m.path), ("Generate",))
            continue
        if m.format == "diffusers":
            precision = files_precision(diffusers_weight_files(m.path))
            if any((m.path / "unet").glob("*.fp16.safetensors")) and "fp16" not in precision:
                precision = f"{precision}, fp16 variant" if precision else "fp16 variant"
        else:
            precision = files_precision([m.path]) if m.path.suffix == ".safetensors" else ""
        detail = {"sd1": "Stable Diffusion 1.x", "sd2": "Stable Diffusion 2.x",
                  "sdxl": "Stable Diffusion XL"}.get(m.family, "a pickled checkpoint")
        yield LibraryEntry(m.name, "image", m.path, m.source, m.format, m.size_bytes,
                           precision, m.family, m.repo_id, detail, ("Generate", "Transform"))


def _gan_entry(m) -> LibraryEntry:
    from studio.library.gan_models import WEIGHTS_FILE, describe, read_gan_info

    weights = m.path / WEIGHTS_FILE
    return LibraryEntry(m.name, "gan", m.path, m.source, "safetensors", m.size_bytes,
                        files_precision([weights]), "", "", describe(read_gan_info(m.path)),
                        ("Generate",), files=[weights, m.path / "gan.json"])


def _chat_entry(m) -> LibraryEntry:
    files = [f for f in weight_files(m.path) if f.suffix == ".safetensors"]
    detail = m.architecture + (f", {count_of(m.context_length, 'token')} context"
                             if m.context_length else "")
    # A quantized model's files mix int8 codes with float scales: name the method instead.
    precision = m.quantized or files_precision(files)
    return LibraryEntry(m.name, "chat", m.path, m.source, "transformers", m.size_bytes,
                        precision, "", m.repo_id, detail, ("Chat",))


def _chat_entries(settings: Settings, paths: Paths) -> list[LibraryEntry]:
    return [_chat_entry(m) for m in find_chat_models(settings, paths)]


def _cyclegan_entry(m) -> LibraryEntry:
    files = list(m.directions.values())
    size = sum(f.stat().st_size for f in files if f.exists())
    fmt = "safetensors" if files[0].suffix == ".safetensors" else "pth"
    precision = files_precision(files) if fmt == "safetensors" else ""
    detail = "translates " + " and ".join(m.directions)
    return LibraryEntry(m.name, "transform", m.path, m.source, fmt, size, precision, "", "",
                        detail, ("Transform",), files=files)


def _cyclegan_entries(settings: Settings, paths: Paths) -> list[LibraryEntry]:
    return [_cyclegan_entry(m) for m in find_cyclegan_models(settings, paths)]


def _upscaler_entry(u: UpscalerFile) -> LibraryEntry:
    fmt = "safetensors" if u.path.suffix.lower() == ".safetensors" else "pth"
    precision = files_precision([u.path]) if fmt == "safetensors" else ""
    return LibraryEntry(u.name, "upscaler", u.path, u.source, fmt, u.path.stat().st_size,
                        precision, detail="enlarges images (hires fix, studio upscale)",
                        workspaces=("Generate",), files=[u.path])


def _upscaler_entries(settings: Settings, paths: Paths) -> list[LibraryEntry]:
    return [_upscaler_entry(u) for u in find_upscalers(settings, paths)]


def _roots(settings: Settings, paths: Paths) -> Iterator[tuple[Path, str]]:
    """Folders to walk for what the pickers' scanners do not list, with their source."""
    if paths.models_dir.is_dir():
        yield paths.models_dir, "studio"
    for extra in settings.extra_model_dirs:
        root = Path(extra).expanduser()
        if root.is_dir():
            yield root, "extra"
            for sub in KNOWN_SUBDIRS:
                if (root / sub).is_dir():
                    yield root / sub, "extra"


def _walk(root: Path, depth: int) -> Iterator[Path]:
    """Weight files and model folders under ``root`` (a model folder is not entered)."""
    try:
        children = sorted(root.iterdir())
    except OSError as exc:
        log.info("cannot list %s: %s", root, exc)
        return
    for child in children:
        if child.name.startswith("."):
            continue  # hidden: includes downloads in progress (models/.downloads)
        if child.is_dir():
            if (child / "model_index.json").is_file() or (child / "config.json").is_file():
                yield child
            elif depth > 1:
                yield from _walk(child, depth - 1)
        elif child.suffix.lower() in WEIGHT_SUFFIXES:
            yield child


def library_files(settings: Settings, paths: Paths) -> Iterator[Path]:
    """Every weight file where the library looks (the Studio models folder, the extra folders
    and the files added in place), without reading any of them."""
    for root, _ in _roots(settings, paths):
        yield from (f for f in _walk(root, _SCAN_DEPTH) if f.is_file())
    for added in settings.added_models:
        item = Path(added).expanduser()
        if item.is_file():
            yield item


def entry_name(item: Path) -> str:
    """The name a file is known by: its stem; a diffusers ``learned_embeds`` file is named
    after its folder (sd-concepts-library/cat-toy → cat-toy), as its token is."""
    if item.stem == "learned_embeds" and item.parent.name:
        return item.parent.name
    return item.stem


def _other_entry(item: Path, source: str, paths: Paths) -> LibraryEntry:
    """A LoRA, TAESD decoder or unknown thing found by the walk."""
    if item.is_dir():
        size = _folder_size(item)
        if is_taesd_folder(item):
            usable = item.parent == paths.models_dir and item.name in ("taesd", "taesdxl")
            family = "sdxl" if "xl" in item.name.lower() else "sd1"
            return LibraryEntry(item.name, "preview", item, source, "diffusers", size,
                                files_precision(sorted(item.glob("*.safetensors"))), family, "",
                                "TAESD (AutoencoderTiny) preview decoder",
                                ("Generate",) if usable else ())
        return LibraryEntry(item.name, "unknown", item, source, "folder", size,
                            detail=unknown_folder_reason(item))
    size = item.stat().st_size
    fmt = item.suffix.lower().lstrip(".")
    try:
        kind = classify_file(item)
    except UserFacingError as exc:
        return LibraryEntry(item.stem, "unknown", item, source, fmt, size, detail=str(exc))
    workspaces: tuple[str, ...] = ()
    if kind.kind == "lora":
        fmt = f"LoRA ({kind.format})"
        # applied in Generate and in Transform's img2img/inpaint (LoHa/LoKr are refused there)
        workspaces = ("Generate", "Transform") if kind.format != "LyCORIS" else ()
    if kind.kind == "embedding":
        fmt = "Embedding"
        workspaces = ("Generate", "Transform")  # applied where its name is in the prompt
    return LibraryEntry(entry_name(item), kind.kind, item, source, fmt, size, kind.precision,
                        kind.family, "", kind.reason, workspaces)


def _claimed(path: Path, claimed: set[Path]) -> bool:
    resolved = path.resolve()
    return resolved in claimed or any(p in claimed for p in resolved.parents)


def _hf_other(repo, claimed: set[Path], paths: Paths) -> list[LibraryEntry]:
    """What an HF cache repo none of the scanners claimed holds: TAESD, LoRAs (a repo of loose
    weight files), or the repo as unknown with the reason."""
    revisions = sorted(repo.revisions, key=lambda r: ("main" in r.refs, r.last_modified),
                       reverse=True)
    if not revisions:
        return []
    snap = Path(revisions[0].snapshot_path)
    if any(_claimed(Path(r.snapshot_path), claimed) for r in revisions):
        return []
    size = int(repo.size_on_disk)
    if is_taesd_folder(snap):
        family = "sdxl" if repo.repo_id.endswith("xl") else "sd1"
        return [LibraryEntry(repo.repo_id, "preview", snap, "hf-cache", "diffusers", size,
                            files_precision(sorted(snap.glob("*.safetensors"))), family,
                            repo.repo_id, "TAESD (AutoencoderTiny) preview decoder",
                            ("Generate",) if repo.repo_id in TAESD_REPOS else ())]
    loose = hf_loose_files(snap, WEIGHT_SUFFIXES)
    if any(_claimed(f, claimed) for f in loose):
        loose = [f for f in loose if not _claimed(f, claimed)]
        if not loose:
            return []  # its files are listed already (single-file checkpoints, generators)
    known = []
    for f in loose:
        entry = _other_entry(f, "hf-cache", paths)
        if entry.kind != "unknown":
            entry.repo_id = entry.repo_id or repo.repo_id
            known.append(entry)
    if known:
        return known
    return [LibraryEntry(repo.repo_id, "unknown", snap, "hf-cache", "hub repo", size,
                         repo_id=repo.repo_id, detail=unknown_folder_reason(snap))]


def list_models(settings: Settings, paths: Paths) -> list[LibraryEntry]:
    """Every model in the library, sorted by kind then name, with its last use filled in."""
    with one_hf_cache_scan():
        return _list_models(settings, paths)


def _list_models(settings: Settings, paths: Paths) -> list[LibraryEntry]:
    entries = (_image_entries(settings, paths) + _chat_entries(settings, paths)
               + _cyclegan_entries(settings, paths) + _upscaler_entries(settings, paths))
    claimed: set[Path] = set()
    for e in entries:
        claimed.add(e.path.resolve())
        claimed.update(f.resolve() for f in e.files)
    for root, source in _roots(settings, paths):
        for item in _walk(root, _SCAN_DEPTH):
            if _claimed(item, claimed):
                continue
            try:
                entry = _other_entry(item, source, paths)
            except OSError as exc:
                log.warning("skipping %s: %s", item, exc)
                continue
            entries.append(entry)
            claimed.add(item.resolve())
    for added in settings.added_models:
        item = Path(added).expanduser()
        if item.exists() and not _claimed(item, claimed):
            try:
                entries.append(_other_entry(item, "file", paths))
            except OSError as exc:
                log.warning("skipping %s: %s", item, exc)
            claimed.add(item.resolve())
    for repo in hf_cache_repos():
        try:
            entries += _hf_other(repo, claimed, paths)
        except OSError as exc:
            log.warning("skipping %s: %s", repo.repo_id, exc)
    used = usage.last_used(paths)
    for e in entries:
        e.last_used = used.get(str(e.path.resolve()))
    order = {k: i for i, k in enumerate(KINDS)}
    return sorted(entries, key=lambda e: (order.get(e.kind, 99), e.name.lower()))


def describe_path(path: Path, source: str, paths: Paths) -> LibraryEntry:
    """What one file or folder is, as a library entry (kind ``unknown`` with the reason when it
    is not a model Studio knows). Used by import, before anything is copied or registered."""
    path = Path(path)
    try:
        image = entry_for_path(path, source)
    except UserFacingError as exc:
        return LibraryEntry(path.stem, "unknown", path, source,
                            path.suffix.lstrip(".") or "folder",
                            path.stat().st_size if path.is_file() else 0, detail=str(exc))
    if image is not None:
        return next(e for e in _image_entries_for([image]))
    if path.is_dir():
        chat = chat_entry_for_folder(path, source)
        if chat is not None:
            return _chat_entry(chat)
        gens = [f for f in sorted(path.iterdir())
                if f.suffix.lower() in CYCLEGAN_SUFFIXES and looks_like_generator(f)]
        if gens and not (path / "config.json").is_file():
            return _cyclegan_entry(group_models(gens, source)[0])
        if not ((path / "config.json").is_file() or (path / "model_index.json").is_file()):
            return LibraryEntry(path.name, "unknown", path, source, "folder", _folder_size(path),
                                detail="an empty folder or one without a model "
                                       "(no model_index.json or config.json)"
                                if not any(path.iterdir()) else
                                "no model_index.json or config.json")
    elif path.suffix.lower() in CYCLEGAN_SUFFIXES and looks_like_generator(path):
        return _cyclegan_entry(group_models([path], source)[0])
    elif path.suffix.lower() in UPSCALER_SUFFIXES and looks_like_upscaler(path):
        return _upscaler_entry(UpscalerFile(path.stem, path, source))
    return _other_entry(path, source, paths)


def matching_entries(name: str, entries: list[LibraryEntry]) -> list[LibraryEntry]:
    """The entries a user's ``name`` means: the one at that path, else those with that name,
    repo id or spec (exact first, then ignoring case). Several hits mean the name is ambiguous."""
    name = str(name).strip()
    path = Path(name).expanduser()
    if name and path.exists():
        hits = [e for e in entries if e.path.resolve() == path.resolve()
                or any(f.resolve() == path.resolve() for f in e.files)]
        if hits:
            return hits[:1]
    for match in (lambda e: name in (e.name, e.repo_id, e.spec),
                  lambda e: name.lower() in (e.name.lower(), e.repo_id.lower())):
        hits = [e for e in entries if match(e)]
        if hits:
            return hits
    return []


def ambiguous_message(name: str, hits: list[LibraryEntry]) -> str:
    where = "; ".join(f"{e.kind_title}: {e.path}" for e in hits)
    return f"{name!r} names {count_of(len(hits), 'model')} ({where}); name one by its path."


def find_entry(name: str, entries: list[LibraryEntry]) -> LibraryEntry:
    """The entry a user names: its name, repo id or path (exact first, then case-insensitive)."""
    name = str(name).strip()
    if not name:
        raise UserFacingError("No model named.")
    hits = matching_entries(name, entries)
    if len(hits) == 1:
        return hits[0]
    if hits:
        raise UserFacingError(ambiguous_message(name, hits))
    raise UserFacingError(f"No model called {name!r} in the library. 'studio models list' shows "
                          "what there is.")


WANTED_TITLES = {"image": "Generate needs a Stable Diffusion model (a diffusers folder or a "
                          ".safetensors checkpoint)",
                 "chat": "Chat needs a language model folder (config.json, weights, tokenizer)",
                 "transform": "Transform needs a CycleGAN generator (.pth or .safetensors)",
                 "upscaler": "Upscaling needs an ESRGAN / Real-ESRGAN model (.pth or "
                             ".safetensors)"}
#: What a command line ``--model`` of each kind takes (for "X is a … model" messages).
CLI_WANTED = {"image": "Stable Diffusion models (a diffusers folder, a .safetensors checkpoint "
                       "or a repo id in the Hugging Face cache)",
              "chat": "language models (a folder with config.json, weights and a tokenizer, or "
                      "a repo id in the Hugging Face cache)",
              "transform": "CycleGAN generators (a .pth or .safetensors file, or a folder "
                           "holding a G_A/G_B pair)",
              "upscaler": "upscaler models (an ESRGAN / Real-ESRGAN .pth or .safetensors "
                          "file, or its name)"}


def _cli_use(entry: LibraryEntry, spec: str) -> str:
    """Which command takes ``entry``, as a sentence with the exact command."""
    quoted = f'"{spec}"' if " " in spec else spec
    return {"image": f"Diffusion image-to-image is 'studio img2img --model {quoted}'; text to "
                     f"image is 'studio generate --model {quoted}'.",
            "gan": f"Draw with it from a seed: 'studio generate --model {quoted} --seed 1'.",
            "ddpm": f"Draw with it: 'studio generate --model {quoted} [--prompt CLASS]'.",
            "chat": f"Chat with it: 'studio chat --model {quoted}'.",
            "transform": f"Translate images with it: 'studio transform --model {quoted}'.",
            "upscaler": f"Enlarge images with it: 'studio upscale IMAGE --model {quoted}', or "
                        f"'studio generate --hires-scale 2 --upscaler {quoted}'.",
            "lora": f"Apply it to a Stable Diffusion model with '--lora {quoted}' in 'studio "
                    "generate' or 'studio img2img'.",
            "embedding": f"Write its name ({entry.name}) in a prompt of 'studio generate' or "
                         "'studio img2img'.",
            "preview": "Studio uses it for live previews in the window (Settings → Live preview)."
            }.get(entry.kind, "")


def wrong_kind_text(entry: LibraryEntry, wanted: str | tuple[str, ...], command: str = "",
                    spec: str = "") -> str:
    """"X is a <kind> model …": what ``entry`` is and where it is used, and what was wanted.

    Without ``command`` the sentence is for the window (workspace names); with it, for that
    command line (``studio transform``): what the command takes and the command that takes X.
    """
    title = entry.kind_title
    article = "an" if title[:1].lower() in "aeiou" else "a"
    wanted = (wanted,) if isinstance(wanted, str) else tuple(wanted)
    if command:
        takes = " and ".join(CLI_WANTED[k] for k in wanted if k in CLI_WANTED)
        return (f"{spec or entry.name} is {article} {title} model, and {command} takes "
                f"{takes}. {_cli_use(entry, spec or entry.spec)}").strip()
    where = (" — use it in " + " or ".join(entry.workspaces)) if entry.workspaces else ""
    if entry.kind == "lora":
        where = " — add it to a model in Generate's LoRA section or with a <lora:…> tag"
    if entry.kind == "embedding":
        where = f" — write its name ({entry.name}) in a prompt"
    return (f"{spec or entry.name} is {article} {title} model{where}. "
            f"{WANTED_TITLES.get(wanted[0], '')}.")


def wrong_kind_message(path: Path, wanted: str | tuple[str, ...], paths: Paths,
                       command: str = "") -> str:
    """A sentence saying that ``path`` is a model of another kind and where it is used, or ''
    when it is not a model Studio recognises (the caller then says what is missing).
    ``command`` words it for that command line (see :func:`wrong_kind_text`)."""
    try:
        entry = describe_path(Path(path), "file", paths)
    except (OSError, UserFacingError):
        return ""
    wanted = (wanted,) if isinstance(wanted, str) else tuple(wanted)
    if entry.kind == "unknown" or entry.kind in wanted:
        return ""
    return wrong_kind_text(entry, wanted, command, Path(path).name if not command
                           else str(path))


def kind_entries(kinds: tuple[str, ...], settings: Settings, paths: Paths) -> list[LibraryEntry]:
    """The library's entries of ``kinds`` (image, chat, transform, upscaler) — the names
    ``studio models list`` prints — from the pickers' scanners only (cheaper than
    :func:`list_models`, which also walks every folder for LoRAs and unknowns)."""
    builders = {"image": _image_entries, "chat": _chat_entries, "transform": _cyclegan_entries,
                "upscaler": _upscaler_entries}
    with one_hf_cache_scan():
        return [e for k in kinds if k in builders for e in builders[k](settings, paths)]
