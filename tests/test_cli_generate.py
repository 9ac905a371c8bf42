"""``studio generate`` end to end with the tiny SD 1.5 model. A real ``python -m studio`` child
makes the plain run's image and takes Ctrl+C; the other runs go through the command line's
``main()`` in this process (tests/fixtures/cli_run.py: the same output, files and exit status,
without a child importing torch and diffusers again)."""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from studio.media.metadata import parse_parameters, read_image_metadata
from tests.fixtures.cli_run import studio_in_process
from tests.test_cli_basics import ROOT, run_studio

SMALL = ["--steps", "2", "--width", "64", "--height", "64"]


def test_generate_json_two_images_seeds_and_metadata(tiny_sd15_dir, tmp_path):
    out_dir = tmp_path / "pics"
    out = studio_in_process("generate", "--model", str(tiny_sd15_dir), "--prompt",
                            "a red fox, at dawn", "--negative", "blurry", "--cfg", "6.5", "--seed",
                            "7", "--count", "2", "--scheduler", "DPM++ 2M Karras", "--out",
                            str(out_dir), "--json", *SMALL)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    assert len(lines) == 2, out.stdout  # nothing but results on stdout
    rows = [json.loads(line) for line in lines]
    assert [r["seed"] for r in rows] == [7, 8]
    assert [r["index"] for r in rows] == [0, 1]
    for row in rows:
        path = Path(row["path"])
        # --out DIR writes into DIR itself: no date sub-folder
        assert path.parent == out_dir.resolve() and path.name.endswith(f"-{row['seed']}.png")
        assert (row["width"], row["height"]) == (64, 64)
        assert row["model"] == str(Path(tiny_sd15_dir).resolve())
        meta = read_image_metadata(path)
        assert meta.source == "studio"
        assert meta.request.seed == 7 and meta.request.count == 2
        assert meta.request.scheduler == "dpmpp_2m_karras"
        assert meta.request.cfg == 6.5 and meta.negative_prompt == "blurry"
        assert meta.params["seed"] == row["seed"]
        parsed = parse_parameters(meta.raw["parameters"])
        assert parsed["Prompt"] == "a red fox, at dawn" and parsed["Seed"] == str(row["seed"])
        assert parsed["CFG scale"] == "6.5" and parsed["Size-1"] == "64"
    assert "step/s" not in out.stderr  # no progress bar when stderr is not a terminal

    # Image i of a batch is the image a single run with seed+i makes.
    single = studio_in_process("generate", "--model", str(tiny_sd15_dir), "--prompt",
                               "a red fox, at dawn", "--negative", "blurry", "--cfg", "6.5",
                               "--seed", "8", "--scheduler", "dpmpp_2m_karras", "--out",
                               str(out_dir), *SMALL)
    assert single.returncode == 0, single.stderr
    one = Path(single.stdout.strip())
    assert one.exists() and one.name.startswith("00003-")
    a = np.asarray(Image.open(rows[1]["path"]).convert("RGB"))
    b = np.asarray(Image.open(one).convert("RGB"))
    assert np.array_equal(a, b)


def test_generate_plain_prints_paths_to_default_outputs(tiny_sd15_dir, studio_home):
    out = run_studio("generate", "--model", str(tiny_sd15_dir), "--prompt", "cat", *SMALL)
    assert out.returncode == 0, out.stderr
    path = Path(out.stdout.strip())
    assert path.parent == studio_home / "outputs" / dt.date.today().isoformat()
    assert path.is_file() and path.name.startswith("00001-")
    seed = int(path.stem.split("-")[1])
    assert 0 <= seed < 2**32
    assert read_image_metadata(path).params["seed"] == seed


