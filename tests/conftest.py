"""Shared test fixtures. Nothing here downloads anything; every model is built locally."""

from __future__ import annotations

import os
import sys
from pathlib import Path

# The repo root on sys.path, so ``tests.fixtures`` imports however pytest is started.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

# Set before anything imports Qt or huggingface_hub (both read these at import time).
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ["HF_HUB_OFFLINE"] = "1"
# One OpenMP thread per test process (and the CLI children, which inherit it): the suite runs in
# two worker processes already, and torch's threads spinning on a busy 2-core machine cost over
# a third of the suite's CPU time for nothing. Results do not depend on it (each equivalence test
# computes both sides in one process).
for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import pytest  # noqa: E402

# -- order: the longest files first ----------------------------------------------------------
#: Files that take minutes of wall time (child processes walking every window, kill loops). With
#: ``--dist loadfile`` each file runs on one worker in collection order; started last, one of them
#: is the whole suite's tail on a busy machine. Started first, the short files fill in around them.
LONGEST_FIRST = ("test_gui_layout_audit.py", "test_cli_sigterm.py", "test_crash_kills.py",
                 "test_packaging_self_test.py", "test_train_d_layout.py")


def pytest_collection_modifyitems(config, items):
    def rank(item) -> int:
        name = Path(str(item.fspath)).name
        return LONGEST_FIRST.index(name) if name in LONGEST_FIRST else len(LONGEST_FIRST)

    items.sort(key=rank)  # stable: every other test keeps its order


# -- isolation: every test gets its own STUDIO_HOME and an offline Hugging Face hub ----------


@pytest.fixture(autouse=True)
def studio_home(tmp_path, monkeypatch):
    """A fresh STUDIO_HOME per test, so nothing touches the user's real folders."""
    home = tmp_path / "studio-home"
    home.mkdir()
    monkeypatch.setenv("STUDIO_HOME", str(home))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("STUDIO_SINGLE_FILE_CONFIG_DIR", raising=False)
    return home


# -- tiny text-to-image models (engine) -------------------------------------------------------


@pytest.fixture(scope="session")
def tiny_models_root(tmp_path_factory):
    return tmp_path_factory.mktemp("tiny-models")


@pytest.fixture(scope="session")
def tiny_sd15_dir(tiny_models_root):
    """A tiny random SD 1.5-layout diffusers pipeline folder."""
    from tests.fixtures.tiny_models import build_tiny_sd15

    return build_tiny_sd15(tiny_models_root / "tiny-sd15")


@pytest.fixture(scope="session")
def tiny_sdxl_dir(tiny_models_root):
    """A tiny random SDXL diffusers pipeline folder."""
    from tests.fixtures.tiny_models import build_tiny_sdxl

    return build_tiny_sdxl(tiny_models_root / "tiny-sdxl")


@pytest.fixture(scope="module")
def sd15_pipe(tiny_sd15_dir):
    """The tiny SD 1.5 folder loaded with plain diffusers (a module shares it)."""
    from diffusers import StableDiffusionPipeline

    return StableDiffusionPipeline.from_pretrained(str(tiny_sd15_dir), safety_checker=None,
                                                   local_files_only=True)


@pytest.fixture(scope="module")
def sdxl_pipe(tiny_sdxl_dir):
    """The tiny SDXL folder loaded with plain diffusers (a module shares it)."""
    from diffusers import StableDiffusionXLPipeline

    return StableDiffusionXLPipeline.from_pretrained(str(tiny_sdxl_dir), local_files_only=True)


@pytest.fixture(scope="session")
def tiny_single_file_configs(tiny_models_root, tiny_sd15_dir, tiny_sdxl_dir):
    """Config folders (``sd1/``, ``sdxl/``) for the tiny single files, as STUDIO_SINGLE_FILE_CONFIG_DIR
    expects them."""
    from tests.fixtures.tiny_models import write_tiny_config_folder

    root = tiny_models_root / "single-file-configs"
    write_tiny_config_folder(tiny_sd15_dir, root / "sd1")
    write_tiny_config_folder(tiny_sdxl_dir, root / "sdxl")
    return root


@pytest.fixture(scope="session")
def tiny_sd15_file(tiny_models_root, tiny_sd15_dir):
    """The tiny SD 1.5 pipeline as one original-layout .safetensors checkpoint."""
    from tests.fixtures.tiny_models import build_tiny_single_file

    return build_tiny_single_file(tiny_sd15_dir, tiny_models_root / "tiny-sd15.safetensors", "sd1")


