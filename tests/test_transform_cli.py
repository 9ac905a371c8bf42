"""``studio transform`` and ``studio img2img``: one transform runs in a real ``python -m studio``
child as a user runs it; the others go through the command line's ``main()`` in this process
(tests/fixtures/cli_run.py: the same output, files and exit status, without a child importing
torch and diffusers again)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.fixtures.cli_run import studio_in_process
from tests.fixtures.tiny_cyclegan import build_cyclegan_zoo

ROOT = Path(__file__).resolve().parents[1]


def studio(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "studio", *args], cwd=ROOT, text=True,
                          capture_output=True, env=dict(os.environ), timeout=timeout)


@pytest.fixture(scope="module")
def zoo(tmp_path_factory):
    return build_cyclegan_zoo(tmp_path_factory.mktemp("cli-zoo"))


@pytest.fixture
def pictures(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    rng = np.random.default_rng(1)
    for name, size in (("one.png", (33, 21)), ("two.jpg", (64, 48))):
        Image.fromarray((rng.random((size[1], size[0], 3)) * 255).astype(np.uint8)).save(
            folder / name)
    (folder / "readme.txt").write_text("not an image")
    return folder


def test_transform_folder_json(zoo, pictures, tmp_path):
    out = tmp_path / "out"
    proc = studio_in_process("transform", "--model", str(zoo["G_A"].parent), "--input",
                             str(pictures), "--out", str(out), "--direction", "BtoA", "--json")
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [Path(x["source"]).name for x in lines] == ["one.png", "two.jpg"]
    assert [(x["width"], x["height"]) for x in lines] == [(33, 21), (64, 48)]
    assert all(x["direction"] == "BtoA" and x["model"] == "mystyle" for x in lines)
    for x in lines:
        path = Path(x["path"])
        assert path.is_file() and path.parent == out  # --out DIR: into DIR itself
        assert "Direction: BtoA" in Image.open(path).text["parameters"]


def test_transform_single_image_prints_its_path_and_max_side(zoo, pictures, tmp_path):
    proc = studio("transform", "--model", str(zoo["released9"]), "--input",
                  str(pictures / "two.jpg"), "--out", str(tmp_path / "o"), "--max-side", "32")
    assert proc.returncode == 0, proc.stderr
    path = Path(proc.stdout.strip())
    assert Image.open(path).size == (32, 24)


@pytest.mark.parametrize("args,message", [
    (["--direction", "BtoA"], "AtoB only"),
    (["--input", "/nonexistent/x.png"], "does not exist"),
])
def test_transform_bad_input_exits_2_with_one_line(zoo, pictures, args, message):
    base = {"--model": str(zoo["released9"]), "--input": str(pictures / "one.png")}
    extra = dict(zip(args[::2], args[1::2], strict=True))
    argv = [x for kv in {**base, **extra}.items() for x in kv]
    proc = studio_in_process("transform", *argv)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith("studio: error:")
    assert message in proc.stderr and proc.stdout == ""


def test_transform_not_a_model_exits_2(zoo, pictures):
    proc = studio_in_process("transform", "--model", str(zoo["not_a_generator"].parent / "nothing"),
                             "--input", str(pictures))
    assert proc.returncode == 2


def test_img2img_with_mask_json(tiny_sd15_dir, pictures, tmp_path):
    mask = Image.new("L", (64, 48), 0)
    mask.paste(255, (10, 10, 40, 30))
    mask.save(tmp_path / "mask.png")
    proc = studio_in_process("img2img", "--model", str(tiny_sd15_dir), "--image",
                             str(pictures / "two.jpg"), "--prompt", "a fox", "--mask",
                             str(tmp_path / "mask.png"), "--strength", "0.8", "--steps", "3",
                             "--seed", "9", "--count", "2", "--device", "cpu", "--out",
                             str(tmp_path / "o"), "--json")
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [x["seed"] for x in lines] == [9, 10]
    assert (lines[0]["width"], lines[0]["height"]) == (64, 48)
    text = Image.open(lines[0]["path"]).text["parameters"]
    assert "Denoising strength: 0.8" in text and "Mask: mask.png" in text
    assert "Mask blur: 4," in text and lines[0]["mask_blur"] == 4  # A1111's default


def test_img2img_bad_image_exits_2(tiny_sd15_dir, pictures):
    proc = studio_in_process("img2img", "--model", str(tiny_sd15_dir), "--image",
                             str(pictures / "readme.txt"), "--prompt", "x")
    assert proc.returncode == 2 and "not an image" in proc.stderr
