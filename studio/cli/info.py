"""``studio info``: versions, the device in use and where Studio keeps its files.

Exit status as every command (:data:`studio.cli.EXIT_RULE`): 0, or 2 on a usage error."""

from __future__ import annotations

import argparse
import importlib.util
import json
import platform
import re
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

NAME = "info"
HELP = "show versions, the compute device and Studio's folders"

PACKAGES = ("torch", "diffusers", "transformers", "accelerate", "safetensors", "huggingface_hub",
            "PySide6-Essentials", "Pillow", "numpy")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--no-device", action="store_true",
                        help="do not import torch to find the device (faster)")


def _version(dist: str) -> str:
    if dist == "torch":
        return _torch_version()
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        if dist == "PySide6-Essentials":  # the full PySide6 wheel has another name
            return _version("PySide6")
        return ""


def _torch_version() -> str:
    """torch's full version, build tag included (``2.5.1+cu124``), as ``torch.__version__`` says.

    The wheels on PyPI carry no local version in their metadata (``2.5.1``), yet which build is
    installed (CUDA 12.4, 13.0, CPU only) is what a bug report needs. ``torch/version.py`` holds
    it; reading that file, rather than importing torch, keeps ``--no-device`` fast."""
    torch = sys.modules.get("torch")
    if torch is not None and getattr(torch, "__version__", None):
        return str(torch.__version__)
    try:
        spec = importlib.util.find_spec("torch")
        if spec is not None and spec.origin:
            text = Path(spec.origin).with_name("version.py").read_text(encoding="utf-8")
            match = re.search(r"^__version__\s*=\s*['\"]([^'\"]+)['\"]", text, re.MULTILINE)
            if match:
                return match.group(1)
    except (OSError, ImportError, ValueError):
        pass
    try:
        return metadata.version("torch")
    except metadata.PackageNotFoundError:
        return ""


def collect(with_device: bool = True) -> dict[str, Any]:
    """Everything ``studio info`` shows, as plain data."""
    from studio import __version__
    from studio.core.config import default_paths, load_settings

    loaded = load_settings()
    settings = loaded.settings
    base = default_paths()
    paths = settings.resolved_paths(base)
    info: dict[str, Any] = {
        "studio": __version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "packages": {name.split("-")[0]: _version(name) for name in PACKAGES},
        "settings": {"device": settings.device, "precision": settings.precision},
        "paths": {
            "settings_file": str(base.settings_file),
            "models": str(paths.models_dir),
            "extra_model_dirs": list(settings.extra_model_dirs),
            "outputs": str(paths.outputs_dir),
            "data": str(paths.data_dir),
            "database": str(paths.database),
            "runs": str(paths.runs_dir),
            "hf_cache": _hf_cache(),
        },
    }
    if loaded.notice:
        info["notice"] = loaded.notice
    if with_device:
        from studio.core.devices import describe_device

        try:
            dev = describe_device(settings.device)
            info["device"] = {"kind": dev.kind, "label": dev.label,
                              "total_memory": dev.total_memory}
        except Exception as exc:  # noqa: BLE001 - a broken torch install is worth reporting
            info["device"] = {"kind": "unknown", "label": f"unavailable ({exc})",
                              "total_memory": 0}
        torch = sys.modules.get("torch")
        if torch is not None:
            info["torch_cuda"] = getattr(torch.version, "cuda", None) or ""
    return info


def _hf_cache() -> str:
    try:
        from studio.library.hf_cache import hf_cache_dir

        return str(hf_cache_dir())
    except Exception:  # noqa: BLE001 - huggingface_hub missing or broken: say so, don't fail
        return ""


def _print_text(info: dict[str, Any]) -> None:
    print(f"Studio {info['studio']}  (Python {info['python']}, {info['platform']})")
    if "device" in info:
        print(f"Device: {info['device']['label']}  (setting: {info['settings']['device']}, "
              f"precision: {info['settings']['precision']})")
    print("Packages:")
    for name, version in info["packages"].items():
        print(f"  {name:<16} {version or 'not installed'}")
    print("Folders:")
    labels = {"settings_file": "settings file", "hf_cache": "HF cache",
              "extra_model_dirs": "extra models"}
    for key, value in info["paths"].items():
        if isinstance(value, list):
            value = ", ".join(value) or "(none)"
        print(f"  {labels.get(key, key):<16} {value or '(unknown)'}")
    if info.get("notice"):
        print(f"Note: {info['notice']}")


def run(args: argparse.Namespace) -> int:
    info = collect(with_device=not args.no_device)
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        _print_text(info)
    return 0
