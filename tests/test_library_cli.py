"""``studio models …`` in a subprocess, as a user runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import torch
from safetensors.torch import save_file

LORA_KEY = "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k.lora_down.weight"


def studio(*args, env_extra=None, input_text=None):
    env = {**os.environ, **(env_extra or {})}
    return subprocess.run([sys.executable, "-m", "studio", "models", *args], capture_output=True,
                          text=True, env=env, timeout=300, input=input_text)


def test_list_info_import_remove_round_trip(tmp_path, studio_home):
    lora = tmp_path / "ink.safetensors"
    save_file({LORA_KEY: torch.ones(4, 768, dtype=torch.float16)}, str(lora))
    env = {"HF_HUB_CACHE": str(tmp_path / "no-cache")}
    empty = studio("list", env_extra=env)
    assert empty.returncode == 0 and "No models yet" in empty.stdout

    copied = studio("import", str(lora), "--copy", env_extra=env)
    assert copied.returncode == 0, copied.stderr
    assert "copied to" in copied.stdout

    listed = json.loads(studio("list", "--json", env_extra=env).stdout)
    assert [(e["name"], e["kind"], e["family"], e["precision"]) for e in listed] == \
        [("ink", "lora", "sd1", "fp16")]
    text = studio("list", env_extra=env).stdout
    assert "LoRA" in text and "ink" in text

    info = json.loads(studio("info", "ink", "--json", "--hash", env_extra=env).stdout)
    import hashlib

    assert info["sha256"] == hashlib.sha256(lora.read_bytes()).hexdigest()
    assert info["model_hash"] == info["sha256"][:10]

    refused = studio("remove", "ink", env_extra=env, input_text="")
    assert refused.returncode == 2 and "--yes" in refused.stderr  # a usage error
    assert "frees" in refused.stdout
    removed = studio("remove", "ink", "--yes", env_extra=env)
    assert removed.returncode == 0 and "Removed" in removed.stdout
    assert json.loads(studio("list", "--json", env_extra=env).stdout) == []

    registered = studio("import", str(lora), env_extra=env)
    assert registered.returncode == 0 and "added where it is" in registered.stdout
    settings = json.loads((studio_home / "config" / "settings.json").read_text())
    assert settings["added_models"] == [str(lora.resolve())]


def test_errors_are_one_line(tmp_path):
    missing = studio("info", "nothing-here", env_extra={"HF_HUB_CACHE": str(tmp_path / "c")})
    assert missing.returncode == 2  # a name no model has is bad input
    assert missing.stderr.strip().startswith("studio: error: No model called")
    offline = studio("download", "stabilityai/sd-turbo", "--full",
                     env_extra={"HF_HUB_OFFLINE": "1"})
    assert offline.returncode == 1 and "offline" in offline.stderr  # the download failed


def test_download_from_stand_in_hub(tmp_path, tiny_llama_dir):
    from tests.fixtures.fake_hub import FakeHub, FakeRepo

    files = {p.name: p.read_bytes() for p in tiny_llama_dir.iterdir() if p.is_file()}
    hub = FakeHub({"tiny/llama-chat": FakeRepo(files)})
    try:
        done = studio("download", "tiny/llama-chat", "--full",
                      env_extra={"HF_ENDPOINT": hub.url, "HF_HUB_OFFLINE": "0",
                                 "HF_HUB_CACHE": str(tmp_path / "c")})
    finally:
        hub.close()
    assert done.returncode == 0, done.stderr
    assert "files," in done.stdout and "Downloaded to" in done.stdout
    # Into a pipe: one plain line per finished file, never a bar redrawn with \r.
    assert "\r" not in done.stderr and "ETA" not in done.stderr
    finished = [line for line in done.stderr.splitlines() if line.strip().startswith("[")]
    assert finished and all("/s" in line for line in finished)
    assert finished[-1].strip().startswith(f"[{len(finished)}/{len(finished)}]")
