"""What every ``studio`` command shares, run as a user runs it (subprocess): one exit-status rule,
help with every default, ``--model`` taking a name exactly as ``studio models list`` prints it,
``--out DIR`` writing into DIR itself, progress only on a terminal, ``train --list`` without torch.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from tests.fixtures.cli_run import studio_in_process
from tests.test_cli_basics import ROOT, run_studio

SMALL = ["--steps", "2", "--width", "64", "--height", "64"]


@pytest.fixture
def picture(tmp_path):
    path = tmp_path / "in.png"
    Image.new("RGB", (64, 48), "teal").save(path)
    return path


@pytest.fixture
def library(studio_home, tmp_path, tiny_sd15_dir, tiny_llama_dir):
    """A library with the tiny SD 1.5 and the tiny Llama added where they are and a CycleGAN
    generator in the models folder: names ``tiny-sd15``, ``tiny-llama``, ``horse2zebra``."""
    from studio.core.config import Settings, save_settings
    from tests.fixtures.tiny_cyclegan import build_cyclegan_zoo

    zoo = build_cyclegan_zoo(tmp_path / "zoo")
    models = studio_home / "data" / "models"
    (models / "horse2zebra").mkdir(parents=True)
    (models / "horse2zebra" / "latest_net_G.pth").write_bytes(zoo["released9"].read_bytes())
    save_settings(Settings(added_models=[str(tiny_sd15_dir), str(tiny_llama_dir)]),
                  studio_home / "config" / "settings.json")
    return models


@pytest.fixture(autouse=True)
def _own_hf_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-hf-cache"))


# -- one exit-status rule ---------------------------------------------------------------------
def _one_error_line(proc: subprocess.CompletedProcess) -> str:
    lines = proc.stderr.strip().splitlines()
    assert lines and lines[-1].startswith("studio: error: "), proc.stderr
    return lines[-1]


@pytest.mark.parametrize("argv,needle", [
    (["generate", "--model", "nosuch", "--prompt", "x"], "no image model in the library"),
    (["generate", "--model", "someone/not-cached", "--prompt", "x"],
     "'studio models download someone/not-cached'"),
    (["img2img", "--model", "nosuch", "--image", "{picture}", "--prompt", "x"],
     "'studio models list' shows the names"),
    (["img2img", "--model", "someone/not-cached", "--image", "{picture}", "--prompt", "x"],
     "'hf download someone/not-cached'"),
    (["transform", "--model", "nosuch", "--input", "{picture}"], "no CycleGAN model"),
    (["chat", "--model", "nosuch", "--prompt", "hi"], "no chat model in the library"),
    (["chat", "--model", "someone/not-cached", "--prompt", "hi"],
     "'studio models download someone/not-cached'"),
    (["serve", "--model", "nosuch"], "does not exist"),
    (["serve", "--model", "someone/not-cached"], "'studio models download someone/not-cached'"),
    (["serve", "--port", "70000"], "--port must be between"),
    (["train", "nosuch"], "Unknown lesson 'nosuch'"),
    (["train", "optimizers", "--steps", "0"], "--steps must be at least 1"),
    (["models", "info", "nosuch"], "No model called 'nosuch'"),
    (["models", "remove", "nosuch", "--yes"], "No model called 'nosuch'"),
    (["models", "import", "/no/such/model.safetensors"], "does not exist"),
    (["models", "download", "not-a-repo-id"], "is not a repository id"),
    (["info", "--no-such-option"], "unrecognized arguments"),
    (["self-test", "--only", "nosuch"], "invalid choice"),
    (["gui", "extra"], "unrecognized arguments"),
    (["no-such-command"], "invalid choice"),
])
def test_bad_input_exits_2_with_one_line_for_every_command(argv, needle, picture):
    proc = run_studio(*[a.replace("{picture}", str(picture)) for a in argv])
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert needle in _one_error_line(proc)
    assert proc.stdout == ""


def _parsers() -> list[tuple[str, argparse.ArgumentParser]]:
    """Every parser of the command line with its command words: ('', the top), ('models list', …)."""
    from studio.cli import build_parser

    found = []

    def walk(words: str, parser: argparse.ArgumentParser) -> None:
        found.append((words, parser))
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    walk(f"{words} {name}".strip(), sub)

    walk("", build_parser()[0])
    return found


def test_every_command_and_argument_has_help_and_the_exit_rule():
    from studio.cli import EXIT_RULE

    parsers = _parsers()
    assert {"generate", "models list", "models import", "models remove", "models download",
            "models info", "train", "chat", "serve", "gui"} <= {w for w, _ in parsers}
    for words, parser in parsers:
        assert parser.description, f"studio {words} has no description"
        assert parser.epilog and "Exit status" in parser.epilog, words
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                assert all(c.help for c in action._choices_actions), words
            else:
                assert action.help, f"studio {words}: {action.dest} has no help"
    top = run_studio("--help")
    assert top.returncode == 0
    flat = " ".join(top.stdout.split())
    assert " ".join(EXIT_RULE.split()) in flat
    assert "0 done; 1 the work failed" in flat and "2 bad input" in flat and "130" in flat


@pytest.mark.parametrize("argv,shown", [
    (["chat"], ["--max-new-tokens N reply length limit, in tokens (default: 512)",
                "(default: 0.7)", "(default: 0.95)"]),
    (["generate"], ["denoising steps (default: 20)", "guidance scale", "(default: 7.0)",
                    "a multiple of 8 (default: 512)", "no date sub-folder"]),
    (["img2img"], ["--verbose", "--strength", "(default: 0.75)", "no date sub-folder"]),
    (["transform"], ["--verbose", "tile size for large images, 0 for none (default: 512)",
                     "studio img2img"]),
    (["train"], ["training steps (default: 500)", "gan-2d"]),
    (["serve"], ["(default: 8000)", "'studio models list'"]),
    (["models", "list"], ["--kind", "list only models of this kind"]),
    (["models", "import"], ["PATH", "--copy"]),
])
def test_help_shows_defaults_and_shared_options(argv, shown):
    proc = run_studio(*argv, "--help")
    assert proc.returncode == 0, proc.stderr
    flat = " ".join(proc.stdout.split())
    for text in shown:
        assert text in flat, (text, proc.stdout)


def test_image_commands_share_their_options():
    parsers = dict(_parsers())

    def options(words: str) -> set[str]:
        return {s for a in parsers[words]._actions for s in a.option_strings}

    every_image_command = {"--model", "--out", "--device", "--json", "--verbose"}
    diffusion = {"--prompt", "--negative", "--steps", "--cfg", "--seed", "--count",
                 "--scheduler", "--lora"}
    assert every_image_command | diffusion <= options("generate")
    assert every_image_command | diffusion <= options("img2img")
    assert every_image_command <= options("transform")


@pytest.mark.parametrize("argv", [["--help"], ["train", "--list"], ["train", "nosuch"],
                                  ["models", "--help"], ["chat", "--help"]])
def test_help_version_and_the_lesson_list_import_no_torch(argv):
    code = ("import sys\n"
            "from studio.__main__ import main\n"
            "try:\n"
            f"    code = main({argv!r})\n"
            "except SystemExit as e:\n"
            "    code = e.code\n"
            "heavy = [m for m in ('torch', 'diffusers', 'transformers', 'PySide6') "
            "if m in sys.modules]\n"
            "print('HEAVY', heavy, 'CODE', code, file=sys.stderr)\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)
    assert "HEAVY [] CODE" in proc.stderr, proc.stderr
    if argv == ["train", "--list"]:
        assert "gan-2d" in proc.stdout and "A generator and a discriminator" in proc.stdout


def test_train_list_json_has_titles_and_summaries_from_the_registry():
    from studio.pipelines.train.registry import LESSONS, lesson_class

    proc = run_studio("train", "--list", "--json")
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [r["lesson"] for r in rows] == list(LESSONS)
    for row in rows:  # the lesson classes take their title and summary from the registry
        info = lesson_class(row["lesson"]).info
        assert (info.key, info.title, info.summary) == (row["lesson"], row["title"],
                                                        row["summary"])


# -- --model takes library names ----------------------------------------------------------------
def test_models_list_names_work_as_model_everywhere(library, picture, tmp_path):
    listed = json.loads(run_studio("models", "list", "--json").stdout)
    names = {e["name"]: e for e in listed}
    assert {"tiny-sd15", "tiny-llama", "horse2zebra"} <= set(names)
    text = run_studio("models", "list").stdout
    assert "tiny-llama" in text and "Single file" not in text
    # an imported diffusers folder is a diffusers folder added in place, not a "single file"
    assert names["tiny-sd15"]["format"] == "diffusers" and names["tiny-sd15"]["source"] == "file"
    row = next(line for line in text.splitlines() if "tiny-sd15" in line)
    assert "diffusers" in row and "Added in place" in row

    # The image and chat commands through main() in this process (tests/fixtures/cli_run.py);
    # serve, below, in a real child that a signal stops.
    out = tmp_path / "exactly-here"
    gen = studio_in_process("generate", "--model", "tiny-sd15", "--prompt", "cat", "--seed", "1",
                            "--out", str(out), "--json", *SMALL)
    assert gen.returncode == 0, gen.stderr
    made = json.loads(gen.stdout)
    assert Path(made["path"]).parent == out.resolve()  # --out DIR: no date sub-folder
    assert Path(made["model"]) == Path(names["tiny-sd15"]["path"]).resolve()

    i2i = studio_in_process("img2img", "--model", "TINY-SD15", "--image", str(picture), "--prompt",
                            "cat", "--steps", "2", "--out", str(out))
    assert i2i.returncode == 0, i2i.stderr
    assert Path(i2i.stdout.strip()).parent == out.resolve()

    tr = studio_in_process("transform", "--model", "horse2zebra", "--input", str(picture), "--out",
                           str(out))
    assert tr.returncode == 0, tr.stderr
    assert Path(tr.stdout.strip()).parent == out.resolve()

    chat = studio_in_process("chat", "--model", "tiny-llama", "--prompt", "hi", "--max-new-tokens",
                             "2", "--temperature", "0")
    assert chat.returncode == 0, chat.stderr

    proc = subprocess.Popen([sys.executable, "-m", "studio", "serve", "--port", "0", "--model",
                             "tiny-llama", "--model", "tiny-sd15"], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert line.startswith("Serving 2 model(s) on http://127.0.0.1:"), \
            (line, proc.stderr.read() if proc.poll() is not None else "")
        listed = []
        for text in proc.stderr:  # the served models, then how to stop
            listed.append(text)
            if text.startswith("Press Ctrl+C"):
                break
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    err = "".join(listed) + err
    assert proc.returncode == 0, err
    assert "tiny-llama" in err and "tiny-sd15" in err and "stopping" in err


def test_a_model_of_another_kind_says_which_command_takes_it(library, picture):
    proc = run_studio("transform", "--model", "tiny-sd15", "--input", str(picture))
    assert proc.returncode == 2
    line = _one_error_line(proc)
    assert "studio transform takes CycleGAN generators" in line
    assert "'studio img2img --model tiny-sd15'" in line
    assert "Generate or Transform" not in line  # the window's words, not this command's
    chat = _one_error_line(run_studio("generate", "--model", "tiny-llama", "--prompt", "x"))
    assert "is a Chat model" in chat and "'studio chat --model tiny-llama'" in chat
    gan = _one_error_line(run_studio("chat", "--model", "horse2zebra", "--prompt", "x"))
    assert "'studio transform --model horse2zebra'" in gan


# -- progress only on a terminal ----------------------------------------------------------------
def _weights(tmp_path: Path) -> Path:
    import torch
    from safetensors.torch import save_file

    from tests.test_library_cli import LORA_KEY

    path = tmp_path / "ink.safetensors"
    save_file({LORA_KEY: torch.ones(4, 768, dtype=torch.float16)}, str(path))
    return path


def test_import_copy_draws_no_progress_into_a_pipe(tmp_path):
    proc = run_studio("models", "import", str(_weights(tmp_path)), "--copy")
    assert proc.returncode == 0, proc.stderr
    assert "copied to" in proc.stdout
    assert "\r" not in proc.stderr and "copying" not in proc.stderr


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="a pseudo-terminal")
def test_import_copy_draws_progress_on_a_terminal(tmp_path):
    import pty

    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "studio", "models", "import",
                             str(_weights(tmp_path)), "--copy"], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=slave, stdin=subprocess.DEVNULL)
    os.close(slave)
    seen = b""
    while True:
        try:
            chunk = os.read(master, 4096)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        seen += chunk
    os.close(master)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0
    assert b"copied to" in out
    assert b"\r  copying" in seen
