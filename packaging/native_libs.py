"""Which accelerator libraries a bundle can use, from the torch it is built with.

bitsandbytes ships one native library per backend (``libbitsandbytes_cpu``, ``_cuda118`` …
``_cuda132``, ``_rocm…``, ``_xpu…``: ~120 MB together) and picks the one matching torch at run
time. A bundle carries exactly one torch, so the others can never load: a CPU bundle keeps only
the CPU library, a CUDA bundle the CPU and CUDA ones, a ROCm bundle the CPU and ROCm ones.
``torch/version.py`` is read as text, so the spec does not import torch to decide.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

#: bitsandbytes' native libraries, by the backend in their name
_BNB_LIB = re.compile(r"(?:^|/)bitsandbytes/libbitsandbytes_([a-z]+)[0-9]*\.(?:so|dll|dylib)$")


def torch_backend(version_py: Path | None = None) -> str:
    """'cuda', 'rocm', 'xpu' or 'cpu': what the installed torch was built for."""
    if version_py is None:
        spec = importlib.util.find_spec("torch")
        if spec is None or not spec.submodule_search_locations:
            return "cpu"
        version_py = Path(next(iter(spec.submodule_search_locations))) / "version.py"
    try:
        text = version_py.read_text(encoding="utf-8")
    except OSError:
        return "cpu"
    for backend, name in (("rocm", "hip"), ("cuda", "cuda"), ("xpu", "xpu")):
        if re.search(rf"^{name}\s*(?::[^=]*)?=\s*['\"]", text, re.MULTILINE):
            return backend
    return "cpu"


def unusable_accelerator_lib(dest: str, backend: str) -> bool:
    """True for a bitsandbytes library built for a backend other than the CPU and ``backend``."""
    found = _BNB_LIB.search(dest.replace("\\", "/"))
    return found is not None and found.group(1) not in ("cpu", backend)
