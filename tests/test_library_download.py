"""Hub downloads against a local stand-in of the Hub (tests/fixtures/fake_hub.py, on 127.0.0.1,
reached through HF_ENDPOINT): the real huggingface_hub client asks it for model_info and
auth-check, Studio's downloader fetches the files from it. Plus file selection on real repo
layouts and the offline / not-found / gated messages."""

from __future__ import annotations

import hashlib

import pytest

from studio.core.config import Settings, default_paths
from studio.core.jobs import CancelToken, JobCancelled, UserFacingError
from studio.library import hub_download as hd
from studio.library.catalog import list_models
from tests.fixtures.fake_hub import FakeHub, FakeRepo

SD_TURBO = [  # the layout of stabilityai/sd-turbo on the Hub (sizes shortened)
    "model_index.json", "README.md", ".gitattributes", "sd_turbo.safetensors", "sd_turbo.ckpt",
    "scheduler/scheduler_config.json", "text_encoder/config.json",
    "text_encoder/model.safetensors", "text_encoder/model.fp16.safetensors",
    "tokenizer/merges.txt", "tokenizer/vocab.json", "tokenizer/tokenizer_config.json",
    "unet/config.json", "unet/diffusion_pytorch_model.safetensors",
    "unet/diffusion_pytorch_model.fp16.safetensors", "unet/diffusion_pytorch_model.bin",
    "vae/config.json", "vae/diffusion_pytorch_model.safetensors",
    "vae/diffusion_pytorch_model.fp16.safetensors", "safety_checker/model.safetensors",
    "safety_checker/config.json", "images/sample.png", "onnx/unet/model.onnx"]
QWEN = ["config.json", "generation_config.json", "LICENSE", "merges.txt", "model.safetensors",
        "pytorch_model.bin", "tokenizer.json", "tokenizer_config.json", "vocab.json",
        "README.md", "onnx/model.onnx", "model.gguf"]


def listing(names):
    return [hd.HubFile(n, 10) for n in names]


def test_select_diffusers_fp16_renames_variants_and_skips_duplicates():
    files, skipped = hd.select_files(listing(SD_TURBO), fp16=True)
    got = {f.name: f.target for f in files}
    assert got["unet/diffusion_pytorch_model.fp16.safetensors"] == \
        "unet/diffusion_pytorch_model.safetensors"
    assert got["text_encoder/model.fp16.safetensors"] == "text_encoder/model.safetensors"
    for name in ("sd_turbo.safetensors", "sd_turbo.ckpt", "unet/diffusion_pytorch_model.bin",
                 "unet/diffusion_pytorch_model.safetensors", "safety_checker/model.safetensors",
                 "images/sample.png", "onnx/unet/model.onnx", "README.md", ".gitattributes"):
        assert name in skipped and name not in got
    assert {"model_index.json", "tokenizer/merges.txt", "scheduler/scheduler_config.json"} <= \
        set(got)
    full, _ = hd.select_files(listing(SD_TURBO), fp16=False)
    weights = sorted(f.name for f in full if f.name.endswith(".safetensors"))
    assert weights == ["text_encoder/model.safetensors", "unet/diffusion_pytorch_model.safetensors",
                       "vae/diffusion_pytorch_model.safetensors"]


def test_select_transformers_top_level_safetensors_only():
    files, skipped = hd.select_files(listing(QWEN), fp16=True)
    assert sorted(f.name for f in files) == ["LICENSE", "config.json", "generation_config.json",
                                             "merges.txt", "model.safetensors", "tokenizer.json",
                                             "tokenizer_config.json", "vocab.json"]
    assert {"pytorch_model.bin", "model.gguf", "onnx/model.onnx"} <= set(skipped)
    only_bin, _ = hd.select_files(listing(["config.json", "pytorch_model.bin"]), fp16=False)
    assert "pytorch_model.bin" in {f.name for f in only_bin}  # loaded with weights_only
    sharded = ["model_index.json", "unet/diffusion_pytorch_model.fp16-00001-of-00002.safetensors",
               "unet/diffusion_pytorch_model.fp16-00002-of-00002.safetensors",
               "unet/diffusion_pytorch_model-00001-of-00002.safetensors",
               "unet/diffusion_pytorch_model-00002-of-00002.safetensors"]
    chosen, _ = hd.select_files(listing(sharded), fp16=True)
    assert all(".fp16" not in f.name for f in chosen if f.name.endswith(".safetensors"))


