"""``studio train``: metrics, the run folder, bad input, divergence. The command runs through its
``main()`` in this process (tests/fixtures/cli_run.py: the same output, files and exit status,
without a child importing torch each time); ``python -m studio train`` as a process (its signals,
its start-up without torch for ``--list``) is tests/test_cli_sigterm.py's and
tests/test_cli_conventions.py's."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from tests.fixtures.cli_run import studio_in_process


def studio(*args: str) -> subprocess.CompletedProcess:
    return studio_in_process("train", *args)


def test_json_run_with_set_lr_writes_the_run_folder(studio_home):
    out = studio("classifier-2d", "--steps", "30", "--seed", "3", "--set", "lr=0.05",
                 "--set", "dataset=circles", "--json")
    assert out.returncode == 0, out.stderr
    lines = [json.loads(line) for line in out.stdout.splitlines()]  # only JSON on stdout
    assert [row["step"] for row in lines[:-1]] == list(range(1, 31))
    assert {"loss", "test_loss", "test_accuracy"} <= set(lines[0])
    run = Path(lines[-1]["run"])
    assert run.parent == studio_home / "data" / "runs"
    assert lines[-1]["steps"] == 30
    config = json.loads((run / "config.json").read_text())
    assert config["lesson"] == "classifier-2d" and config["seed"] == 3
    assert config["config"]["lr"] == 0.05 and config["config"]["dataset"] == "circles"
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert rows == lines[:-1]
    assert (run / "checkpoint" / "checkpoint.safetensors").is_file()
    assert (run / "checkpoint" / "checkpoint.json").is_file()


def test_text_output_out_dir_and_lr_for_every_optimizer(tmp_path):
    out = studio("optimizers", "--steps", "40", "--out", str(tmp_path / "race"),
                 "--set", "lr=0.0005")
    assert out.returncode == 0, out.stderr
    assert "step 40/40" in out.stdout and "adam" in out.stdout
    config = json.loads((tmp_path / "race" / "config.json").read_text())["config"]
    assert {config[f"lr_{k}"] for k in ("sgd", "momentum", "nesterov", "rmsprop", "adam",
                                        "adamw")} == {0.0005}
    rows = (tmp_path / "race" / "metrics.jsonl").read_text().splitlines()
    assert len(rows) == 40 and json.loads(rows[-1])["step"] == 40


def test_gan_set_lr_sets_both_players_and_lr_d_lr_g_set_one(tmp_path):
    out = studio("gan-2d", "--steps", "3", "--out", str(tmp_path / "both"), "--set", "lr=0.0002",
                 "--set", "batch_size=32", "--json")
    assert out.returncode == 0, out.stderr
    config = json.loads((tmp_path / "both" / "config.json").read_text())["config"]
    assert config["lr"] == config["lr_d"] == config["lr_g"] == 0.0002
    out = studio("wgan-gp-2d", "--steps", "3", "--out", str(tmp_path / "own"), "--set", "lr=0.0002",
                 "--set", "lr_d=0.003", "--set", "batch_size=32", "--json")
    assert out.returncode == 0, out.stderr
    config = json.loads((tmp_path / "own" / "config.json").read_text())["config"]
    assert (config["lr_d"], config["lr_g"]) == (0.003, 0.0002)
    out = studio("gan-2d", "--set", "lr_g=-1")
    assert out.returncode == 2 and "lr_g must be at least" in out.stderr


def test_bad_settings_exit_2_with_one_line():
    for args, needle in [(["classifier-2d", "--set", "bogus=1"], "Unknown setting 'bogus'"),
                         (["classifier-2d", "--set", "lr=-1"], "lr must be at least"),
                         (["classifier-2d", "--set", "lr"], "KEY=VALUE"),
                         (["no-such-lesson"], "Unknown lesson")]:
        out = studio(*args)
        assert out.returncode == 2, (args, out.stderr)
        assert out.stderr.strip().splitlines()[-1].startswith("studio: error: ")
        assert needle in out.stderr and out.stdout == ""


def test_divergence_exits_1_with_the_message(studio_home):
    out = studio("classifier-2d", "--set", "lr=1000", "--set", "optimizer=sgd", "--json")
    assert out.returncode == 1
    assert "studio: error: loss exploded" in out.stderr and "lower learning rate" in out.stderr
    assert json.loads(out.stdout.splitlines()[-1])["steps"] == 1


def test_list_shows_every_lesson_with_its_summary():
    out = studio("--list")
    assert out.returncode == 0
    listed = {line.split()[0] for line in out.stdout.splitlines()}
    assert {"optimizers", "classifier-2d"} <= listed
    assert "decision boundary" in out.stdout
