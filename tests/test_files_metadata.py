"""Metadata: A1111 infotext writing/parsing, and reading other apps' PNG/JPEG/WebP metadata."""

from __future__ import annotations

import json
import zlib

import pytest
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from studio.core.requests import Txt2ImgRequest
from studio.media.image_text import read_png_text
from studio.media.metadata import (
    build_parameters,
    parse_parameters,
    read_image_metadata,
    scheduler_key,
    to_request,
)

A1111_TEXT = (
    "masterpiece, (girl with an artist's beret:1.2), <lora:detail:0.8>\n"
    "blue eyes, desert scene\n"
    "Negative prompt: ugly, (((deformed))), [blurry]\n"
    "bad anatomy\n"
    "Steps: 28, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 7.5, Seed: 965400086, "
    "Size: 512x768, Model hash: 45dee52b, Model: anything-v4.5, Denoising strength: 0.4, "
    'Clip skip: 2, Lora hashes: "detail: 1a2b3c4d5e", Version: v1.10.1'
)


def _png(path, chunks: dict[str, str], size=(16, 16)):
    info = PngInfo()
    for key, value in chunks.items():
        info.add_text(key, value)
    Image.new("RGB", size, (10, 20, 30)).save(path, pnginfo=info)
    return path


# -- build / parse ------------------------------------------------------------------------------

def test_build_parameters_matches_a1111_layout():
    req = Txt2ImgRequest(model="m", prompt="a cat", negative_prompt="blurry, dark", steps=20,
                         cfg=7.0, width=512, height=512, seed=100)
    text = build_parameters(req, 123, sampler="DPM++ 2M", schedule_type="Karras",
                            model_name="name", model_hash="abcdef1234", version="Studio 0.1.0")
    assert text == (
        "a cat\nNegative prompt: blurry, dark\n"
        "Steps: 20, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 7, Seed: 123, "
        "Size: 512x512, Model hash: abcdef1234, Model: name, Version: Studio 0.1.0"
    )


def test_build_parameters_no_negative_line_when_empty_and_cfg_fraction_kept():
    req = Txt2ImgRequest(model="m", prompt="p", cfg=7.5, width=640, height=384)
    text = build_parameters(req, 1, sampler="Euler a", schedule_type="", model_name="m",
                            model_hash="", version="Studio 0.1.0")
    assert "Negative prompt" not in text
    assert "CFG scale: 7.5," in text
    assert "Size: 640x384" in text
    assert "Model hash" not in text and "Schedule type" not in text


def test_values_with_separators_are_json_quoted_and_parse_back():
    req = Txt2ImgRequest(model="m", prompt="x")
    extra = {"Lora hashes": "a: 1, b: 2", "Note": 'say "hi"', "Clip skip": 2, "Eta": 0.5}
    text = build_parameters(req, 7, sampler="Euler", schedule_type="Automatic",
                            model_name="v1,5: pruned", model_hash="h", version="Studio 0.1.0",
                            extra=extra)
    assert 'Model: "v1,5: pruned"' in text
    assert 'Lora hashes: "a: 1, b: 2"' in text
    assert 'Note: "say \\"hi\\""' in text
    parsed = parse_parameters(text)
    assert parsed["Model"] == "v1,5: pruned"
    assert parsed["Lora hashes"] == "a: 1, b: 2"
    assert parsed["Note"] == 'say "hi"'
    assert parsed["Clip skip"] == "2" and parsed["Eta"] == "0.5"


def test_parse_a1111_multiline_prompt_and_negative():
    parsed = parse_parameters(A1111_TEXT)
    assert parsed["Prompt"] == ("masterpiece, (girl with an artist's beret:1.2), "
                                "<lora:detail:0.8>\nblue eyes, desert scene")
    assert parsed["Negative prompt"] == "ugly, (((deformed))), [blurry]\nbad anatomy"
    assert parsed["Steps"] == "28"
    assert (parsed["Size-1"], parsed["Size-2"]) == ("512", "768")
    assert parsed["Lora hashes"] == "detail: 1a2b3c4d5e"
    assert parsed["Sampler"] == "DPM++ 2M" and parsed["Schedule type"] == "Karras"