def test_offline_says_so_at_once(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(UserFacingError, match="offline"):
        hd.plan_download("stabilityai/sd-turbo", fp16=False)
    with pytest.raises(UserFacingError, match="not a repository id"):
        hd.plan_download("not a repo", fp16=False)


@pytest.fixture
def hub(monkeypatch, tiny_llama_dir):
    from huggingface_hub import constants

    files = {p.name: p.read_bytes() for p in tiny_llama_dir.iterdir() if p.is_file()}
    files["pytorch_model.bin"] = b"duplicate weights"
    files["README.md"] = b"# tiny"
    server = FakeHub({"tiny/llama-chat": FakeRepo(files),
                      "tiny/gated": FakeRepo(dict(files), gated=True, tokens={"hf_good"})})
    monkeypatch.setenv("HF_ENDPOINT", server.url)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    yield server
    server.close()


def test_plan_download_resume_and_library_listing(hub):
    paths = default_paths()
    plan = hd.plan_download("tiny/llama-chat", fp16=False)
    names = {f.name for f in plan.files}
    assert "model.safetensors" in names and "pytorch_model.bin" in plan.skipped
    weights = hub.repos["tiny/llama-chat"].files["model.safetensors"]
    assert plan.total_bytes == sum(len(hub.repos["tiny/llama-chat"].files[n]) for n in names)

    # First attempt: the connection drops halfway through the weights.
    hub.cut_after["model.safetensors"] = len(weights) // 2
    with pytest.raises(UserFacingError, match="incomplete.*resume"):
        hd.download(plan, paths)
    part = hd.staging_dir("tiny/llama-chat", paths) / "model.safetensors.part"
    assert part.stat().st_size == len(weights) // 2
    assert not (paths.models_dir / "llama-chat").exists()  # nothing half-done is listed
    assert list_models(Settings(), paths) == []

    seen: list[hd.TransferStatus] = []
    folder = hd.download(plan, paths, progress=seen.append)
    ranges = [r for m, p, r in hub.log if p.endswith("/model.safetensors") and m == "GET"]
    assert ranges == ["", f"bytes={len(weights) // 2}-"]  # resumed, not restarted
    assert (folder / "model.safetensors").read_bytes() == weights
    assert set(hub.fetched()) == names  # only the chosen files, no .bin / README
    assert seen[-1].done == seen[-1].total == plan.total_bytes
    entry = next(e for e in list_models(Settings(), paths) if e.kind == "chat")
    assert entry.path == folder and entry.source == "studio"
    with pytest.raises(UserFacingError, match="already in the library"):
        hd.download(plan, paths)


def test_cancel_keeps_partial_file_for_resume(hub):
    paths = default_paths()
    plan = hd.plan_download("tiny/llama-chat", fp16=False)
    token = CancelToken()

    def stop(status):
        if status.done > 0:
            token.cancel()

    with pytest.raises(JobCancelled):
        hd.download(plan, paths, progress=stop, cancel=token)
    stage = hd.staging_dir("tiny/llama-chat", paths)
    assert stage.is_dir()
    folder = hd.download(plan, paths)
    for f in plan.files:
        data = hub.repos["tiny/llama-chat"].files[f.name]
        assert hashlib.sha256((folder / f.target).read_bytes()).digest() == \
            hashlib.sha256(data).digest()


def test_not_found_and_gated_messages(hub):
    with pytest.raises(UserFacingError, match="was not found on the Hugging Face Hub"):
        hd.plan_download("tiny/nope", fp16=False)
    with pytest.raises(UserFacingError, match="gated model.*access token"):
        hd.plan_download("tiny/gated", fp16=False)
    with pytest.raises(UserFacingError, match="gated model"):
        hd.plan_download("tiny/gated", fp16=False, token="hf_wrong")
    plan = hd.plan_download("tiny/gated", fp16=False, token="hf_good")
    assert plan.gated
    with pytest.raises(UserFacingError, match="gated model"):  # a download without the token
        hd.download(plan, default_paths())
    assert hd.download(plan, default_paths(), token="hf_good").is_dir()


def test_unreachable_hub_fails_fast(monkeypatch):
    """Connection refused is an error at once: one attempt, no retry loop, no back-off sleep.
    (How long the error takes: bench/library.py.)"""
    import socket
    import time

    from huggingface_hub import constants

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    attempts, sleeps = [], []
    connect, sleep = socket.socket.connect, time.sleep

    def counting_connect(self, address):
        if isinstance(address, tuple) and address[1:2] == (port,):
            attempts.append(address)
        return connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", counting_connect)
    monkeypatch.setattr(time, "sleep", lambda s: sleeps.append(s) or sleep(min(s, 0.01)))
    with pytest.raises(UserFacingError, match="Cannot reach"):
        hd.plan_download("tiny/llama-chat", fp16=False, timeout=3)
    assert len(attempts) == 1, attempts
    assert [s for s in sleeps if s >= 0.1] == []


def test_catalog_lists_the_recommended_models():
    repos = [m.repo_id for m in hd.load_catalog()]
    assert repos == ["stabilityai/sd-turbo", "stabilityai/sdxl-turbo",
                     "stable-diffusion-v1-5/stable-diffusion-v1-5",
                     "stabilityai/stable-diffusion-xl-base-1.0", "madebyollin/taesd",
                     "madebyollin/taesdxl", "HuggingFaceTB/SmolLM2-360M-Instruct",
                     "Qwen/Qwen2.5-0.5B-Instruct", "Qwen/Qwen2.5-1.5B-Instruct"]
    assert all(m.size_gb > 0 and m.licence and m.memory and m.purpose for m in hd.load_catalog())


def test_disk_full_keeps_the_partial_file_and_resumes(hub, monkeypatch):
    """The disk fills up mid-file: the user is told, the bytes written so far stay, and the next
    attempt (after freeing space) resumes from there instead of starting over."""
    import builtins
    import errno

    from studio.library import download as dl

    paths = default_paths()
    plan = hd.plan_download("tiny/llama-chat", fp16=False)
    weights = hub.repos["tiny/llama-chat"].files["model.safetensors"]
    room = len(weights) // 3

    class FullDisk:
        def __init__(self, fh):
            self.fh, self.left = fh, room

        def write(self, data):
            if len(data) > self.left:
                self.fh.write(data[:self.left])
                self.left = 0
                raise OSError(errno.ENOSPC, "No space left on device")
            self.left -= len(data)
            return self.fh.write(data)

        def __getattr__(self, name):
            return getattr(self.fh, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.fh.close()

    disk = {"full": True}

    def filling_open(file, mode="r", *args, **kwargs):
        fh = builtins.open(file, mode, *args, **kwargs)
        full = disk["full"] and str(file).endswith("model.safetensors.part")
        return FullDisk(fh) if full else fh

    monkeypatch.setattr(dl, "open", filling_open, raising=False)
    with pytest.raises(UserFacingError, match="disk is full.*resumes"):
        hd.download(plan, paths)
    part = hd.staging_dir("tiny/llama-chat", paths) / "model.safetensors.part"
    assert part.stat().st_size == room
    assert list_models(Settings(), paths) == []  # nothing half-done is listed

    disk["full"] = False  # the user freed some space
    folder = hd.download(plan, paths)
    ranges = [r for m, p, r in hub.log if p.endswith("/model.safetensors") and m == "GET"]
    assert ranges[-1] == f"bytes={room}-"
    assert (folder / "model.safetensors").read_bytes() == weights
