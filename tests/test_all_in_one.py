"""All-in-one FLUX.1 / SD 3.5 checkpoints and Chroma split files (issue 15, "Sources"): the one
file that carries its text encoders and VAE is listed as one ready model and draws bit for bit
what the diffusers folder with the same weights draws; a part it lacks is asked for alone;
Chroma's transformer with a T5 and FLUX's ae beside it works like FLUX's split files."""

from __future__ import annotations

import numpy as np
import pytest

from studio.core.config import Settings, default_paths
from studio.core.jobs import UserFacingError
from studio.library.models import entry_for_path, find_txt2img_models
from tests.fixtures.tiny_allinone import write_all_in_one, write_chroma_split
from tests.fixtures.tiny_models import write_tiny_config_folder
from tests.test_split_files import generate


@pytest.fixture
def configs(tmp_path, tiny_flux_dir, tiny_sd3_dir, tiny_chroma_dir, monkeypatch):
    """The tiny families' config folders (with their T5 tokenizers), as the shipped ones are."""
    root = tmp_path / "configs"
    write_tiny_config_folder(tiny_flux_dir, root / "flux")
    write_tiny_config_folder(tiny_sd3_dir, root / "sd3")
    write_tiny_config_folder(tiny_chroma_dir, root / "chroma")
    monkeypatch.setenv("STUDIO_SINGLE_FILE_CONFIG_DIR", str(root))
    return root


@pytest.mark.parametrize("family", ["flux", "sd3"])
def test_an_all_in_one_file_is_one_ready_model_that_draws_what_the_folder_draws(
        family, request, tmp_path, configs):
    folder = request.getfixturevalue(f"tiny_{family}_dir")
    comfy = tmp_path / "ComfyUI"
    model = write_all_in_one(folder, comfy / "models" / "checkpoints" / f"{family}-aio.safetensors",
                             family)
    settings = Settings(extra_model_dirs=[str(comfy)])
    (entry,) = find_txt2img_models(settings, default_paths())
    assert entry.path == model and entry.family == family and not entry.needs
    roles = {"flux": {"clip_l", "t5xxl", "vae"}, "sd3": {"clip_l", "clip_g", "vae"}}[family]
    assert entry.parts == {role: model for role in roles}
    cfg = {"flux": 3.5, "sd3": 4.5}[family]
    assert np.array_equal(generate(model, cfg=cfg), generate(folder, cfg=cfg))
