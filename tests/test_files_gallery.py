"""Gallery index: scanning, incremental refresh, search, delete, threads, thumbnails."""

from __future__ import annotations

import json
import os
import threading
import time
import zlib
from pathlib import Path

import pytest
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from studio.core.requests import Txt2ImgRequest
from studio.media.gallery import GalleryIndex, make_thumbnail
from studio.media.outputs import save_txt2img_image

WORDS = ["castle", "forest", "robot", "ocean", "desert", "city", "dragon", "garden"]


def _chunk(kind: bytes, data: bytes) -> bytes:
    return len(data).to_bytes(4, "big") + kind + data + zlib.crc32(kind + data).to_bytes(4, "big")


_BASE_PNG = None


def _tiny_png(path: Path, prompt: str, mtime: float | None = None) -> Path:
    """A 4×4 PNG with an A1111 ``parameters`` chunk, built from bytes (fast for thousands)."""
    global _BASE_PNG
    if _BASE_PNG is None:
        from io import BytesIO

        buf = BytesIO()
        Image.new("RGB", (4, 4), (1, 2, 3)).save(buf, format="PNG")
        _BASE_PNG = buf.getvalue()
    text = f"{prompt}\nNegative prompt: blurry\nSteps: 20, Sampler: Euler, CFG scale: 7, Seed: 1, Size: 4x4"
    ihdr_end = 8 + 25  # signature + IHDR chunk
    data = (_BASE_PNG[:ihdr_end] + _chunk(b"tEXt", b"parameters\0" + text.encode("latin-1"))
            + _BASE_PNG[ihdr_end:])
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    if mtime is not None:
        os.utime(path, (mtime, mtime))
    return path


def _make_tree(root: Path, n: int) -> list[Path]:
    t0 = 1_700_000_000.0
    paths = []
    for i in range(n):
        day = root / f"2024-01-{1 + i // 500:02d}"
        prompt = f"a {WORDS[i % len(WORDS)]} number {i}"
        paths.append(_tiny_png(day / f"{i:05d}-{i}.png", prompt, mtime=t0 + i))
    return paths


@pytest.fixture()
def index(tmp_path):
    with GalleryIndex(tmp_path / "out", tmp_path / "data" / "gallery.db") as idx:
        yield idx


def test_refresh_lists_newest_first_and_reads_prompts(index, tmp_path):
    _make_tree(tmp_path / "out", 20)
    (tmp_path / "out" / "notes.txt").write_text("ignored")
    (tmp_path / "out" / ".saving-x.png.part").write_bytes(b"partial")
    assert index.refresh() == 20
    items = index.list()
    assert [i.path.name for i in items[:3]] == ["00019-19.png", "00018-18.png", "00017-17.png"]
    first = items[0]
    assert first.prompt == "a ocean number 19" and first.source == "a1111"
    assert (first.width, first.height) == (4, 4) and first.negative_prompt == "blurry"
    assert first.params["steps"] == 20
    assert len(index.list(limit=5)) == 5


def test_same_mtime_sorts_by_name(index, tmp_path):
    for name in ("00001-1.png", "00003-3.png", "00002-2.png"):
        _tiny_png(tmp_path / "out" / name, "x", mtime=1_700_000_000)
    index.refresh()
    assert [i.path.name for i in index.list()] == ["00003-3.png", "00002-2.png", "00001-1.png"]


def test_search_is_case_insensitive_every_word_and_literal(index, tmp_path):
    out = tmp_path / "out"
    _tiny_png(out / "a.png", "A Red DRAGON over the Sea")
    _tiny_png(out / "b.png", "a red fox")
    _tiny_png(out / "c.png", "100% pure_water Über")
    _tiny_png(out / "d.png", "1000 pure water")
    index.refresh()
    names = lambda q: sorted(i.path.name for i in index.list(q))  # noqa: E731
    assert names("red") == ["a.png", "b.png"]
    assert names("dragon RED") == ["a.png"]
    assert names("red cat") == []
    assert names("blurry") == ["a.png", "b.png", "c.png", "d.png"]  # the negative prompt
    assert names("100%") == ["c.png"]  # % and _ are literal, not wildcards
    assert names("pure_water") == ["c.png"]
    assert names("über") == ["c.png"]
    assert names("   ") == ["a.png", "b.png", "c.png", "d.png"]


def test_incremental_refresh_adds_changes_and_drops(index, tmp_path, monkeypatch):
    paths = _make_tree(tmp_path / "out", 30)
    assert index.refresh() == 30
    from studio.media import gallery

    read = []
    real = gallery._describe
    monkeypatch.setattr(gallery, "_describe", lambda p, m, s: read.append(p) or real(p, m, s))
    assert index.refresh() == 30
    assert read == []  # nothing changed: no file was opened
    paths[0].unlink()
    _tiny_png(paths[1], "now a submarine", mtime=1_800_000_000)
    _tiny_png(tmp_path / "out" / "2024-02-01" / "new.png", "brand new")
    assert index.refresh() == 30
    assert sorted(Path(p).name for p in read) == ["00001-1.png", "new.png"]
    assert index.list()[0].prompt == "now a submarine"
    assert index.list("submarine")[0].path == paths[1]
    assert index.get(paths[0]) is None


def test_index_persists_across_instances(tmp_path):
    _make_tree(tmp_path / "out", 5)
    db = tmp_path / "g.db"
    with GalleryIndex(tmp_path / "out", db) as idx:
        idx.refresh()
    with GalleryIndex(tmp_path / "out", db) as idx:
        assert len(idx.list()) == 5  # before any refresh


