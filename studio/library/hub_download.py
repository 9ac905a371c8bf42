"""Downloading a model repository from the Hugging Face Hub into the studio models folder. No Qt.

The plan comes first (``HfApi.model_info(files_metadata=True)``): which files are needed and how
many bytes that is, shown before anything is fetched. Only what Studio loads is fetched —
safetensors rather than duplicate ``.bin``/``.ckpt``/``.msgpack``/``.onnx`` copies, the fp16
variant when the device computes in fp16 (saved under the plain name, so the folder loads at any
precision), no top-level single-file checkpoint when the repo also has the diffusers layout, no
safety checker (Studio never loads it).

Files are fetched with :func:`studio.library.download.download_file` rather than
``hf_hub_download``: huggingface_hub 2.x downloads into a process-unique ``.incomplete`` file that
it deletes when a download fails, so an interrupted 7 GB download would start over. Ours resume
from ``<file>.part`` with an HTTP Range request, after a cancel, an error or an app restart, and
verify each LFS file's sha256 from the Hub's metadata. Files gather in a hidden staging folder
``<models>/.downloads/<org>--<name>/`` (scanners skip hidden folders) that becomes
``<models>/<name>/`` by one rename when everything is there, so a half-downloaded model is never
listed. Offline (``HF_HUB_OFFLINE``) says so at once; the Hub is asked with a short timeout.
"""

from __future__ import annotations

import errno
import json
import os
import re
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath

from studio import ASSETS_DIR
from studio.core.config import Paths
from studio.core.files import atomic_write_text
from studio.core.jobs import CancelToken, UserFacingError
from studio.core.wording import write_failure

CATALOG_FILE = ASSETS_DIR / "catalogs" / "models.json"
DEFAULT_ENDPOINT = "https://huggingface.co"
MARKER = ".studio-download.json"
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_ALWAYS = (".json", ".txt", ".model", ".jinja", ".tiktoken")
_WEIGHTS = (".safetensors", ".bin", ".ckpt", ".pth", ".pt")
_NEVER_DIRS = ("safety_checker", "onnx", "openvino", "flax", "tf", "coreml", "runs", ".git")
_NEVER_SUFFIXES = (".msgpack", ".h5", ".onnx", ".onnx_data", ".gguf", ".pb", ".ot", ".tflite",
                   ".mlmodel", ".png", ".jpg", ".jpeg", ".gif", ".webp", ".md")
_VARIANT = re.compile(r"\.fp16(?=\.|-)")
_SHARD = re.compile(r"-\d{5}-of-\d{5}")


@dataclass
class HubFile:
    """One file to fetch: its name in the repo, where it goes in the model folder, its size."""

    name: str
    size: int
    target: str = ""
    sha256: str = ""  # LFS files only


@dataclass
class DownloadPlan:
    """What a download will fetch, for the confirmation; ``skipped`` lists what it leaves out."""

    repo_id: str
    revision: str
    files: list[HubFile]
    skipped: list[str] = field(default_factory=list)
    gated: bool = False
    fp16: bool = False

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.files)


class NotOnHub(UserFacingError):
    """The repository asked for is not one Studio can download: not a repo id, not on the Hub,
    no such revision, or no weights Studio can load (the person's input, not the network)."""


@dataclass
class TransferStatus:
    """Progress of a download: bytes, speed (bytes/s, smoothed) and the time left."""

    done: int
    total: int
    speed: float
    eta_s: float | None
    file: str
    file_index: int
    file_count: int


@dataclass
class CatalogModel:
    """A recommended model (assets/catalogs/models.json); sizes and memory are approximate."""

    repo_id: str
    title: str
    kind: str
    purpose: str
    size_gb: float
    licence: str
    memory: str


def load_catalog(path: Path = CATALOG_FILE) -> list[CatalogModel]:
    """The recommended models, in the catalog's order."""
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    known = set(CatalogModel.__dataclass_fields__)
    return [CatalogModel(**{k: v for k, v in m.items() if k in known}) for m in data["models"]]


