"""Files under attack (issue 20): hostile model headers, file names, PNG text, hub paths, leftovers
of a crash and a hand-edited settings file. Each is judged alone, refused or cleaned with a
sentence, and everything else keeps working."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys

import pytest
import torch
from safetensors.torch import save_file

from studio.core.config import Settings, default_paths
from studio.core.jobs import UserFacingError

LORA_KEY = "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k.lora_down.weight"

# -- item 5: a crafted .safetensors header never breaks discovery ---------------------------------

HOSTILE_HEADERS = {
    "deep array": (b"[" * 200_000 + b"]" * 200_000, None),
    "deep object": (b'{"a":' * 100_000 + b"1" + b"}" * 100_000, None),
    "deep inside a tensor": (b'{"w":{"dtype":"F32","shape":' + b"[" * 100_000 + b"]" * 100_000
                             + b',"data_offsets":[0,0]}}', None),
    "huge length": (b"{}", 2**63),
    "length past the end": (b"{}", 10**6),
    "not an object": (b"[1, 2]", None),
    "not utf-8": (b'{"\xff": 1}', None),
    "dtype a number": (json.dumps({"w": {"dtype": 5, "shape": [1], "data_offsets": [0, 0]}}), None),
    "shape text": (json.dumps({"w": {"dtype": "F32", "shape": "x", "data_offsets": [0, 0]}}), None),
    "shape huge": (json.dumps({"w": {"dtype": "F32", "shape": [10**30], "data_offsets": [0, 0]}}),
                   None),
    "offsets floats": (json.dumps({"w": {"dtype": "F32", "shape": [], "data_offsets": [0.5, 1]}}),
                       None),
    "tensor a list": (json.dumps({"w": [1, 2]}), None),
    "metadata nested": (json.dumps({"__metadata__": {"a": {"b": 1}}}), None),
    "metadata a number": (json.dumps({"__metadata__": 7}), None),
}


def _hostile_file(path, header, length=None):
    raw = header.encode() if isinstance(header, str) else header
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(struct.pack("<Q", len(raw) if length is None else length) + raw)
    return path


@pytest.mark.parametrize("name", list(HOSTILE_HEADERS))
def test_hostile_header_is_a_sentence_not_a_traceback(tmp_path, name):
    from studio.library.detect import read_safetensors_header

    path = _hostile_file(tmp_path / "x.safetensors", *HOSTILE_HEADERS[name])
    with pytest.raises(UserFacingError) as err:
        read_safetensors_header(path)
    assert "x.safetensors is truncated or corrupt (" in str(err.value)
    assert len(str(err.value)) < 400


@pytest.fixture
def hostile_library():
    paths = default_paths()
    models = paths.models_dir
    for i, (header, length) in enumerate(HOSTILE_HEADERS.values()):
        _hostile_file(models / f"hostile{i:02}.safetensors", header, length)
    # a chat model folder whose weights are hostile, and one LoRA that must still show
    (models / "chatty").mkdir(parents=True)
    (models / "chatty" / "config.json").write_text(json.dumps(
        {"architectures": ["LlamaForCausalLM"], "model_type": "llama"}))
    _hostile_file(models / "chatty" / "model.safetensors", *HOSTILE_HEADERS["deep array"])
    (models / "loras").mkdir()
    save_file({LORA_KEY: torch.zeros(4, 768, dtype=torch.float16)},
              str(models / "loras" / "ink.safetensors"))
    return paths


def test_library_scan_lists_hostile_files_as_unreadable_and_the_rest(hostile_library):
    from studio.library.catalog import list_models

    entries = {e.name: e for e in list_models(Settings(), hostile_library)}
    assert entries["ink"].kind == "lora" and entries["ink"].family == "sd1"
    hostile = [e for n, e in entries.items() if n.startswith("hostile")]
    assert len(hostile) == len(HOSTILE_HEADERS)
    for e in hostile:
        assert e.kind == "unknown" and "truncated or corrupt" in e.detail, (e.name, e.detail)


def test_serve_catalog_scanners_survive_hostile_headers(hostile_library):
    from studio.library.chat_models import find_chat_models
    from studio.library.models import find_txt2img_models

    find_txt2img_models(Settings(), hostile_library)  # must not raise
    find_chat_models(Settings(), hostile_library)


def test_models_list_cli_survives_hostile_headers(hostile_library, tmp_path):
    env = {**os.environ, "HF_HUB_CACHE": str(tmp_path / "no-cache")}
    out = subprocess.run([sys.executable, "-m", "studio", "models", "list", "--json"],
                         capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "Traceback" not in out.stderr
    names = {e["name"]: e["kind"] for e in json.loads(out.stdout)}
    assert names["ink"] == "lora"
    assert sum(1 for n, k in names.items() if n.startswith("hostile") and k == "unknown") \
        == len(HOSTILE_HEADERS)


# -- item 6: a file name that is not UTF-8 does not empty the Gallery -------------------------------

def _png(path, text_chunks=()):
    from PIL import Image
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    for key, value, z in text_chunks:
        info.add_text(key, value, zip=z)
    Image.new("RGB", (4, 3)).save(path, format="PNG", pnginfo=info)
    return path


@pytest.mark.skipif(sys.platform != "linux", reason="Linux file names are bytes")
def test_non_utf8_file_name_keeps_the_gallery(tmp_path):
    from studio.media.gallery import GalleryIndex

    out = tmp_path / "out"
    out.mkdir()
    for i in range(3):
        _png(out / f"ok{i}.png", [("parameters", f"a cat {i}\nSteps: 5", False)])
    odd = os.fsdecode(os.path.join(os.fsencode(out), b"\xff.png"))
    _png(odd, [("parameters", json.dumps({"prompt": "x\ud800y"}), False)])
    db = tmp_path / "gallery.db"
    with GalleryIndex(out, db) as idx:
        assert idx.refresh() == 4
        names = sorted(os.fsencode(i.path.name) for i in idx.list())
        assert names == [b"ok0.png", b"ok1.png", b"ok2.png", b"\xff.png"]
        assert idx.get(odd) is not None and idx.get(odd).width == 4
        assert len(idx.list("cat")) == 3
    with GalleryIndex(out, db) as idx:  # the index saved: a second open reads nothing again
        assert idx.refresh() == 4
        idx.remove(odd)
        assert not os.path.exists(odd) and idx.count() == 3


# -- item 7: PNG text has a total limit, and so has what the gallery index keeps ---------------------

def _chunk(kind, data):
    import zlib

    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _png_with_chunks(path, chunks):
    import io

    buf = io.BytesIO()
    _png(buf)
    raw = buf.getvalue()
    iend = raw.rindex(b"IEND") - 4
    path.write_bytes(raw[:iend] + b"".join(_chunk(k, d) for k, d in chunks) + raw[iend:])
    return path


def test_compressed_text_bomb_is_bounded(tmp_path, monkeypatch):
    import zlib

    from studio.media import image_text

    bomb = zlib.compress(b"A" * (32 * 2**20), 9)  # 32 MB of text in ~32 KB
    chunks = [(b"tEXt", b"parameters\0a red fox\nSteps: 5")]
    chunks += [(b"zTXt", f"k{i}".encode() + b"\0\0" + bomb) for i in range(40)]
    chunks += [(b"iTXt", f"i{i}".encode() + b"\0\1\0\0\0" + bomb) for i in range(10)]
    path = _png_with_chunks(tmp_path / "bomb.png", chunks)
    inflated = []
    real = zlib.decompressobj

    class Counting:
        def __init__(self):
            self.d = real()
            self.unconsumed_tail = b""

        def decompress(self, data, limit):
            out = self.d.decompress(data, limit)
            self.unconsumed_tail = self.d.unconsumed_tail
            inflated.append(len(out))
            return out

    monkeypatch.setattr(image_text.zlib, "decompressobj", Counting)
    text = image_text.read_image_text(path)
    assert text == {"parameters": "a red fox\nSteps: 5"}
    assert sum(inflated) <= image_text.MAX_TEXT_TOTAL


def test_gallery_index_keeps_a_bounded_copy_of_huge_text(tmp_path):
    from studio.media.gallery import INDEX_PROMPT_CHARS, GalleryIndex
    from studio.media.image_text import MAX_TEXT_TOTAL, read_image_text

    out = tmp_path / "out"
    out.mkdir()
    big = "word " * (MAX_TEXT_TOTAL // 15)  # under the read limit, far over what the index keeps
    extras = ", ".join(f"Extra {i}: {'x' * 5_000}" for i in range(40))
    params = f"{big}\nNegative prompt: {big}\nSteps: 5, Seed: 1, {extras}"
    for i in range(5):
        _png(out / f"big{i}.png", [("parameters", params, True)])
    _png(out / "over.png", [("parameters", "y" * (MAX_TEXT_TOTAL + 1), False)])
    assert read_image_text(out / "over.png") == {}  # over the per-image total: dropped
    db = tmp_path / "gallery.db"
    with GalleryIndex(out, db) as idx:
        assert idx.refresh() == 6
        item = idx.get(out / "big0.png")
        assert item.prompt.startswith("word word") and "more characters not kept]" in item.prompt
        assert len(item.prompt) < INDEX_PROMPT_CHARS + 100
        assert len(json.dumps(item.params)) < 70_000
        assert idx.list("word")  # still searchable
        idx._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    assert db.stat().st_size < 2 * 2**20  # 5 images of ~2 MB text each: ~10 MB before


# -- item 9: a hostile Hub mirror cannot write outside the models folder ----------------------------

ESCAPING_NAMES = ["/x.json", "../x.json", "unet/../../x.json", "a\\..\\..\\x.json", "C:/x.json",
                  "C:x.json", "//server/share/x.json", "./config.json", "unet//x.json",
                  "x\0.json", ""]


@pytest.mark.parametrize("name", ESCAPING_NAMES)
def test_repo_paths_that_could_escape_are_named_unsafe(name):
    from studio.library.hub_download import unsafe_repo_path

    assert unsafe_repo_path(name)


def test_ordinary_repo_paths_are_safe():
    from studio.library.hub_download import unsafe_repo_path

    for name in ["config.json", "unet/diffusion_pytorch_model.fp16.safetensors", "a..b.json",
                 "model-00001-of-00002.safetensors", ".gitattributes"]:
        assert unsafe_repo_path(name) == "", name


@pytest.fixture
def hostile_hub(monkeypatch, tmp_path):
    from huggingface_hub import constants

    from tests.fixtures.fake_hub import FakeHub, FakeRepo

    files = {"model_index.json": b"{}", "unet/config.json": b"{}",
             "unet/diffusion_pytorch_model.safetensors": b"w" * 8}
    repos = {f"evil/m{i}": FakeRepo({**files, name: b"pwned"})
             for i, name in enumerate(["/x.json", "../x.json", "unet/../../x.json",
                                       "a\\..\\..\\x.json", "C:/x.json"])}
    server = FakeHub(repos)
    monkeypatch.setenv("HF_ENDPOINT", server.url)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    yield server
    server.close()


def test_hostile_mirror_listing_is_refused_and_nothing_is_written(hostile_hub, tmp_path):
    from studio.library import hub_download as hd

    paths = default_paths()
    before = sorted(p for p in tmp_path.rglob("*"))
    for repo_id in hostile_hub.repos:
        with pytest.raises(UserFacingError, match="outside the models folder") as err:
            hd.plan_download(repo_id, fp16=False)
        assert "HF_ENDPOINT" in str(err.value)
    # a plan made elsewhere (a queued job) is checked again before anything is written
    plan = hd.DownloadPlan("evil/m1", "c" * 40, [hd.HubFile("../x.json", 5, "../x.json")], [],
                           False, False)
    with pytest.raises(UserFacingError, match="outside the models folder"):
        hd.download(plan, paths)
    assert sorted(p for p in tmp_path.rglob("*")) == before
    assert hostile_hub.fetched() == []


# -- item 13: wrong types in settings.json fall back per field, with a backup and a notice ----------

BAD_SETTINGS = {"output_dir": 5, "taesd_every": [1, 2], "memory_budget_gb": None,
                "extra_model_dirs": "not a list", "added_models": [3], "model_options": [],
                "remote_endpoints": {"a": 1}, "schema_version": "two", "device": None}


def test_settings_of_the_wrong_type_fall_back_per_field():
    from studio.core.config import load_settings

    paths = default_paths()
    raw = {**BAD_SETTINGS, "theme": "light", "models_dir": "/srv/models", "load_in": "8bit"}
    paths.settings_file.parent.mkdir(parents=True, exist_ok=True)
    paths.settings_file.write_text(json.dumps(raw))
    loaded = load_settings(paths.settings_file)
    s = loaded.settings
    assert (s.theme, s.models_dir, s.load_in) == ("light", "/srv/models", "8bit")  # kept
    assert s == Settings(theme="light", models_dir="/srv/models", load_in="8bit")
    for name in set(BAD_SETTINGS) - {"schema_version"}:
        assert name in loaded.notice, name
    backups = list(paths.settings_file.parent.glob("settings.corrupt-*.json"))
    assert len(backups) == 1 and json.loads(backups[0].read_text()) == raw
    again = load_settings(paths.settings_file)  # repaired on disk: the notice is given once
    assert again.notice == "" and again.settings == s


def test_cli_runs_with_a_mistyped_settings_file(tmp_path):
    paths = default_paths()
    paths.settings_file.parent.mkdir(parents=True, exist_ok=True)
    paths.settings_file.write_text(json.dumps(BAD_SETTINGS))
    env = {**os.environ, "HF_HUB_CACHE": str(tmp_path / "no-cache")}
    out = subprocess.run([sys.executable, "-m", "studio", "models", "list"], capture_output=True,
                         text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "Traceback" not in out.stderr
    assert "output_dir" in out.stderr and "back to the default" in out.stderr


# -- item 12: what a crash leaves (.saving-*.png.part, .importing-*) is cleaned at start --------------

def _dead_pid():
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _aged(path, seconds):
    t = path.lstat().st_mtime - seconds
    os.utime(path, (t, t))
    return path


def test_stale_work_files_are_removed_and_live_ones_kept(tmp_path):
    from studio.core.files import STALE_AFTER_S, clean_stale_work_files

    old = STALE_AFTER_S + 60
    dead, me = _dead_pid(), os.getpid()
    out, models = tmp_path / "out", tmp_path / "models"
    (out / "2026-01-01").mkdir(parents=True)
    (models / "loras").mkdir(parents=True)

    def file(path, age=old):
        path.write_bytes(b"x")
        return _aged(path, age)

    stale = [file(out / "2026-01-01" / f".saving-{dead}-ab12cd34.png.part"),
             file(out / ".saving-k3j4l5m6.png.part"),  # a name from before the pid was added
             file(models / "loras" / f".ink.safetensors.importing-{dead}-0123abcd")]
    folder = models / f".tiny-sd15.importing-{dead}-89abcdef"
    (folder / "unet").mkdir(parents=True)
    _aged(file(folder / "unet" / "config.json"), old)
    _aged(folder / "unet", old)
    _aged(folder, old)
    stale.append(folder)
    kept = [file(out / f".saving-{me}-aaaa1111.png.part"),  # this process: alive
            file(out / f".saving-{dead}-bbbb2222.png.part", age=5),  # written to just now
            file(out / "00001-42.png"), file(models / "loras" / "ink.safetensors"),
            file(models / ".downloads"), file(out / "notes.importing-x")]
    busy = models / f".big.importing-{dead}-cafe0001"  # a folder copy whose file still grows
    busy.mkdir()
    file(busy / "weights.safetensors", age=5)
    _aged(busy, old)
    kept.append(busy)

    removed = clean_stale_work_files([out, models])
    assert sorted(removed) == sorted(stale)
    assert not any(p.exists() for p in stale)
    assert all(p.exists() for p in kept)


def test_cli_start_cleans_stale_work_files():
    from studio.cli import models as cli_models
    from studio.core.files import STALE_AFTER_S

    paths = default_paths()
    paths.outputs_dir.mkdir(parents=True, exist_ok=True)
    leftover = paths.outputs_dir / f".saving-{_dead_pid()}-zz99yy88.png.part"
    leftover.write_bytes(b"half a png")
    _aged(leftover, STALE_AFTER_S + 60)
    cli_models._context()
    assert not leftover.exists()


def test_saved_images_name_their_writer(tmp_path, monkeypatch):
    from PIL import Image

    from studio.media import outputs

    seen = []
    real = outputs.tempfile.mkstemp
    monkeypatch.setattr(outputs.tempfile, "mkstemp",
                        lambda **kw: seen.append(kw["prefix"]) or real(**kw))
    outputs.write_numbered_png(Image.new("RGB", (2, 2)), tmp_path, 7)
    assert seen == [f".saving-{os.getpid()}-"]


# -- item 14: masks have the images' pixel limit; unwritable outputs fail first; disk full in words --

@pytest.mark.filterwarnings("ignore:Image size")  # Pillow's own warning, expected here
def test_mask_over_the_pixel_limit_is_refused_before_decoding(tmp_path):
    import zlib

    from studio.media.images_in import max_pixels, open_image, open_mask

    side = int(max_pixels() ** 0.5) + 10  # a header claiming ~90 MP; no pixels behind it
    ihdr = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    bomb = tmp_path / "mask.png"
    bomb.write_bytes(b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr)
                     + _chunk(b"IDAT", zlib.compress(b"\0" * 64)) + _chunk(b"IEND", b""))
    with pytest.raises(UserFacingError, match="megapixel limit") as mask_err:
        open_mask(bomb, (64, 64))
    with pytest.raises(UserFacingError, match="megapixel limit") as image_err:
        open_image(bomb)
    assert str(mask_err.value).startswith("The mask mask.png is")
    assert str(image_err.value).split(" is ", 1)[1] == str(mask_err.value).split(" is ", 1)[1]


def test_unwritable_outputs_fail_before_the_model_loads(tiny_sd15_dir, monkeypatch):
    import errno

    from studio.core.jobs import CancelToken
    from studio.core.requests import Txt2ImgRequest
    from studio.media import outputs
    from studio.pipelines.diffusion.txt2img import Txt2ImgService
    from tests.fixtures.sinks import RecordingSink

    def read_only(**kw):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(outputs.tempfile, "mkstemp", read_only)
    monkeypatch.setattr(Txt2ImgService, "_load", lambda *a: pytest.fail("loaded the model"))
    settings = Settings(device="cpu", precision="fp32", preview_mode="off")
    request = Txt2ImgRequest(model=str(tiny_sd15_dir), prompt="a cat", steps=1, width=64,
                             height=64)
    with pytest.raises(UserFacingError) as err:
        Txt2ImgService(lambda: settings, default_paths).run(request, RecordingSink(),
                                                             CancelToken())
    text = str(err.value)
    assert "read-only disk" in text and str(default_paths().outputs_dir) in text
    assert "Errno" not in text


def test_disk_full_while_saving_says_so_and_where(tmp_path):
    import errno

    from studio.media.outputs import write_numbered_png

    class FullDisk:
        def save(self, fh, **kw):
            fh.write(b"\x89PNG")
            raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(UserFacingError) as err:
        write_numbered_png(FullDisk(), tmp_path / "out", 5)
    text = str(err.value)
    assert text.startswith("The disk is full: the image could not be saved in ")
    assert str(tmp_path / "out") in text and "Errno" not in text and "No space left" not in text
    assert list((tmp_path / "out").iterdir()) == []  # no half-written file left behind


def test_settings_save_on_a_full_disk_is_a_sentence(monkeypatch):
    import errno

    from studio.core import config

    def full(path, text):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(config, "atomic_write_text", full)
    with pytest.raises(UserFacingError, match="^The disk is full: the settings could not be "):
        config.save_settings(Settings())
