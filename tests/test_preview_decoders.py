"""Tiny preview decoders for every family (issue 15): each family names its TAESD-style decoder
(TAESD, TAESDXL, TAESD3, TAEF1) or says why it has none (FLUX.2's TAEF2 and Qwen-Image's TAEW2.1
are architectures diffusers cannot build yet). An installed decoder, in the HF cache or the
models folder, decodes the previews bit for bit as ``AutoencoderTiny.decode`` does; the library
shows which family each decoder serves, and TAEF2 / TAEW2.1 files with the sentence why they
are not used; without one, previews fall back to the latent→RGB factors."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from studio.core.config import Settings, default_paths
from studio.core.jobs import CancelToken
from studio.core.requests import Txt2ImgRequest
from studio.library.catalog import list_models
from studio.library.classify import classify_file
from studio.library.families import FAMILIES, tae_families
from studio.pipelines.diffusion import previews
from studio.pipelines.diffusion.previews import find_taesd, latents_to_rgb, make_previewer
from studio.pipelines.diffusion.txt2img import Txt2ImgService
from tests.fixtures.hub_cache import add_to_hub_cache
from tests.fixtures.sinks import RecordingSink


def tiny_tae(latent_channels: int, seed: int = 0):
    """A tiny random AutoencoderTiny (the class madebyollin's TAESD folders load into)."""
    from diffusers import AutoencoderTiny

    torch.manual_seed(seed)
    return AutoencoderTiny(encoder_block_out_channels=(8, 8, 8, 8),
                           decoder_block_out_channels=(8, 8, 8, 8),
                           num_encoder_blocks=(1, 1, 1, 1), num_decoder_blocks=(1, 1, 1, 1),
                           latent_channels=latent_channels)


def expected_preview(model, latents: torch.Tensor) -> np.ndarray:
    """What AutoencoderTiny.decode makes of the first latent, as the preview's uint8 picture."""
    config = model.config
    with torch.no_grad():
        lat = latents[:1] / config.scaling_factor + (config.shift_factor or 0.0)
        image = model.decode(lat).sample[0]
    image = ((image.float().clamp(-1, 1) + 1.0) * 127.5).round().to(torch.uint8)
    return image.permute(1, 2, 0).numpy()


@pytest.fixture(autouse=True)
def fresh_decoder_cache():
    previews._taesd_cache.clear()
    yield
    previews._taesd_cache.clear()


@pytest.fixture
def hf_home(tmp_path, monkeypatch):
    home = tmp_path / "hf-home"
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    return home


def test_every_family_names_its_tiny_decoder_or_says_why_not():
    for fam in FAMILIES.values():
        assert bool(fam.tae_repo) != bool(fam.tae_missing), fam.key
    assert "TAEF2" in FAMILIES["flux2"].tae_missing
    assert "TAEW2.1" in FAMILIES["qwen-image"].tae_missing
    assert FAMILIES["qwen-image-edit"].tae_missing == FAMILIES["qwen-image"].tae_missing
    assert [f.key for f in tae_families("madebyollin/taef1")] == [
        "flux", "flux-kontext", "chroma", "z-image"]
    assert [f.key for f in tae_families("taesd3")] == ["sd3"]
    assert tae_families("madebyollin/taef2") == [] and tae_families("taesd") != []


@pytest.mark.parametrize("repo, families, channels", [
    ("madebyollin/taef1", ("flux", "flux-kontext", "chroma", "z-image"), 16),
    ("madebyollin/taesd3", ("sd3",), 16),
    ("madebyollin/taesdxl", ("sdxl",), 4),
])
def test_an_installed_decoder_decodes_previews_bit_equal(hf_home, tmp_path, repo, families,
                                                         channels):
    model = tiny_tae(channels)
    model.save_pretrained(str(tmp_path / "src"))
    snap = add_to_hub_cache(hf_home, repo, tmp_path / "src")
    latents = torch.randn(2, channels, 8, 8, generator=torch.Generator().manual_seed(3))
    for key in families:
        assert find_taesd(key, default_paths()) == snap
        previewer = make_previewer("taesd", key, 2, default_paths(), "cpu", torch.float32)
        assert previewer.mode == "taesd" and previewer.taesd is not None
        before = latents.clone()
        assert previewer(1, 4, latents) is None  # every 2nd step only
        picture = previewer(2, 4, latents)
        assert picture.shape == (64, 64, 3) and picture.dtype == np.uint8
        assert np.array_equal(picture, expected_preview(model.eval(), latents))
        assert torch.equal(latents, before)  # a preview only reads the latents


def test_flux_generates_with_taef1_previews_from_the_models_folder(tiny_flux_dir):
    tiny_tae(16).save_pretrained(str(default_paths().models_dir / "taef1"))
    req = Txt2ImgRequest(model=str(tiny_flux_dir), prompt="a lighthouse", steps=2, cfg=3.5,
                         width=64, height=64, seed=5)
    images, sinks = {}, {}
    for mode in ("taesd", "fast"):
        settings = Settings(device="cpu", precision="fp32", preview_mode=mode, taesd_every=1)
        sinks[mode] = RecordingSink()
        (result,) = Txt2ImgService(lambda s=settings: s, default_paths).run(
            req, sinks[mode], CancelToken())
        images[mode] = np.asarray(result.image)
    shown = [p for _, _, p in sinks["taesd"].steps if p is not None]
    assert len(shown) == 2 and shown[0].shape == (64, 64, 3)  # full size: decoded, not factors
    assert [p.shape for _, _, p in sinks["fast"].steps if p is not None][0] == (8, 8, 3)
    assert np.array_equal(images["taesd"], images["fast"])  # previews never change the image


def taef2_weights() -> dict[str, torch.Tensor]:
    """Tensors named as madebyollin/taef2's taef2.safetensors names them: AutoencoderTiny's keys
    for 32 latent channels, plus the "pool" branch of the decoder's first three blocks."""
    weights = {k: v.half() for k, v in tiny_tae(32).state_dict().items()}
    for block in (2, 3, 4):
        weights[f"decoder.layers.{block}.pool.0.weight"] = torch.zeros(32, 8, 1, 1).half()
        weights[f"decoder.layers.{block}.pool.1.weight"] = torch.ones(32).half()
        weights[f"decoder.layers.{block}.pool.1.bias"] = torch.zeros(32).half()
        weights[f"decoder.layers.{block}.pool.3.weight"] = torch.zeros(8, 32, 1, 1).half()
    return weights


def taehv_weights(latent_channels: int = 16) -> dict[str, torch.Tensor]:
    """Tensors named as madebyollin/taehv's files name them (``encoder.N`` / ``decoder.N``, the
    decoder's last conv at index 22); the shapes are kept small."""
    return {"encoder.0.weight": torch.zeros(8, 3, 3, 3).half(),
            "decoder.1.weight": torch.zeros(8, latent_channels, 3, 3).half(),
            "decoder.3.conv.0.weight": torch.zeros(8, 16, 3, 3).half(),
            "decoder.22.weight": torch.zeros(3, 8, 3, 3).half(),
            "decoder.22.bias": torch.zeros(3).half()}


def test_taef2_and_taew2_1_files_are_named_with_why_they_are_not_used(tmp_path):
    save_file(taef2_weights(), tmp_path / "taef2.safetensors")
    save_file(taehv_weights(), tmp_path / "taew2_1.safetensors")
    save_file(taehv_weights(32), tmp_path / "taehv1_5.safetensors")
    kind = classify_file(tmp_path / "taef2.safetensors")
    assert (kind.kind, kind.family, kind.precision) == ("preview", "flux2", "fp16")
    assert kind.reason == FAMILIES["flux2"].tae_missing
    kind = classify_file(tmp_path / "taew2_1.safetensors")
    assert (kind.kind, kind.family) == ("preview", "qwen-image")
    assert kind.reason == FAMILIES["qwen-image"].tae_missing
    kind = classify_file(tmp_path / "taehv1_5.safetensors")
    assert (kind.kind, kind.family) == ("preview", "")
    assert "32-channel latents" in kind.reason and "cannot build" in kind.reason
    # a bare TAESD decoder file keeps its sentence
    save_file({"decoder.layers.0.weight": torch.zeros(8, 4, 3, 3)},
              tmp_path / "taesd_decoder.safetensors")
    kind = classify_file(tmp_path / "taesd_decoder.safetensors")
    assert (kind.kind, kind.family) == ("preview", "sd1") and "TAESD folder" in kind.reason


def test_the_library_says_which_family_each_decoder_serves(hf_home, tmp_path):
    paths = default_paths()
    tiny_tae(16).save_pretrained(str(tmp_path / "src-taef1"))
    add_to_hub_cache(hf_home, "madebyollin/taef1", tmp_path / "src-taef1")
    (tmp_path / "src-taef2").mkdir()
    save_file(taef2_weights(), tmp_path / "src-taef2" / "taef2.safetensors")
    add_to_hub_cache(hf_home, "madebyollin/taef2", tmp_path / "src-taef2")
    tiny_tae(16).save_pretrained(str(paths.models_dir / "taesd3"))
    tiny_tae(4).save_pretrained(str(paths.models_dir / "my-own-tae"))
    entries = {e.name: e for e in list_models(Settings(), paths) if e.kind == "preview"}
    assert (entries["madebyollin/taef1"].family,
            entries["madebyollin/taef1"].workspaces) == ("flux", ("Generate",))
    assert (entries["taesd3"].family, entries["taesd3"].workspaces) == ("sd3", ("Generate",))
    assert (entries["my-own-tae"].family, entries["my-own-tae"].workspaces) == ("sd1", ())
    taef2 = entries["taef2"]
    assert (taef2.family, taef2.workspaces, taef2.repo_id) == ("flux2", (), "madebyollin/taef2")
    assert taef2.detail == FAMILIES["flux2"].tae_missing


@pytest.mark.parametrize("key, channels", [("flux2", 32), ("qwen-image", 16),
                                           ("qwen-image-edit", 16)])
def test_flux2_and_qwen_image_keep_the_factors_and_say_why(hf_home, tmp_path, caplog, key,
                                                           channels):
    (tmp_path / "src").mkdir()
    save_file(taef2_weights(), tmp_path / "src" / "taef2.safetensors")
    add_to_hub_cache(hf_home, "madebyollin/taef2", tmp_path / "src")
    (default_paths().models_dir / "taef2").mkdir(parents=True)
    save_file(taef2_weights(), default_paths().models_dir / "taef2" / "taef2.safetensors")
    assert find_taesd(key, default_paths()) is None
    with caplog.at_level(logging.INFO, logger=previews.__name__):
        previewer = make_previewer("taesd", key, 4, default_paths(), "cpu", torch.float32)
    assert previewer.mode == "fast" and previewer.taesd is None
    assert FAMILIES[key].tae_missing in caplog.text
    latents = torch.randn(1, channels, 8, 8, generator=torch.Generator().manual_seed(1))
    assert np.array_equal(previewer(1, 10, latents), latents_to_rgb(latents, key))