def hub_endpoint() -> str:
    """The Hub in force now (``HF_ENDPOINT`` is read at call time, not import time)."""
    return (os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")


def is_offline() -> bool:
    env = os.environ.get("HF_HUB_OFFLINE", "").strip().lower()
    if env in ("1", "true", "yes", "on"):
        return True
    if env in ("0", "false", "no", "off"):
        return False
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def access_token(paths: Paths | None = None) -> str | None:
    """The Hub token saved in Studio (keyring or key file), else huggingface_hub's own login."""
    from studio.library.secrets import get_api_key

    token = get_api_key(hub_endpoint(), paths)
    if token:
        return token
    from huggingface_hub import get_token

    return get_token()


def save_access_token(token: str, paths: Paths | None = None) -> str:
    """Store (or, when empty, delete) the Hub token; returns where it is kept."""
    from studio.library.secrets import set_api_key

    return set_api_key(hub_endpoint(), token.strip(), paths)


# -- checking what the Hub (or a mirror in HF_ENDPOINT) says --------------------------------------
def unsafe_repo_path(name: str) -> str:
    """Why a repo file name could land outside the model folder on some OS, or '' when it is safe.

    A repo path is relative, '/'-separated, with no '..', no drive, no backslash (a separator on
    Windows: ``a\\..\\..\\x``) and no control characters. A hostile mirror could otherwise list
    ``/x``, ``../x`` or ``C:/x`` and have it written anywhere.
    """
    if not name or len(name) > 1024:
        return "it is empty or too long"
    if "\\" in name:
        return "it has a backslash"
    if ":" in name or any(ord(c) < 32 for c in name):
        return "it has a drive letter, a ':' or a control character"
    if PurePosixPath(name).is_absolute() or PureWindowsPath(name).anchor:
        return "it is an absolute path"
    if any(part in ("", ".", "..") for part in name.split("/")):
        return "it has '..', '.' or an empty folder name"
    return ""


def _check_repo_paths(repo_id: str, names: list[str]) -> None:
    for name in names:
        why = unsafe_repo_path(name)
        if why:
            raise UserFacingError(
                f"{hub_endpoint()} lists a file named {name[:200]!r} in {repo_id}, and {why}: it "
                "could be written outside the models folder, so nothing was downloaded. If "
                "HF_ENDPOINT points to a mirror, check that you trust it.")


# -- choosing files -----------------------------------------------------------------------------
def select_files(files: list[HubFile], fp16: bool) -> tuple[list[HubFile], list[str]]:
    """The files Studio needs from a repo listing, and the names it leaves out."""
    names = {f.name for f in files}
    diffusers = "model_index.json" in names
    keep: list[HubFile] = []
    skipped: list[str] = []
    by_dir: dict[str, list[HubFile]] = {}
    for f in files:
        p = PurePosixPath(f.name)
        top = p.parts[0] if len(p.parts) > 1 else ""
        suffix = p.suffix.lower()
        if (top in _NEVER_DIRS or suffix in _NEVER_SUFFIXES or p.name.startswith(".")
                or (len(p.parts) > 1 and not diffusers)  # transformers repos: top level only
                or len(p.parts) > 2):
            skipped.append(f.name)
        elif suffix in _WEIGHTS:
            if diffusers and not top:  # e.g. sd_xl_base_1.0.safetensors beside unet/ …
                skipped.append(f.name)
            else:
                by_dir.setdefault(top, []).append(f)
        elif suffix in _ALWAYS or p.name.upper().startswith(("LICENSE", "LICENCE")):
            if _VARIANT.search(p.name):
                skipped.append(f.name)  # a variant's index: we keep plain names (see below)
            else:
                keep.append(HubFile(f.name, f.size, f.name, f.sha256))
        else:
            skipped.append(f.name)
    for group in by_dir.values():
        safetensors = [f for f in group if f.name.endswith(".safetensors")]
        candidates = safetensors or group  # .bin etc. only where there is no safetensors
        variant = [f for f in candidates if _VARIANT.search(PurePosixPath(f.name).name)]
        plain = [f for f in candidates if f not in variant]
        # A sharded fp16 variant's index names the variant shards; renaming them would break
        # it, so sharded components always come in full precision.
        use_variant = fp16 and variant and not any(_SHARD.search(f.name) for f in variant)
        chosen = variant if use_variant or not plain else plain
        for f in group:
            if f in chosen:
                target = _VARIANT.sub("", f.name) if use_variant else f.name
                keep.append(HubFile(f.name, f.size, target, f.sha256))
            else:
                skipped.append(f.name)
    return keep, skipped


# -- asking the Hub -----------------------------------------------------------------------------
def _hub_error(exc: Exception, repo_id: str) -> UserFacingError:
    """A message a person can act on for whatever the Hub client raised."""
    from huggingface_hub import errors

    if isinstance(exc, errors.OfflineModeIsEnabled):
        return UserFacingError(offline_message())
    if isinstance(exc, errors.GatedRepoError):
        return UserFacingError(gated_message(repo_id))
    if isinstance(exc, errors.RepositoryNotFoundError):
        return NotOnHub(f"{repo_id} was not found on the Hugging Face Hub. Check the "
                               "name; if it is a private repository, add an access token.")
    if isinstance(exc, errors.RevisionNotFoundError):
        return NotOnHub(f"{repo_id} has no such revision.")
    if isinstance(exc, errors.HfHubHTTPError):
        code = getattr(exc.response, "status_code", 0)
        if code in (401, 403):
            return UserFacingError(gated_message(repo_id))
        return UserFacingError(f"The Hugging Face Hub answered {code} for {repo_id}.")
    return UserFacingError(f"Cannot reach {hub_endpoint()} ({exc.__class__.__name__}: {exc}). "
                           "Check the internet connection.")


def offline_message() -> str:
    return ("Studio is offline (HF_HUB_OFFLINE is set), so nothing can be downloaded. Unset "
            "HF_HUB_OFFLINE to download models.")


def gated_message(repo_id: str) -> str:
    return (f"Access to {repo_id} was refused: it is a gated model. Accept its licence at "
            f"{hub_endpoint()}/{repo_id} while logged in, then add an access token (a 'read' "
            "token from your Hugging Face settings) in the Download dialog or with "
            "'studio models download --token'.")


def plan_download(repo_id: str, *, fp16: bool, token: str | None = None,
                  timeout: float = 10.0) -> DownloadPlan:
    """Ask the Hub which files ``repo_id`` has and choose the ones to fetch."""
    repo_id = repo_id.strip()
    if not _REPO_ID.match(repo_id) or any(p in (".", "..") for p in repo_id.split("/")):
        raise NotOnHub(f"{repo_id!r} is not a repository id like 'org/name'.")
    if is_offline():
        raise UserFacingError(offline_message())
    from huggingface_hub import HfApi

    api = HfApi(endpoint=hub_endpoint(), token=token or False)
    try:
        info = api.model_info(repo_id, files_metadata=True, timeout=timeout)
        gated = bool(getattr(info, "gated", False))
        if gated:
            if not token:
                raise UserFacingError(gated_message(repo_id))
            api.auth_check(repo_id, token=token)
    except UserFacingError:
        raise
    except Exception as exc:  # noqa: BLE001 - every Hub/transport error becomes a message
        raise _hub_error(exc, repo_id) from exc
    listing = [HubFile(s.rfilename, int(s.size or 0), s.rfilename,
                       getattr(getattr(s, "lfs", None), "sha256", "") or "")
               for s in info.siblings or []]
    _check_repo_paths(repo_id, [f.name for f in listing])
    files, skipped = select_files(listing, fp16)
    if not any(f.name.endswith(_WEIGHTS) for f in files):
        raise NotOnHub(f"{repo_id} has no weight files Studio can load (safetensors).")
    return DownloadPlan(repo_id, str(info.sha or "main"), files, skipped, gated, fp16)


# -- fetching -----------------------------------------------------------------------------------
def staging_dir(repo_id: str, paths: Paths) -> Path:
    return paths.models_dir / ".downloads" / repo_id.replace("/", "--")


def destination(repo_id: str, paths: Paths) -> Path:
    """``<models>/<name>``, or ``<models>/<org>--<name>`` when that name is taken by another
    model (``<models>/taesd`` is where the TAESD previewer looks)."""
    plain = paths.models_dir / repo_id.split("/")[1]
    if not plain.exists():
        return plain
    try:
        marker = json.loads((plain / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        marker = {}
    return plain if marker.get("repo_id") == repo_id else \
        paths.models_dir / repo_id.replace("/", "--")


class _Meter:
    """Bytes done overall, a smoothed speed and the time left, reported at most 10×/s."""

    def __init__(self, plan: DownloadPlan, report: Callable[[TransferStatus], None] | None):
        self.plan, self.report = plan, report
        self.base = 0  # bytes of the files already finished
        self.speed = 0.0
        self._last_t, self._last_done, self._last_report = time.monotonic(), 0, 0.0

    def update(self, done: int, file: str, index: int, force: bool = False) -> None:
        now = time.monotonic()
        overall = self.base + done
        dt = now - self._last_t
        if dt >= 0.5:
            rate = max(overall - self._last_done, 0) / dt
            self.speed = rate if self.speed == 0 else 0.7 * self.speed + 0.3 * rate
            self._last_t, self._last_done = now, overall
        if self.report and (force or now - self._last_report >= 0.1):
            self._last_report = now
            left = self.plan.total_bytes - overall
            eta = left / self.speed if self.speed > 0 else None
            self.report(TransferStatus(overall, self.plan.total_bytes, self.speed, eta, file,
                                       index, len(self.plan.files)))


def download(plan: DownloadPlan, paths: Paths, *, token: str | None = None,
             progress: Callable[[TransferStatus], None] | None = None,
             cancel: CancelToken | None = None) -> Path:
    """Fetch the plan's files (resuming what an earlier attempt left); returns the model folder.

    A cancel raises :class:`~studio.core.jobs.JobCancelled` and keeps the partial files for a resume.
    """
    from studio.library.download import download_file

    if is_offline():
        raise UserFacingError(offline_message())
    dest = destination(plan.repo_id, paths)
    if dest.exists():
        raise UserFacingError(f"{plan.repo_id} is already in the library at {dest}. Remove it "
                              "first to download it again.")
    # again here: a plan may come from elsewhere than plan_download (a queued job)
    _check_repo_paths(plan.repo_id, [n for f in plan.files for n in (f.name, f.target)])
    stage = staging_dir(plan.repo_id, paths)
    try:
        stage.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserFacingError(f"The models folder {paths.models_dir} cannot be written "
                              f"({exc.strerror or exc}).") from exc
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    meter = _Meter(plan, progress)
    for index, f in enumerate(plan.files):
        target = stage / f.target
        if target.is_file() and target.stat().st_size == f.size:
            meter.base += f.size  # finished by an earlier attempt
            continue
        url = (f"{hub_endpoint()}/{plan.repo_id}/resolve/{plan.revision}/"
               f"{urllib.parse.quote(f.name)}")
        def report(done: int, _total: int, name: str = f.target, i: int = index) -> None:
            meter.update(done, name, i)

        try:
            download_file(url, target, expected_sha256=f.sha256, cancel=cancel, headers=headers,
                          progress=report)
        except UserFacingError as exc:
            if re.search(r"answered 40[13]\b", str(exc)):
                raise UserFacingError(gated_message(plan.repo_id)) from exc
            raise
        except OSError as exc:
            if exc.errno == errno.ENOSPC:
                raise UserFacingError(write_failure(exc, f.target, stage) + " What was "
                                      "downloaded is kept and resumes when you start again.") \
                    from exc
            raise UserFacingError(f"Writing {f.target} failed ({exc.strerror or exc}); the "
                                  "partial file is kept and resumes next time.") from exc
        meter.base += f.size
        meter.update(0, f.target, index, force=True)
    atomic_write_text(stage / MARKER, json.dumps(
        {"repo_id": plan.repo_id, "revision": plan.revision, "fp16": plan.fp16,
         "files": [f.target for f in plan.files], "downloaded": time.time()}, indent=1))
    os.replace(stage, dest)
    return dest
