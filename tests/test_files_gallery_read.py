"""The gallery's first read of a file (``media.gallery._describe``): its fast path gives the same
row as the full path for every format.

The fast path (see docs/benchmarks.md, "What moved") reads a PNG's size and text through one
open, answers "not JSON" without ``json.loads`` for text that cannot start a JSON object, parses
a JSON ``parameters`` chunk once for SwarmUI and Fooocus, and hands only the ``ControlNet N``
keys to the ControlNet reader. The full path is what each of those replaced: the text through
:func:`read_image_text` and the size through ``_image_size`` (three opens), ``json.loads`` on
every candidate text, each JSON reader parsing for itself, every param to ``from_infotext``.
"""

from __future__ import annotations

import dataclasses
import gzip
import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from studio.core.requests import Txt2ImgRequest
from studio.media import foreign_metadata, gallery, metadata
from studio.media.image_text import read_image_text
from studio.media.metadata import SOURCES
from studio.media.outputs import save_txt2img_image

FOREIGN = Path(__file__).parent / "fixtures" / "foreign"
A1111 = ("a castle <lora:detail:0.7>\nNegative prompt: fog\nSteps: 20, Sampler: Euler a, "
         "CFG scale: 7, Seed: 5, Size: 512x768, Model: m1, Clip skip: 2, Hires upscale: 2")


def _png(path: Path, chunks: dict[str, str], mode: str = "RGB") -> Path:
    info = PngInfo()
    for key, value in chunks.items():
        info.add_itxt(key, value) if key.startswith("XML:") else info.add_text(key, value)
    Image.new(mode, (8, 6)).save(path, pnginfo=info)
    return path


def _stealth(path: Path, text: str) -> Path:
    """A1111's stealth_pnginfo, compressed: the text in the alpha channel's low bits."""
    payload = gzip.compress(text.encode())
    data = b"stealth_pngcomp" + (len(payload) * 8).to_bytes(4, "big") + payload
    bits = np.unpackbits(np.frombuffer(data, np.uint8))
    alpha = np.full(64 * 64, 254, np.uint8)
    alpha[:bits.size] |= bits
    rgba = np.zeros((64, 64, 4), np.uint8)
    rgba[..., 3] = alpha.reshape(64, 64).T
    Image.fromarray(rgba, "RGBA").save(path)
    return path


def _files(folder: Path) -> list[Path]:
    """One file or more of every format the index reads, and files that defeat each check."""
    folder.mkdir()
    files = sorted(FOREIGN.glob("*.png")) + sorted(FOREIGN.glob("*.jpg"))  # A1111 (+ stealth),
    # ComfyUI (prompt / workflow), Fooocus, NovelAI, InvokeAI (three formats)
    swarm = {"sui_image_params": {"prompt": "a lighthouse", "negativeprompt": "fog", "seed": 4,
                                  "steps": 30, "cfgscale": 6.5, "loras": ["d"],
                                  "loraweights": ["0.6"], "swarm_version": "0.9"}}
    fooocus = {"prompt": "a goldfish", "steps": 30, "guidance_scale": 4, "seed": "2",
               "resolution": "(768, 1280)", "base_model": "jugg", "metadata_scheme": "fooocus"}
    nai = json.dumps({"prompt": "a fox", "uc": "blurry", "steps": 28, "scale": 5, "seed": 42})
    comment = json.dumps({"c": "an owl & a moon", "uc": "t", "seed": 99, "size": "768x512"})
    xmp = ('<x:xmpmeta><exif:UserComment><rdf:Alt><rdf:li xml:lang="x-default">'
           + comment.replace("&", "&amp;").replace('"', "&quot;")
           + "</rdf:li></rdf:Alt></exif:UserComment></x:xmpmeta>")
    control = (', ControlNet 0: "Module: canny, Model: control_canny [d14c016b], Weight: 0.8", '
               'ControlNet 1: "Module: none, Model: None", ControlNetX: 1')
    for name, chunks in {
        "swarmui.png": {"parameters": json.dumps(swarm)},
        "swarmui_spaces.png": {"parameters": " \n\t" + json.dumps(swarm)},  # json.loads skips them
        "fooocus.png": {"parameters": json.dumps(fooocus)},
        "both.png": {"parameters": json.dumps({**swarm, **fooocus})},  # SwarmUI is tried first
        "json_of_neither.png": {"parameters": json.dumps({"prompt": "x"})},  # A1111 text then
        "json_list.png": {"parameters": "[1, 2]"},
        "json_broken.png": {"parameters": "{not json\nSteps: 1, Seed: 2, CFG scale: 3"},
        "bom.png": {"parameters": "\ufeff" + json.dumps(swarm)},  # json.loads refuses a BOM
        "a1111.png": {"parameters": A1111},
        "a1111_controlnet.png": {"parameters": A1111 + control},
        "novelai.png": {"Comment": nai, "Software": "NovelAI", "Source": "NAI v3"},
        "novelai_comment_not_json.png": {"Comment": "hello", "Software": "NovelAI"},
        "drawthings.png": {"XML:com.adobe.xmp": xmp},
        "invokeai.png": {"invokeai_metadata": " " + json.dumps({"positive_prompt": "a dog"})},
        "comfyui_not_an_object.png": {"prompt": "[]", "workflow": "\n{\"nodes\": []}"},
        "none.png": {},
    }.items():
        files.append(_png(folder / name, chunks))
    files.append(_stealth(folder / "stealth_novelai.png",
                          json.dumps({"Software": "NovelAI", "Comment": nai})))
    req = Txt2ImgRequest(model="m", prompt="lighthouse at dusk", seed=3, width=8, height=16)
    files.append(save_txt2img_image(Image.new("RGB", (8, 16)), req, 3, folder / "studio",
                                    model_name="m", model_hash="", sampler="Euler",
                                    schedule_type="")[0])
    whole = (folder / "a1111.png").read_bytes()
    for cut in (8, 20, 24, 40):  # cut short: inside and after the IHDR
        (folder / f"cut{cut}.png").write_bytes(whole[:cut])
        files.append(folder / f"cut{cut}.png")
    (folder / "no_ihdr_first.png").write_bytes(whole[:8] + whole[33:])
    Image.new("RGB", (5, 7)).save(folder / "plain.webp")
    (folder / "jpeg_named.png").write_bytes((FOREIGN / "automatic1111_cropped.jpg").read_bytes())
    return files + [folder / "no_ihdr_first.png", folder / "plain.webp", folder / "jpeg_named.png"]