@pytest.fixture(scope="session")
def tiny_sd3_dir(tiny_models_root):
    """A tiny random SD 3 / 3.5-layout diffusers pipeline folder (no T5, as many downloads)."""
    from tests.fixtures.tiny_models import build_tiny_sd3

    return build_tiny_sd3(tiny_models_root / "tiny-sd3")


@pytest.fixture(scope="session")
def tiny_flux_dir(tiny_models_root):
    """A tiny random FLUX.1-dev-layout diffusers pipeline folder (guidance-distilled)."""
    from tests.fixtures.tiny_models import build_tiny_flux

    return build_tiny_flux(tiny_models_root / "tiny-flux")


@pytest.fixture(scope="session")
def tiny_chroma_dir(tiny_models_root):
    """A tiny random Chroma diffusers pipeline folder (T5 only, real CFG)."""
    from tests.fixtures.tiny_models import build_tiny_chroma

    return build_tiny_chroma(tiny_models_root / "tiny-chroma")


@pytest.fixture(scope="session")
def tiny_qwen_image_dir(tiny_models_root):
    """A tiny random Qwen-Image diffusers pipeline folder (Qwen2.5-VL encoder, true CFG)."""
    from tests.fixtures.tiny_families import build_tiny_qwen_image

    return build_tiny_qwen_image(tiny_models_root / "tiny-qwen-image")


@pytest.fixture(scope="session")
def tiny_z_image_dir(tiny_models_root):
    """A tiny random Z-Image diffusers pipeline folder (Qwen3 encoder, FLUX.1's VAE)."""
    from tests.fixtures.tiny_families import build_tiny_z_image

    return build_tiny_z_image(tiny_models_root / "tiny-z-image")


@pytest.fixture(scope="session")
def tiny_flux2_dir(tiny_models_root):
    """A tiny random FLUX.2 klein diffusers pipeline folder (Qwen3 encoder, 128-ch tokens)."""
    from tests.fixtures.tiny_families import build_tiny_flux2_klein

    return build_tiny_flux2_klein(tiny_models_root / "tiny-flux2-klein")


@pytest.fixture(scope="session")
def tiny_flux_kontext_dir(tiny_models_root, tiny_flux_dir):
    """The tiny FLUX.1 components saved as a FluxKontextPipeline folder (instruction editing)."""
    from tests.fixtures.tiny_families import build_tiny_flux_kontext

    return build_tiny_flux_kontext(tiny_models_root / "tiny-flux-kontext", tiny_flux_dir)


@pytest.fixture(scope="session")
def tiny_sdxl_file(tiny_models_root, tiny_sdxl_dir):
    """The tiny SDXL pipeline as one original-layout .safetensors checkpoint."""
    from tests.fixtures.tiny_models import build_tiny_single_file

    return build_tiny_single_file(tiny_sdxl_dir, tiny_models_root / "tiny-sdxl.safetensors",
                                  "sdxl")


@pytest.fixture
def tiny_single_file_env(tiny_single_file_configs, monkeypatch):
    """Point single-file loading at the tiny config folders for this test."""
    monkeypatch.setenv("STUDIO_SINGLE_FILE_CONFIG_DIR", str(tiny_single_file_configs))
    return tiny_single_file_configs


# -- GUI shell (main window, queue drawer, settings): see tests/gui_fixtures.py ----------------

from tests.gui_fixtures import *  # noqa: E402,F401,F403

# -- chat (issue #5, part A): a tiny Llama chat model ------------------------------------------


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory):
    """A tiny random Llama chat model folder (BPE tokenizer trained locally, ChatML template)."""
    from tests.fixtures.tiny_llama import build_tiny_llama

    return build_tiny_llama(tmp_path_factory.mktemp("tiny-llama") / "tiny-llama")


@pytest.fixture(scope="session")
def tiny_gpt2_dir(tmp_path_factory):
    """A tiny random GPT-2 base model: no chat template (Complete mode)."""
    from tests.fixtures.tiny_llama import build_tiny_gpt2

    return build_tiny_gpt2(tmp_path_factory.mktemp("tiny-gpt2") / "tiny-gpt2")