def test_parse_prompt_only_text_keeps_every_line_in_the_prompt():
    parsed = parse_parameters("just a prompt\nwith: two lines")
    assert parsed["Prompt"] == "just a prompt\nwith: two lines"
    assert parsed["Negative prompt"] == ""
    assert "Steps" not in parsed


def test_build_then_parse_roundtrip_with_unicode_and_empty_prompt():
    req = Txt2ImgRequest(model="m", prompt="", negative_prompt="日本語, ü", cfg=12.25)
    text = build_parameters(req, 42, sampler="UniPC", schedule_type="Automatic",
                            model_name="m", model_hash="", version="Studio 0.1.0")
    parsed = parse_parameters(text)
    assert parsed["Prompt"] == ""
    assert parsed["Negative prompt"] == "日本語, ü"
    assert parsed["CFG scale"] == "12.25" and parsed["Seed"] == "42"


@pytest.mark.parametrize("sampler,schedule,key", [
    ("DPM++ 2M", "Karras", "dpmpp_2m_karras"),
    ("DPM++ 2M Karras", "", "dpmpp_2m_karras"),
    ("DPM++ 2M", "Automatic", "dpmpp_2m"),
    ("Euler a", "", "euler_a"),
    ("euler_ancestral", "normal", "euler_a"),
    ("dpmpp_2m", "karras", "dpmpp_2m_karras"),
    ("uni_pc_bh2", "normal", "unipc"),
    ("dpmpp_2m_k", "", "dpmpp_2m_karras"),
    ("k_euler_a", "", "euler_a"),
    ("lcm", "sgm_uniform", "lcm"),
    ("Model default", "", "default"),
    ("heun", "normal", "default"),
    ("", "", "default"),
])
def test_scheduler_key_maps_other_tools(sampler, schedule, key):
    assert scheduler_key(sampler, schedule) == key


# -- readers ------------------------------------------------------------------------------------

def test_read_a1111_png(tmp_path):
    path = _png(tmp_path / "a.png", {"parameters": A1111_TEXT})
    meta = read_image_metadata(path)
    assert meta.source == "a1111"
    assert meta.prompt.startswith("masterpiece") and meta.negative_prompt.endswith("bad anatomy")
    assert meta.params["steps"] == 28 and meta.params["cfg"] == 7.5
    assert meta.params["seed"] == 965400086
    assert (meta.params["width"], meta.params["height"]) == (512, 768)
    assert meta.params["model"] == "anything-v4.5"
    assert meta.raw["parameters"] == A1111_TEXT
    assert meta.request is None
    req = to_request(meta, "/models/current")
    assert req == Txt2ImgRequest(model="/models/current", prompt=meta.prompt,
                                 negative_prompt=meta.negative_prompt, steps=28, cfg=7.5,
                                 width=512, height=768, seed=965400086, count=1,
                                 scheduler="dpmpp_2m_karras")
    req.validate()


COMFY_PROMPT = {
    "3": {"class_type": "KSampler", "inputs": {
        "seed": 156680208700286, "steps": 25, "cfg": 6.5, "sampler_name": "dpmpp_2m",
        "scheduler": "karras", "denoise": 1.0, "model": ["10", 0], "positive": ["6", 0],
        "negative": ["7", 0], "latent_image": ["5", 0]}},
    "4": {"class_type": "CheckpointLoaderSimple",
          "inputs": {"ckpt_name": "v1-5-pruned-emaonly.safetensors"}},
    "10": {"class_type": "LoraLoader", "inputs": {"model": ["4", 0], "clip": ["4", 1],
                                                   "lora_name": "x.safetensors"}},
    "5": {"class_type": "EmptyLatentImage", "inputs": {"width": 768, "height": 512,
                                                       "batch_size": 1}},
    "6": {"class_type": "CLIPTextEncode", "inputs": {"text": ["11", 0], "clip": ["10", 1]}},
    "11": {"class_type": "PrimitiveString", "inputs": {"value": "beautiful scenery, purple galaxy"}},
    "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "text, watermark", "clip": ["4", 1]}},
    "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
    "9": {"class_type": "SaveImage", "inputs": {"filename_prefix": "ComfyUI", "images": ["8", 0]}},
}


