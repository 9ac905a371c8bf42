"""Safe loading (pickles that need code are refused, their code never runs) and model hashes."""

from __future__ import annotations

import hashlib
import json
import os
import pickle

import pytest
import torch

from studio.core.config import default_paths
from studio.core.jobs import UserFacingError
from studio.library import hashing
from studio.library.hashing import model_hash, sha256_file
from studio.library.safe_load import load_state_dict


class _Exploit:
    """Unpickling this would create a marker file (stands in for any malicious code)."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_malicious_pickle_is_refused_and_its_code_never_runs(tmp_path):
    marker = tmp_path / "pwned"
    evil = tmp_path / "model.ckpt"
    with evil.open("wb") as fh:
        pickle.dump({"state_dict": {"w": _Exploit(marker)}}, fh)
    with pytest.raises(UserFacingError, match="refused for safety.*\\.safetensors"):
        load_state_dict(evil)
    assert not marker.exists()


def test_malicious_torch_save_zip_is_refused(tmp_path):
    marker = tmp_path / "pwned-zip"
    evil = tmp_path / "model.pt"
    torch.save({"w": torch.ones(1), "x": _Exploit(marker)}, evil)
    assert not marker.exists()
    with pytest.raises(UserFacingError, match="arbitrary code"):
        load_state_dict(evil)
    assert not marker.exists()


def test_plain_tensors_load_from_pickle_and_safetensors(tmp_path):
    from safetensors.torch import save_file

    weights = {"a": torch.arange(4.0), "b": torch.ones(2, 2)}
    torch.save(weights, tmp_path / "w.pth")
    save_file(weights, str(tmp_path / "w.safetensors"))
    for name in ("w.pth", "w.safetensors"):
        loaded = load_state_dict(tmp_path / name)
        assert set(loaded) == {"a", "b"} and torch.equal(loaded["a"], weights["a"])


def test_corrupt_and_unknown_files(tmp_path):
    (tmp_path / "bad.safetensors").write_bytes(b"\x00" * 5)
    with pytest.raises(UserFacingError, match="truncated or corrupt"):
        load_state_dict(tmp_path / "bad.safetensors")
    (tmp_path / "x.gguf").write_bytes(b"GGUF")
    with pytest.raises(UserFacingError, match="unsupported"):
        load_state_dict(tmp_path / "x.gguf")


def test_sha256_streams_in_chunks(tmp_path, monkeypatch):
    monkeypatch.setattr(hashing, "CHUNK_BYTES", 1000)
    data = os.urandom(10_500)
    (tmp_path / "f.bin").write_bytes(data)
    assert sha256_file(tmp_path / "f.bin") == hashlib.sha256(data).hexdigest()


def test_model_hash_is_a1111_style_and_cached(tmp_path, monkeypatch):
    model = tmp_path / "model.safetensors"
    model.write_bytes(b"weights" * 1000)
    expected = hashlib.sha256(model.read_bytes()).hexdigest()[:10]
    calls = []
    real = hashing.sha256_file
    monkeypatch.setattr(hashing, "sha256_file", lambda p: calls.append(p) or real(p))

    assert model_hash(model) == expected
    assert model_hash(model) == expected
    assert len(calls) == 1  # the second time came from the cache
    cache = json.loads((default_paths().data_dir / "cache" / "hashes.json").read_text())
    assert cache[str(model.resolve())]["sha256"].startswith(expected)

    model.write_bytes(b"other weights" * 1000)  # size and mtime change → hashed again
    assert model_hash(model) == hashlib.sha256(model.read_bytes()).hexdigest()[:10]
    assert len(calls) == 2


def test_model_hash_of_a_diffusers_folder_is_its_unet(tiny_sd15_dir):
    unet = tiny_sd15_dir / "unet" / "diffusion_pytorch_model.safetensors"
    assert model_hash(tiny_sd15_dir) == sha256_file(unet)[:10]