def _rows(files: list[Path]) -> list[tuple]:
    rows = []
    for path in files:
        st = path.stat()
        rows.append(gallery._describe(str(path), st.st_mtime, st.st_size))
    return rows


def _metadata(files: list[Path]) -> list[dict]:
    """All a file says, notes (the ControlNet one among them) included, which the row leaves out."""
    return [dataclasses.asdict(metadata.read_image_metadata(path)) for path in files]


def _full_parameters(text: str | None):
    for source, reader in (("swarmui", foreign_metadata.read_swarmui),
                           ("fooocus", foreign_metadata.read_fooocus)):
        found = reader(text)  # each parses the text itself
        if found is not None:
            return source, found
    return None


def test_the_fast_first_read_gives_the_full_paths_row_for_every_format(tmp_path, monkeypatch):
    files = _files(tmp_path / "images")
    fast, fast_meta = _rows(files), _metadata(files)
    with monkeypatch.context() as m:
        m.setattr(gallery, "_text_and_size", lambda path: (read_image_text(Path(path)),
                                                           gallery._image_size(Path(path))))
        m.setattr(foreign_metadata, "_OBJECT_START", re.compile(""))  # json.loads on any text
        m.setattr(foreign_metadata, "read_json_parameters", _full_parameters)
        m.setattr(metadata, "_control_units",
                  lambda params: {k: str(v) for k, v in params.items()})
        full, full_meta = _rows(files), _metadata(files)
    assert len(fast) == len(full) == len(files)
    for path, f, g in zip(files, fast, full, strict=True):
        assert f == g, path.name
    for path, f, g in zip(files, fast_meta, full_meta, strict=True):
        assert f == g, path.name
    assert any("ControlNet guided this image (control_canny)" in note
               for meta in fast_meta for note in meta["notes"])
    by_name = {Path(row[0]).name: row for row in fast}
    assert {row[9] for row in fast} == set(SOURCES)  # every format was read
    assert by_name["swarmui_spaces.png"][9] == "swarmui" and by_name["both.png"][9] == "swarmui"
    assert by_name["json_of_neither.png"][9] == by_name["bom.png"][9] == "a1111"
    assert (by_name["cut20.png"][7:9], by_name["cut24.png"][7:9]) == ((0, 0), (8, 6))
    assert by_name["plain.webp"][7:9] == (5, 7)


@pytest.mark.parametrize("text", ["", "  ", "a prompt\nSteps: 1", "[1]", '"{"', "\ufeff{}",
                                  "{", '{"a": 1}', ' \r\n\t{"a": NaN}', "{x}", "\x0b{}"])
def test_json_skips_only_text_that_cannot_hold_an_object(text):
    try:
        whole = json.loads(text)
    except ValueError:
        whole = None
    expected = whole if isinstance(whole, dict) else None  # what every reader wants
    assert json.dumps(foreign_metadata._json(text)) == json.dumps(expected)  # NaN == NaN here