def test_read_comfyui_api_prompt(tmp_path):
    workflow = {"nodes": [], "links": [], "version": 0.4}
    path = _png(tmp_path / "c.png", {"prompt": json.dumps(COMFY_PROMPT),
                                     "workflow": json.dumps(workflow)})
    meta = read_image_metadata(path)
    assert meta.source == "comfyui"
    assert meta.prompt == "beautiful scenery, purple galaxy"
    assert meta.negative_prompt == "text, watermark"
    p = meta.params
    assert (p["seed"], p["steps"], p["cfg"]) == (156680208700286, 25, 6.5)
    assert (p["sampler"], p["scheduler"]) == ("dpmpp_2m", "karras")
    assert (p["width"], p["height"]) == (768, 512)
    assert p["model"] == "v1-5-pruned-emaonly.safetensors"
    req = to_request(meta, "/models/m")
    assert req.scheduler == "dpmpp_2m_karras" and req.width == 768 and req.cfg == 6.5
    assert req.seed == 156680208700286 % 2**32
    req.validate()


def test_read_comfyui_workflow_only(tmp_path):
    workflow = {
        "nodes": [
            {"id": 3, "type": "KSampler", "widgets_values": [42, "fixed", 30, 8, "euler_ancestral",
                                                             "normal", 1],
             "inputs": [{"name": "model", "link": 1}, {"name": "positive", "link": 4},
                        {"name": "negative", "link": 6}, {"name": "latent_image", "link": 2}]},
            {"id": 4, "type": "CheckpointLoaderSimple", "widgets_values": ["sd15.safetensors"]},
            {"id": 5, "type": "EmptyLatentImage", "widgets_values": [512, 640, 1]},
            {"id": 6, "type": "CLIPTextEncode", "widgets_values": ["a red fox"]},
            {"id": 7, "type": "CLIPTextEncode", "widgets_values": ["lowres"]},
        ],
        "links": [[1, 4, 0, 3, 0, "MODEL"], [2, 5, 0, 3, 3, "LATENT"],
                  [4, 6, 0, 3, 1, "CONDITIONING"], [6, 7, 0, 3, 2, "CONDITIONING"]],
    }
    meta = read_image_metadata(_png(tmp_path / "w.png", {"workflow": json.dumps(workflow)}))
    assert meta.source == "comfyui"
    assert (meta.prompt, meta.negative_prompt) == ("a red fox", "lowres")
    assert meta.params == {"seed": 42, "steps": 30, "cfg": 8.0, "sampler": "euler_ancestral",
                           "scheduler": "normal", "width": 512, "height": 640,
                           "model": "sd15.safetensors"}
    assert to_request(meta, "m").scheduler == "euler_a"


def test_read_invokeai_v3(tmp_path):
    data = {
        "generation_mode": "txt2img", "positive_prompt": "a lighthouse at dusk",
        "negative_prompt": "fog", "width": 576, "height": 832, "seed": 3713546512,
        "rand_device": "cpu", "cfg_scale": 7.5, "cfg_rescale_multiplier": 0, "steps": 30,
        "scheduler": "dpmpp_2m_k",
        "model": {"key": "b1c2", "hash": "blake3:aa", "name": "Juggernaut XL", "base": "sdxl",
                  "type": "main"},
        "app_version": "4.2.7",
    }
    meta = read_image_metadata(_png(tmp_path / "i.png", {"invokeai_metadata": json.dumps(data)}))
    assert meta.source == "invokeai"
    assert (meta.prompt, meta.negative_prompt) == ("a lighthouse at dusk", "fog")
    assert meta.params["model"] == "Juggernaut XL"
    req = to_request(meta, "/m")
    assert (req.width, req.height, req.seed, req.steps) == (576, 832, 3713546512, 30)
    assert req.scheduler == "dpmpp_2m_karras"