def test_remove_deletes_file_and_row(index, tmp_path):
    paths = _make_tree(tmp_path / "out", 3)
    index.refresh()
    index.remove(paths[1])
    assert not paths[1].exists()
    assert [i.path for i in index.list()] == [paths[2], paths[0]]
    index.remove(paths[1])  # already gone: no error


def test_add_indexes_a_studio_output_immediately(index, tmp_path):
    req = Txt2ImgRequest(model="m", prompt="lighthouse at dusk", seed=3, width=8, height=16)
    path, _ = save_txt2img_image(Image.new("RGB", (8, 16)), req, 3, tmp_path / "out",
                                 model_name="m", model_hash="", sampler="Euler",
                                 schedule_type="")
    item = index.add(path)
    assert item.source == "studio" and item.prompt == "lighthouse at dusk"
    assert (item.width, item.height) == (8, 16)
    assert index.add(tmp_path / "missing.png") is None


def test_broken_and_foreign_files_are_listed_without_error(index, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\ngarbage")
    Image.new("RGB", (6, 5)).save(out / "plain.jpg")
    info = PngInfo()
    info.add_text("prompt", json.dumps({"1": {"class_type": "KSampler", "inputs": {
        "seed": 1, "steps": 2, "cfg": 3, "positive": ["2", 0], "negative": ["2", 0]}},
        "2": {"class_type": "CLIPTextEncode", "inputs": {"text": "comfy cat"}}}))
    Image.new("RGB", (4, 4)).save(out / "comfy.png", pnginfo=info)
    assert index.refresh() == 3
    by_name = {i.path.name: i for i in index.list()}
    assert by_name["broken.png"].source == "none"
    assert (by_name["plain.jpg"].width, by_name["plain.jpg"].height) == (6, 5)
    assert by_name["comfy.png"].prompt == "comfy cat"


def test_calls_from_many_threads(index, tmp_path):
    _make_tree(tmp_path / "out", 50)
    errors = []

    def work(k):
        try:
            for _ in range(5):
                index.refresh() if k % 2 else index.list(WORDS[k % len(WORDS)])
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    assert index.count() == 50


def test_refresh_2000_reads_each_file_once(index, tmp_path, monkeypatch):
    """2,000 files in four day folders: the first refresh reads each once, the next reads none.
    (How long each takes: bench/gallery.py.)"""
    from studio.media import gallery

    _make_tree(tmp_path / "out", 2000)
    read = []
    real = gallery._describe
    monkeypatch.setattr(gallery, "_describe", lambda p, m, s: read.append(p) or real(p, m, s))
    assert index.refresh() == 2000
    assert len(read) == len(set(read)) == 2000
    read.clear()
    assert index.refresh() == 2000
    assert read == []
    hits = index.list("dragon")
    assert len(hits) == 250 and all("dragon" in h.prompt for h in hits)


def test_thumbnail_is_small_and_cached(tmp_path):
    src = tmp_path / "big.png"
    Image.new("RGB", (600, 300), (0, 128, 255)).save(src)
    cache = tmp_path / "thumbs"
    thumb = make_thumbnail(src, 128, cache_dir=cache)
    assert thumb.size == (128, 64) and thumb.mode == "RGB"
    files = [p for p in cache.rglob("*") if p.is_file()]
    assert len(files) == 1 and files[0].suffix == ".jpg"
    # Second call is served from the cache: it works even if the source can no longer be decoded
    # (same path, same mtime and size as when it was cached).
    st = src.stat()
    src.write_bytes(b"\0" * st.st_size)
    os.utime(src, ns=(st.st_atime_ns, st.st_mtime_ns))
    again = make_thumbnail(src, 128, cache_dir=cache)
    assert again.size == (128, 64)
    assert abs(again.getpixel((10, 10))[2] - 255) <= 3


def test_thumbnail_refreshes_when_file_changes_and_keeps_alpha(tmp_path):
    src = tmp_path / "a.png"
    Image.new("RGBA", (40, 40), (255, 0, 0, 100)).save(src)
    cache = tmp_path / "thumbs"
    first = make_thumbnail(src, 16, cache_dir=cache)
    assert first.mode == "RGBA" and first.getpixel((0, 0))[3] == 100
    Image.new("RGBA", (40, 20), (0, 255, 0, 255)).save(src)
    os.utime(src, (time.time() + 5, time.time() + 5))
    second = make_thumbnail(src, 16, cache_dir=cache)
    assert second.size == (16, 8) and second.getpixel((0, 0))[1] == 255


def test_thumbnail_of_broken_file_raises(tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"nope")
    with pytest.raises(Exception):  # noqa: B017 - any PIL/OS error; the caller shows a tile
        make_thumbnail(bad, 64, cache_dir=tmp_path / "t")


def test_index_params_keep_small_params_whole_and_cut_long_values():
    """A picture's usual parameters are kept as they are (one json.dumps, the fast path the
    gallery bench asked for); a value past the per-value limit is cut with a marker."""
    from studio.media import gallery

    small = {"Steps": 20, "CFG scale": 7.0, 3: None, "Size": [512, 512], "Model": "sd15"}
    assert json.loads(gallery._index_params(small)) == {str(k): v for k, v in small.items()}
    # the same dict one value at a time (the slow path) gives the same text
    slow = dict(small, Big="x" * (gallery.INDEX_PARAM_CHARS + 1000))
    kept = json.loads(gallery._index_params(slow))
    assert {k: kept[k] for k in map(str, small)} == {str(k): v for k, v in small.items()}
    assert kept["Big"].endswith("characters not kept]") and len(kept["Big"]) < len(slow["Big"])
