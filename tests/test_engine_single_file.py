"""Single-file checkpoints: shipped configs, generated tokenizers, offline loading (no sockets)."""

from __future__ import annotations

import json
import socket

import numpy as np
import pytest
import torch

from studio.core.config import Settings, default_paths
from studio.core.jobs import CancelToken
from studio.core.requests import Txt2ImgRequest
from studio.library.clip_tokenizer import vocab_and_merges
from studio.library.single_file_configs import CONFIGS_DIR, single_file_config_dir
from studio.pipelines.diffusion.txt2img import Txt2ImgService
from tests.fixtures.sinks import RecordingSink as Sink


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to open a network connection fails the test loudly."""
    attempts = []

    def refuse(self, address, *args, **kwargs):
        attempts.append(address)
        raise OSError(f"network access attempted during an offline test: {address}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", lambda *a, **k: refuse(None, a))
    yield attempts
    assert attempts == []


def test_vocab_matches_clip():
    vocab, merges = vocab_and_merges()
    assert len(vocab) == 49408 and len(merges) == 48894
    assert vocab["<|startoftext|>"] == 49406 and vocab["<|endoftext|>"] == 49407
    assert vocab["!"] == 0 and vocab["a</w>"] == 320


@pytest.mark.parametrize("family,subs", [("sd1", {"tokenizer": "<|endoftext|>"}),
                                         ("sd2", {"tokenizer": "!"}),
                                         ("sdxl", {"tokenizer": "<|endoftext|>",
                                                   "tokenizer_2": "!"})])
def test_materialized_config_and_tokenizers(family, subs):
    from transformers import CLIPTokenizer

    folder = single_file_config_dir(family, default_paths())
    assert folder == default_paths().data_dir / "cache" / "single_file_configs" / family
    assert (folder / "unet" / "config.json").is_file()
    for sub, pad in subs.items():
        tok = CLIPTokenizer.from_pretrained(str(folder / sub))
        assert tok.pad_token == pad and tok.model_max_length == 77
        # Known ids of openai/clip-vit-large-patch14 for this prompt.
        assert tok("a photo of a cat").input_ids == [49406, 320, 1125, 539, 320, 2368, 49407]
        assert tok("A Photo OF a   cat").input_ids == tok("a photo of a cat").input_ids
        padded = tok("a cat", padding="max_length", max_length=77).input_ids
        assert len(padded) == 77 and padded[4] == tok.pad_token_id
    # Reused, not rebuilt, on the next call.
    stamp = (folder / "model_index.json").stat().st_mtime_ns
    assert single_file_config_dir(family, default_paths()) == folder
    assert (folder / "model_index.json").stat().st_mtime_ns == stamp


# Published parameter counts of the real models (UNet, VAE, text encoders).
PARAMS = {
    "sd15": {"unet": 859_520_964, "vae": 83_653_863, "text_encoder": 123_060_480},
    "sd2": {"unet": 865_910_724, "vae": 83_653_863, "text_encoder": 340_387_840},
    "sdxl": {"unet": 2_567_463_684, "vae": 83_653_863, "text_encoder": 123_060_480,
             "text_encoder_2": 694_659_840},
}


@pytest.mark.parametrize("name", list(PARAMS))
def test_shipped_configs_build_the_real_architectures(name):
    from accelerate import init_empty_weights
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    folder = CONFIGS_DIR / name
    index = json.loads((folder / "model_index.json").read_text())
    assert index.get("safety_checker", [None, None]) == [None, None]  # no safety checker
    counts = {}
    with init_empty_weights():
        counts["unet"] = UNet2DConditionModel.from_config(
            UNet2DConditionModel.load_config(str(folder / "unet")))
        counts["vae"] = AutoencoderKL.from_config(AutoencoderKL.load_config(str(folder / "vae")))
        for sub, cls in (("text_encoder", CLIPTextModel),
                         ("text_encoder_2", CLIPTextModelWithProjection)):
            if (folder / sub).is_dir():
                assert index[sub] == ["transformers", cls.__name__]
                counts[sub] = cls(CLIPTextConfig.from_pretrained(str(folder / sub)))
    counts = {k: sum(p.numel() for p in m.parameters()) for k, m in counts.items()}
    assert counts == PARAMS[name]
    if name == "sdxl":
        vae = json.loads((folder / "vae" / "config.json").read_text())
        assert vae["force_upcast"] is True and vae["scaling_factor"] == 0.13025


def _service():
    settings = Settings(device="cpu", precision="fp32", preview_mode="fast")
    return Txt2ImgService(lambda: settings, default_paths)


@pytest.mark.parametrize("which", ["sd15", "sdxl"])
def test_single_file_loads_offline_and_matches_the_folder(which, request, tiny_single_file_env,
                                                          no_network):
    single = request.getfixturevalue(f"tiny_{which}_file")
    folder = request.getfixturevalue(f"tiny_{which}_dir")
    req = Txt2ImgRequest(model=str(single), prompt="a lighthouse at dusk", steps=3, cfg=5.0,
                         width=64, height=64, seed=42)
    service = _service()
    (from_file,) = service.run(req, Sink(), CancelToken())
    expected_cls = "StableDiffusionXLPipeline" if which == "sdxl" else "StableDiffusionPipeline"
    assert type(service.cache.current).__name__ == expected_cls
    assert service.cache.current.tokenizer.pad_token == "<|endoftext|>"
    req.model = str(folder)
    (from_folder,) = _service().run(req, Sink(), CancelToken())
    # Same weights, converted from the original layout: the same image, bit for bit.
    assert np.array_equal(np.asarray(from_file.image), np.asarray(from_folder.image))


def test_ckpt_single_file_goes_through_weights_only(tmp_path, tiny_sd15_file,
                                                    tiny_single_file_env, no_network):
    from safetensors.torch import load_file

    ckpt = tmp_path / "tiny.ckpt"
    torch.save({"state_dict": load_file(str(tiny_sd15_file)), "global_step": 1}, ckpt)
    req = Txt2ImgRequest(model=str(ckpt), prompt="x", steps=2, width=64, height=64, seed=1)
    (from_ckpt,) = _service().run(req, Sink(), CancelToken())
    req.model = str(tiny_sd15_file)
    (from_st,) = _service().run(req, Sink(), CancelToken())
    assert np.array_equal(np.asarray(from_ckpt.image), np.asarray(from_st.image))


def test_malicious_ckpt_model_is_refused_before_diffusers_sees_it(tmp_path, tiny_single_file_env):
    import pickle

    from studio.core.jobs import UserFacingError

    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    evil = tmp_path / "model.ckpt"
    evil.write_bytes(pickle.dumps({"state_dict": {"model.diffusion_model.x": Exploit()}}))
    req = Txt2ImgRequest(model=str(evil), prompt="x", steps=1, width=64, height=64)
    with pytest.raises(UserFacingError, match="refused for safety"):
        _service().run(req, Sink(), CancelToken())
    assert not marker.exists()


def test_loading_passes_dtype_not_the_deprecated_torch_dtype(tiny_sd15_dir, tiny_sd15_file,
                                                             tiny_single_file_env):
    """diffusers 0.36+ deprecates ``torch_dtype=`` (a FutureWarning on every load); both loaders
    pass ``dtype=``, which diffusers and transformers take."""
    import warnings

    from studio.library.models import entry_for_path
    from studio.pipelines.diffusion.loading import _load_diffusers, _load_single_file

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        folder = _load_diffusers(entry_for_path(tiny_sd15_dir, "file"), torch.float32)
        single = _load_single_file(entry_for_path(tiny_sd15_file, "file"), torch.float32,
                                   default_paths())
    assert folder.unet.dtype == single.unet.dtype == torch.float32
    assert not [w for w in caught if "torch_dtype" in str(w.message)], \
        [str(w.message) for w in caught]
