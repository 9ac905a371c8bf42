"""Tiny preview decoders for every family (issue 15): each family names its TAESD-style decoder
(TAESD, TAESDXL, TAESD3, TAEF1, TAEF2) or says why it has none (Qwen-Image's TAEW2.1 is a video
decoder diffusers cannot build yet). An installed decoder, in the HF cache or the models folder,
decodes the previews bit for bit as ``AutoencoderTiny.decode`` does — TAEF2 (AutoencoderTiny
plus its pool branches, from either file layout) as TAESD's own definition computes it; the
library shows which family each decoder serves, and TAEW2.1 files with the sentence why they are
not used; without one, previews fall back to the latent→RGB factors."""

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
from studio.library.classify import TAEF2_REASON, classify_file
from studio.library.families import FAMILIES, tae_families
from studio.pipelines.diffusion import previews
from studio.pipelines.diffusion.previews import find_taesd, latents_to_rgb, make_previewer
from studio.pipelines.diffusion.txt2img import Txt2ImgService
from tests.fixtures.hub_cache import add_to_hub_cache
from tests.fixtures.sinks import RecordingSink
from tests.fixtures.tiny_tae import taef2_sequential


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
    assert FAMILIES["flux2"].tae_repo == "madebyollin/taef2"
    assert "TAEW2.1" in FAMILIES["qwen-image"].tae_missing
    assert FAMILIES["qwen-image-edit"].tae_missing == FAMILIES["qwen-image"].tae_missing
    assert [f.key for f in tae_families("madebyollin/taef1")] == [
        "flux", "flux-kontext", "chroma", "z-image"]
    assert [f.key for f in tae_families("taesd3")] == ["sd3"]
    assert [f.key for f in tae_families("madebyollin/taef2")] == ["flux2"]
    assert tae_families("taesd") != []


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


def generate_with_both_previews(model, cfg: float) -> dict[str, RecordingSink]:
    """Generate one 64 px image with TAESD previews and with fast ones; asserts the image is the
    same (previews never change it) and returns each run's sink."""
    req = Txt2ImgRequest(model=str(model), prompt="a lighthouse", steps=2, cfg=cfg, width=64,
                         height=64, seed=5)
    images, sinks = {}, {}
    for mode in ("taesd", "fast"):
        settings = Settings(device="cpu", precision="fp32", preview_mode=mode, taesd_every=1)
        sinks[mode] = RecordingSink()
        (result,) = Txt2ImgService(lambda s=settings: s, default_paths).run(
            req, sinks[mode], CancelToken())
        images[mode] = np.asarray(result.image)
    assert np.array_equal(images["taesd"], images["fast"])
    return sinks


def test_flux_generates_with_taef1_previews_from_the_models_folder(tiny_flux_dir):
    tiny_tae(16).save_pretrained(str(default_paths().models_dir / "taef1"))
    sinks = generate_with_both_previews(tiny_flux_dir, 3.5)
    shown = [p for _, _, p in sinks["taesd"].steps if p is not None]
    assert len(shown) == 2 and shown[0].shape == (64, 64, 3)  # full size: decoded, not factors
    assert [p.shape for _, _, p in sinks["fast"].steps if p is not None][0] == (8, 8, 3)


def taef2_weights() -> dict[str, torch.Tensor]:
    """The same decoder in AutoencoderTiny's names (``decoder.layers.N`` = Sequential N+1), with
    encoder keys beside it, as a diffusers-layout TAEF2 file has them."""
    weights = {f"decoder.layers.{int(k.split('.', 1)[0]) - 1}.{k.split('.', 1)[1]}": v
               for k, v in taef2_sequential().items()}
    weights["encoder.layers.0.weight"] = torch.zeros(8, 3, 3, 3).half()
    return weights


def taesd_reference(weights: dict[str, torch.Tensor], latents: torch.Tensor) -> torch.Tensor:
    """TAESD's decoder as its definition reads, written out with torch's functions over the
    Sequential-named tensors: clamp, conv + ReLU, then per layer a block (``x + pool(x)`` first
    where it has one; ReLU(conv3(ReLU(conv2(ReLU(conv1 x)))) + x)), an upsampling ×2 (a layer
    without tensors) or a conv; the picture in [0, 1] (before the final clamp)."""
    import torch.nn.functional as F

    t = {k: v.float() for k, v in weights.items()}
    x = torch.tanh(latents / 3) * 3
    x = F.relu(F.conv2d(x, t["1.weight"], t["1.bias"], padding=1))
    last = max(int(k.split(".")[0]) for k in t)
    for i in range(3, last + 1):
        if f"{i}.conv.0.weight" in t:
            if f"{i}.pool.0.weight" in t:
                p = F.conv2d(x, t[f"{i}.pool.0.weight"])
                p = F.relu(F.group_norm(p, 4, t[f"{i}.pool.1.weight"], t[f"{i}.pool.1.bias"]))
                x = x + F.conv2d(p, t[f"{i}.pool.3.weight"])
            h = F.relu(F.conv2d(x, t[f"{i}.conv.0.weight"], t[f"{i}.conv.0.bias"], padding=1))
            h = F.relu(F.conv2d(h, t[f"{i}.conv.2.weight"], t[f"{i}.conv.2.bias"], padding=1))
            h = F.conv2d(h, t[f"{i}.conv.4.weight"], t[f"{i}.conv.4.bias"], padding=1)
            x = F.relu(h + x)
        elif f"{i}.weight" in t:
            x = F.conv2d(x, t[f"{i}.weight"], t.get(f"{i}.bias"), padding=1)
        else:
            x = F.interpolate(x, scale_factor=2, mode="nearest")
    return x