def test_read_invokeai_legacy_sd_metadata_and_dream(tmp_path):
    legacy = {"model": "stable diffusion", "model_weights": "stable-diffusion-1.5",
              "app_id": "invoke-ai/InvokeAI", "app_version": "2.2.5",
              "image": {"prompt": [{"prompt": "a cat on a mat [blurry, lowres]", "weight": 1.0}],
                        "steps": 50, "cfg_scale": 7.5, "height": 512, "width": 512,
                        "seed": 1234, "type": "txt2img", "sampler": "k_euler_a"}}
    meta = read_image_metadata(_png(tmp_path / "l.png", {"sd-metadata": json.dumps(legacy)}))
    assert meta.source == "invokeai"
    assert (meta.prompt, meta.negative_prompt) == ("a cat on a mat", "blurry, lowres")
    assert to_request(meta, "m").scheduler == "euler_a"
    dream = '"a dog [ugly]" -s 40 -S 99 -W 448 -H 640 -C 9 -A k_lms'
    meta = read_image_metadata(_png(tmp_path / "d.png", {"Dream": dream}))
    assert meta.source == "invokeai"
    assert (meta.prompt, meta.negative_prompt) == ("a dog", "ugly")
    assert meta.params == {"steps": 40, "seed": 99, "width": 448, "height": 640, "cfg": 9.0,
                           "sampler": "k_lms"}


def test_jpeg_and_webp_exif_user_comment(tmp_path):
    comment = b"UNICODE\0" + A1111_TEXT.encode("utf-16-be")
    for ext in ("jpg", "webp"):
        exif = Image.Exif()
        exif.get_ifd(0x8769)[0x9286] = comment
        path = tmp_path / f"x.{ext}"
        Image.new("RGB", (16, 16)).save(path, exif=exif)
        meta = read_image_metadata(path)
        assert meta.source == "a1111", ext
        assert meta.params["seed"] == 965400086
        assert meta.negative_prompt.endswith("bad anatomy")


def test_compressed_and_international_chunks_are_read(tmp_path):
    info = PngInfo()
    info.add_text("parameters", "ein Bild, 日本\nSteps: 3, Sampler: Euler, CFG scale: 2, Seed: 1",
                  zip=True)
    info.add_text("Comment", "latin ü", zip=True)
    path = tmp_path / "z.png"
    Image.new("RGB", (8, 8)).save(path, pnginfo=info)
    text = read_png_text(path)
    assert text["Comment"] == "latin ü"
    meta = read_image_metadata(path)
    assert meta.prompt == "ein Bild, 日本" and meta.params["cfg"] == 2.0


def test_text_chunk_after_image_data_is_found(tmp_path):
    path = tmp_path / "late.png"
    Image.new("RGB", (8, 8)).save(path)
    data = path.read_bytes()
    body = b"tEXt" + b"parameters\0late prompt\nSteps: 1, Sampler: Euler, CFG scale: 1, Seed: 2"
    chunk = (len(body) - 4).to_bytes(4, "big") + body + zlib.crc32(body).to_bytes(4, "big")
    iend = data.rindex(b"IEND") - 4
    path.write_bytes(data[:iend] + chunk + data[iend:])
    assert read_image_metadata(path).prompt == "late prompt"


@pytest.mark.parametrize("content", [b"", b"not an image at all", b"\x89PNG\r\n\x1a\n\x00\x00",
                                     b"\xff\xd8\xff\xe0garbage", b"RIFF\x00\x00WEBPjunk"])
def test_corrupt_files_give_source_none(tmp_path, content):
    path = tmp_path / "bad.png"
    path.write_bytes(content)
    meta = read_image_metadata(path)
    assert meta.source == "none" and meta.request is None
    assert to_request(meta, "m") is None


def test_missing_file_and_plain_png_and_bad_json(tmp_path):
    assert read_image_metadata(tmp_path / "nope.png").source == "none"
    assert read_image_metadata(_png(tmp_path / "plain.png", {})).source == "none"
    bad = _png(tmp_path / "bad.png", {"studio": "{not json", "prompt": "[1, 2"})
    meta = read_image_metadata(bad)
    assert meta.source == "none" and meta.raw["studio"] == "{not json"