def test_failed_job_exits_1_with_the_reason(tiny_sd15_dir, tmp_path):
    broken = tmp_path / "broken-model"
    shutil.copytree(tiny_sd15_dir, broken)
    for weights in (broken / "unet").glob("*.safetensors"):
        weights.write_bytes(b"not really safetensors")
    out = studio_in_process("generate", "--model", str(broken), "--prompt", "cat", "--out",
                            str(tmp_path / "o"), *SMALL)
    assert out.returncode == 1, (out.stdout, out.stderr)
    assert out.stdout == ""
    assert out.stderr.strip().splitlines()[-1].startswith("studio: error: ")
    assert not list((tmp_path / "o").rglob("*.png"))


# Starts ``python -m studio ARGS`` with SIGINT ignored, the way a shell starts a script's background
# job (``studio generate … &``); an ignored signal stays ignored across exec.
_AS_BACKGROUND_JOB = ("import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_IGN); "
                      "os.execv(sys.executable, [sys.executable, '-m', 'studio', *sys.argv[1:]])")


@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT to a child process")
def test_ctrl_c_cancels_and_keeps_finished_images(tiny_sd15_dir, tmp_path):
    """SIGINT once the first image is out: the job stops within a step, that image stays.

    The child starts with SIGINT ignored (as pytest's own children do when the suite runs in the
    background), so this also shows the command takes SIGINT itself rather than relying on what
    it inherited. Nothing here is timed: after the signal the process must end by itself, having
    made fewer images than asked for (with 100 steps an image, the eleven left to make leave the
    signal plenty of room to arrive on a busy machine)."""
    out_dir = tmp_path / "o"
    count = 12
    proc = subprocess.Popen(
        [sys.executable, "-c", _AS_BACKGROUND_JOB, "generate", "--model", str(tiny_sd15_dir),
         "--prompt", "cat", "--steps", "100", "--width", "64", "--height", "64",
         "--count", str(count), "--seed", "1", "--out", str(out_dir)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=dict(os.environ))
    try:
        first = proc.stdout.readline().strip()  # the first image is written: the job is running
        assert first, proc.stderr.read()
        proc.send_signal(signal.SIGINT)
        rest, err = proc.communicate(timeout=300)  # a passing run ends within a step
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert "studio: cancelling" in err
    written = sorted(out_dir.rglob("*.png"))
    assert Path(first) in written and 1 <= len(written) < count
    assert f"cancelled after {len(written)} of {count} image(s)" in err
    assert [p for p in rest.splitlines() if p] == [str(p) for p in written[1:]]
    for path in written:  # whole files only
        with Image.open(path) as im:
            im.load()
    assert not list(out_dir.rglob(".*"))  # no temp files left behind


def test_unavailable_device_is_a_usage_error(tiny_sd15_dir):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    out = studio_in_process("generate", "--model", str(tiny_sd15_dir), "--prompt", "x", "--device",
                            "cuda", *SMALL)
    assert out.returncode == 2
    assert out.stderr.startswith("studio: error: ") and "CUDA" in out.stderr


def test_progress_bar_per_image_on_a_terminal(monkeypatch, capsys):
    """The service reports batch-wide steps; the bar shows each image's own steps."""
    import io
    from types import SimpleNamespace

    from studio.cli import generate

    err = io.StringIO()
    err.isatty = lambda: True  # type: ignore[method-assign]
    monkeypatch.setattr(sys, "stderr", err)
    reporter = generate._Reporter(SimpleNamespace(count=2, width=8, height=8, model="m",
                                                  prompt="p"), as_json=False)
    seen = []
    for step in range(1, 7):  # 2 images × 3 steps
        reporter.job_progress(None, step, 6, None)
        seen.append((reporter.bar.desc, reporter.bar.n, reporter.bar.total))
        if step == 3:
            reporter.report(SimpleNamespace(path=Path("/x/00001-1.png"), seed=1, index=0,
                                            warnings=["prompt truncated"], image=None))
    reporter.close()
    assert seen == [("image 1/2", 1, 3), ("image 1/2", 2, 3), ("image 1/2", 3, 3),
                    ("image 2/2", 1, 3), ("image 2/2", 2, 3), ("image 2/2", 3, 3)]
    assert capsys.readouterr().out == "/x/00001-1.png\n"
    assert "studio: warning: prompt truncated" in err.getvalue()
