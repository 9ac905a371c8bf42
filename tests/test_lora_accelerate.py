"""LoRA training through ``accelerate launch`` (#18): two CPU processes (gloo) train one LoRA
together from a ``--config`` file, the first one writing it; and the config file's mistakes are
one-line errors (exit 2)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from safetensors import safe_open

from tests.fixtures.cli_run import ROOT, studio_in_process
from tests.test_lora_train import make_folder


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_accelerate_launch_two_cpu_processes_train_one_lora(studio_home, tmp_path,
                                                            tiny_sd15_dir):
    data = make_folder(tmp_path / "data")
    config = tmp_path / "lora.toml"
    config.write_text(f'folder = "{data}"\nbase = "{tiny_sd15_dir}"\nname = "two"\n'
                      'steps = 2\nresolution = 64\nrank = 2\ndevice = "cpu"\n', encoding="utf-8")
    # on CPUs, accelerate's multi-process launcher is the multi-GPU one (torchrun) with gloo
    done = subprocess.run(
        [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes",
         "2", "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
         "-m", "studio", "train-lora", "--config", str(config), "--json"],
        cwd=ROOT, capture_output=True, text=True, timeout=110, env=dict(os.environ))
    assert done.returncode == 0, done.stderr[-3000:]
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert [line.get("step") for line in lines[:-1]] == [1, 2]  # the first process speaks
    assert lines[-1]["processes"] == 2 and lines[-1]["steps"] == 2
    with safe_open(lines[-1]["lora"], "pt") as f:
        assert all(k.startswith("lora_unet_") for k in f.keys())


def test_config_file_mistakes_are_one_line_errors(studio_home, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"folder": "x", "base": "y", "colour": "red"}', encoding="utf-8")
    done = studio_in_process("train-lora", "--config", str(bad))
    assert done.returncode == 2 and "has 'colour', which is not a train-lora setting" in \
        done.stderr
    short = tmp_path / "short.json"
    short.write_text(json.dumps({"folder": str(tmp_path), "base": "y"}), encoding="utf-8")
    done = studio_in_process("train-lora", "--config", str(short))
    assert done.returncode == 2 and "needs --name (on the line or in --config)" in done.stderr
    done = studio_in_process("train-lora", "--config", str(tmp_path / "none.toml"))
    assert done.returncode == 2 and "cannot be read" in done.stderr