def taehv_weights(latent_channels: int = 16) -> dict[str, torch.Tensor]:
    """Tensors named as madebyollin/taehv's files name them (``encoder.N`` / ``decoder.N``, the
    decoder's last conv at index 22); the shapes are kept small."""
    return {"encoder.0.weight": torch.zeros(8, 3, 3, 3).half(),
            "decoder.1.weight": torch.zeros(8, latent_channels, 3, 3).half(),
            "decoder.3.conv.0.weight": torch.zeros(8, 16, 3, 3).half(),
            "decoder.22.weight": torch.zeros(3, 8, 3, 3).half(),
            "decoder.22.bias": torch.zeros(3).half()}


def test_taef2_files_are_known_and_taew2_1_files_say_why_they_are_not_used(tmp_path):
    save_file(taef2_weights(), tmp_path / "taef2.safetensors")
    save_file(taehv_weights(), tmp_path / "taew2_1.safetensors")
    save_file(taehv_weights(32), tmp_path / "taehv1_5.safetensors")
    kind = classify_file(tmp_path / "taef2.safetensors")
    assert (kind.kind, kind.family, kind.precision) == ("preview", "flux2", "fp16")
    assert kind.reason == TAEF2_REASON
    torch.save(taef2_sequential(), tmp_path / "taef2_decoder.pth")
    kind = classify_file(tmp_path / "taef2_decoder.pth")  # ComfyUI's vae_approx file
    assert (kind.kind, kind.family) == ("preview", "flux2") and "weights_only" in kind.reason
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
    assert (taef2.family, taef2.workspaces, taef2.repo_id) == ("flux2", ("Generate",),
                                                               "madebyollin/taef2")
    assert taef2.detail == TAEF2_REASON


@pytest.mark.parametrize("key", ["qwen-image", "qwen-image-edit"])
def test_qwen_image_keeps_the_factors_and_says_why(hf_home, tmp_path, caplog, key):
    (default_paths().models_dir / "taef2").mkdir(parents=True)  # FLUX.2's is no use to it
    save_file(taef2_weights(), default_paths().models_dir / "taef2" / "taef2.safetensors")
    assert find_taesd(key, default_paths()) is None
    with caplog.at_level(logging.INFO, logger=previews.__name__):
        previewer = make_previewer("taesd", key, 4, default_paths(), "cpu", torch.float32)
    assert previewer.mode == "fast" and previewer.taesd is None
    assert FAMILIES[key].tae_missing in caplog.text
    latents = torch.randn(1, 16, 8, 8, generator=torch.Generator().manual_seed(1))
    assert np.array_equal(previewer(1, 10, latents), latents_to_rgb(latents, key))


@pytest.mark.parametrize("place", ["models", "vae_approx", "hf-cache"])
def test_taef2_decodes_flux2_previews_as_taesds_definition(hf_home, tmp_path, place):
    """madebyollin/taesd's taef2_decoder.pth (checked once, bit for bit, against taesd.py with
    the real weights) and a diffusers-layout file both load into AutoencoderTiny plus the pool
    branches, and decode as TAESD's decoder computes."""
    models = default_paths().models_dir
    if place == "models":
        models.mkdir(parents=True, exist_ok=True)
        torch.save(taef2_sequential(), models / "taef2_decoder.pth")
        torch.save({"0.weight": torch.zeros(1)}, models / "taef2_encoder.pth")  # never used
    elif place == "vae_approx":
        (models / "vae_approx").mkdir(parents=True)
        save_file(taef2_sequential(), models / "vae_approx" / "taef2_decoder.safetensors")
    else:
        (tmp_path / "src").mkdir()
        save_file(taef2_weights(), tmp_path / "src" / "taef2.safetensors")
        add_to_hub_cache(hf_home, "madebyollin/taef2", tmp_path / "src")
    found = find_taesd("flux2", default_paths())
    assert found is not None and found.is_file() and "encoder" not in found.name
    previewer = make_previewer("taesd", "flux2", 1, default_paths(), "cpu", torch.float32)
    assert previewer.mode == "taesd" and previewer.taesd is not None
    latents = torch.randn(1, 32, 6, 5, generator=torch.Generator().manual_seed(7))
    before = latents.clone()
    picture = previewer(1, 4, latents)
    assert picture.shape == (48, 40, 3) and torch.equal(latents, before)
    with torch.no_grad():
        inner = previewer.taesd.model.decoder.layers(torch.tanh(latents / 3) * 3)
    assert torch.equal(inner, taesd_reference(taef2_sequential(), latents))
    assert np.array_equal(picture, expected_preview(previewer.taesd.model, latents))


def test_a_taef2_file_that_is_not_one_falls_back_with_a_warning(caplog):
    models = default_paths().models_dir
    models.mkdir(parents=True, exist_ok=True)
    save_file({"decoder.layers.9.weight": torch.zeros(3, 8, 3, 3)}, models / "taef2.safetensors")
    with caplog.at_level(logging.WARNING, logger=previews.__name__):
        previewer = make_previewer("taesd", "flux2", 1, default_paths(), "cpu", torch.float32)
    assert previewer.mode == "fast" and "could not be loaded" in caplog.text


def test_flux2_generates_with_taef2_previews(tiny_flux2_dir):
    models = default_paths().models_dir
    models.mkdir(parents=True, exist_ok=True)
    torch.save(taef2_sequential(), models / "taef2_decoder.pth")
    sinks = generate_with_both_previews(tiny_flux2_dir, 4.0)
    shown = [p for _, _, p in sinks["taesd"].steps if p is not None]
    assert len(shown) == 2 and shown[0].shape == (64, 64, 3)  # decoded at full size
