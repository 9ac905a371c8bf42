"""Saving images: numbering, atomic writes, concurrent savers, and the metadata round trip."""

from __future__ import annotations

import datetime as dt
import multiprocessing
import sys
from pathlib import Path

import pytest
from PIL import Image

import studio
from studio.core.requests import Txt2ImgRequest
from studio.media.metadata import parse_parameters, read_image_metadata, to_request
from studio.media.outputs import next_output_path, save_txt2img_image, write_numbered_png

REQ = Txt2ImgRequest(model="/models/tiny", prompt="a lighthouse, at night\nsecond: line",
                     negative_prompt="blurry", steps=12, cfg=6.5, width=64, height=48, seed=41,
                     count=3, scheduler="euler_a")


def _save(tmp_path, seed=41, image=None):
    image = image or Image.new("RGB", (64, 48), (200, 100, 50))
    return save_txt2img_image(image, REQ, seed, tmp_path, model_name="tiny", model_hash="0123abcd",
                              sampler="Euler a", schedule_type="Automatic",
                              extra={"Clip skip": 1})


def test_save_writes_dated_numbered_png_with_metadata(tmp_path):
    path, text = _save(tmp_path, seed=42)
    assert path.parent == tmp_path / dt.date.today().isoformat()
    assert path.name == "00001-42.png"
    with Image.open(path) as im:
        assert im.size == (64, 48)
        assert im.getpixel((0, 0)) == (200, 100, 50)
        assert im.text["parameters"] == text
    parsed = parse_parameters(text)
    assert parsed["Seed"] == "42" and parsed["Version"] == f"Studio {studio.__version__}"
    assert parsed["Model"] == "tiny" and parsed["Model hash"] == "0123abcd"


def test_numbering_continues_and_skips_foreign_names(tmp_path):
    day = tmp_path / dt.date.today().isoformat()
    day.mkdir(parents=True)
    (day / "00007-1.png").write_bytes(b"x")
    (day / "notes.txt").write_text("not numbered")
    assert next_output_path(tmp_path, 5) == day / "00008-5.png"
    paths = [_save(tmp_path, seed=s)[0] for s in (41, 42, 43)]
    assert [p.name for p in paths] == ["00008-41.png", "00009-42.png", "00010-43.png"]


def test_roundtrip_request_from_file(tmp_path):
    path, _ = _save(tmp_path, seed=43)
    meta = read_image_metadata(path)
    assert meta.source == "studio"
    assert meta.request == REQ
    assert (meta.prompt, meta.negative_prompt) == (REQ.prompt, REQ.negative_prompt)
    assert meta.params["seed"] == 43 and meta.params["sampler"] == "Euler a"
    again = to_request(meta, "/other")
    assert again.seed == 43 and again.count == 1 and again.model == REQ.model
    assert again.scheduler == "euler_a" and again.prompt == REQ.prompt


class _Boom(Exception):
    pass


class _FailingImage:
    """Writes half a PNG, then fails, as a crash or a full disk would."""

    def save(self, fh, format=None, pnginfo=None):  # noqa: A002 - PIL's signature
        fh.write(b"\x89PNG\r\n\x1a\n" + b"\0" * 100)
        raise _Boom("disk full")


def test_failed_write_leaves_no_file(tmp_path):
    with pytest.raises(_Boom):
        save_txt2img_image(_FailingImage(), REQ, 1, tmp_path, model_name="m", model_hash="",
                           sampler="Euler", schedule_type="")
    day = tmp_path / dt.date.today().isoformat()
    assert list(day.iterdir()) == []
    # The next successful save still gets number 1.
    assert _save(tmp_path)[0].name == "00001-41.png"


def test_name_taken_by_another_writer_is_never_overwritten(tmp_path, monkeypatch):
    """Simulate a race: another process claims the number between our scan and our link."""
    from studio.media import outputs

    day = tmp_path / "d"
    real = outputs._next_number
    calls = {"n": 0}

    def racing(folder: Path) -> int:
        calls["n"] += 1
        n = real(folder)
        if calls["n"] == 1:  # the other writer lands on exactly this name first
            (folder / f"{n:05d}-9.png").write_bytes(b"theirs")
            return n
        return n

    monkeypatch.setattr(outputs, "_next_number", racing)
    path = write_numbered_png(Image.new("RGB", (4, 4)), day, 9)
    assert path.name == "00002-9.png"
    assert (day / "00001-9.png").read_bytes() == b"theirs"
    assert sorted(p.name for p in day.iterdir()) == ["00001-9.png", "00002-9.png"]


def _worker(folder: str, seed: int, n: int) -> None:
    img = Image.new("RGB", (8, 8), (seed % 255, 0, 0))
    for _ in range(n):
        write_numbered_png(img, Path(folder), seed)


@pytest.mark.skipif(sys.platform == "win32", reason="fork start method")
def test_two_processes_saving_at_once_get_distinct_numbers(tmp_path):
    folder = tmp_path / "day"
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_worker, args=(str(folder), s, 15)) for s in (1, 2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    names = sorted(p.name for p in folder.iterdir())
    assert len(names) == 30
    assert sorted(int(n[:5]) for n in names) == list(range(1, 31))
    assert not [n for n in names if n.startswith(".")]
    for name in names:  # every file is a whole, readable PNG
        with Image.open(folder / name) as im:
            im.load()
