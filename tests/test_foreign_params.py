"""Reading other tools' images (issue 14, ``studio params``): real files from each tool where a
small public one exists (tests/fixtures/foreign/README.md says where from, MIT), else files built
here with the exact chunk layout the tool writes. One reader serves the CLI, Gallery and reuse."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from studio.core.requests import SEED_MAX
from studio.media.metadata import metadata_from_text, read_image_metadata, scheduler_key, to_request
from tests.test_cli_basics import run_studio

FOREIGN = Path(__file__).parent / "fixtures" / "foreign"


def _png(path: Path, chunks: dict[str, str]) -> Path:
    info = PngInfo()
    for key, value in chunks.items():
        info.add_itxt(key, value) if key.startswith("XML:") else info.add_text(key, value)
    Image.new("RGB", (8, 8)).save(path, pnginfo=info)
    return path


# -- real files ---------------------------------------------------------------------------------

@pytest.mark.parametrize("name,source,prompt,expect", [
    ("automatic1111_cropped.png", "a1111", "photo of a duck",
     {"steps": 15, "cfg": 5.0, "seed": 235284042, "width": 512, "height": 400, "sampler": "UniPC",
      "model": "realistic_realisticVisionV20_v20"}),
    ("automatic1111_cropped.jpg", "a1111", "photo of a duck",  # EXIF UserComment, UNICODE
     {"steps": 15, "seed": 235284042, "sampler": "UniPC"}),
    ("img2img_cropped.png", "comfyui",
     "photograph of victorian woman with wings, sky clouds, meadow grass",
     {"steps": 20, "cfg": 8.0, "seed": 280823642470253, "sampler": "sample_dpmpp_2m",
      "model": "v1-5-pruned-emaonly.ckpt"}),  # CheckpointLoader (config + ckpt)
    ("unclip_2pass_cropped.png", "comfyui", None,  # first pass, not the hires KSampler
     {"steps": 26, "cfg": 8.0, "seed": 1106257833005336, "width": 1280, "height": 704,
      "sampler": "uni_pc_bh2", "model": "wd-1-5-beta2-aesthetic-unclip-h-fp32.safetensors"}),
    ("night_evening_day_morning_cropped.png", "comfyui", None,
     {"steps": 13, "cfg": 8.5, "width": 704, "height": 1280, "model": "Anything-V3.0.ckpt"}),
    ("fooocus1_cropped.png", "fooocus", "a smiling goldfish",
     {"steps": 30, "cfg": 4.0, "seed": 6952411511246973023, "width": 768, "height": 1280,
      "sampler": "dpmpp_2m_sde_gpu", "scheduler": "karras",
      "model": "juggernautXL_v8Rundiffusion"}),
    ("novelai1_cropped.png", "novelai", "masterpiece, best quality,  cat, space, icon",
     {"steps": 50, "cfg": 10.0, "seed": 2253955223, "sampler": "k_euler_ancestral"}),
    ("invokeai_imeta1.png", "invokeai", None, {"steps": 35, "seed": 3293022630,
                                               "model": "juggernautXL"}),
    ("invokeai_sdmeta1.png", "invokeai", None, {"steps": 50, "seed": 2980747362}),
    ("invokeai_dream1.png", "invokeai", None, {"steps": 50, "seed": 2980747362}),
])
def test_real_files_of_each_tool(name, source, prompt, expect):
    meta = read_image_metadata(FOREIGN / name)
    assert meta.source == source
    if prompt is not None:
        assert meta.prompt == prompt
    assert meta.prompt.strip() and meta.prompt == meta.prompt.strip()
    for key, value in expect.items():
        assert meta.params[key] == value, key
    req = to_request(meta, "/models/now")
    assert req is not None
    req.validate()


def test_fooocus_is_json_not_a1111_text_and_its_big_seed_is_said_not_silently_wrapped():
    meta = read_image_metadata(FOREIGN / "fooocus1_cropped.png")
    assert meta.negative_prompt == "" and "Fooocus" in meta.params["version"]
    seed = meta.params["seed"]
    assert seed > SEED_MAX  # exact: the string seed is not rounded through a float
    req = to_request(meta, "/m")
    assert req.seed == seed % (SEED_MAX + 1) and req.width == 768 and req.cfg == 4.0
    assert req.scheduler == "default"  # dpmpp_2m_sde has no Studio scheduler
    assert len(meta.notes) == 1 and str(seed) in meta.notes[0] and str(req.seed) in meta.notes[0]
    assert "outside Studio's seed range" in meta.notes[0]


def test_an_in_range_seed_gives_no_note():
    assert read_image_metadata(FOREIGN / "automatic1111_cropped.png").notes == []


def test_old_k_diffusion_sampler_names_map():
    assert scheduler_key("sample_dpmpp_2m", "karras") == "dpmpp_2m_karras"
    assert scheduler_key("sample_euler_ancestral") == "euler_a"
    req = to_request(read_image_metadata(FOREIGN / "img2img_cropped.png"), "/m")
    assert req.scheduler == "dpmpp_2m"


# -- ComfyUI graphs built here --------------------------------------------------------------------

def _flux_graph() -> dict:
    """ComfyUI's Flux dev example: SamplerCustomAdvanced with noise / guider / sampler / sigmas,
    FluxGuidance on the prompt, UNETLoader and a LoRA; a second, hires pass comes first by id."""
    return {
        "1": {"class_type": "SamplerCustomAdvanced", "inputs": {  # hires pass, lowest id
            "noise": ["25", 0], "guider": ["22", 0], "sampler": ["16", 0], "sigmas": ["30", 0],
            "latent_image": ["2", 0]}},
        "2": {"class_type": "LatentUpscaleBy", "inputs": {"samples": ["13", 0], "scale_by": 1.5}},
        "30": {"class_type": "BasicScheduler", "inputs": {"model": ["12", 0], "scheduler": "simple",
                                                          "steps": 8, "denoise": 0.4}},
        "13": {"class_type": "SamplerCustomAdvanced", "inputs": {
            "noise": ["25", 0], "guider": ["22", 0], "sampler": ["16", 0], "sigmas": ["17", 0],
            "latent_image": ["27", 0]}},
        "25": {"class_type": "RandomNoise", "inputs": {"noise_seed": 972054013131368}},
        "22": {"class_type": "BasicGuider", "inputs": {"model": ["40", 0],
                                                       "conditioning": ["26", 0]}},
        "26": {"class_type": "FluxGuidance", "inputs": {"guidance": 3.5,
                                                        "conditioning": ["6", 0]}},
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a cat holding a sign",
                                                         "clip": ["11", 0]}},
        "16": {"class_type": "KSamplerSelect", "inputs": {"sampler_name": "euler"}},
        "17": {"class_type": "BasicScheduler", "inputs": {"model": ["12", 0], "scheduler": "simple",
                                                          "steps": 20, "denoise": 1.0}},
        "27": {"class_type": "EmptySD3LatentImage", "inputs": {"width": 1024, "height": 768,
                                                               "batch_size": 1}},
        "40": {"class_type": "LoraLoaderModelOnly", "inputs": {
            "model": ["12", 0], "lora_name": "flux_realism.safetensors", "strength_model": 0.8}},
        "12": {"class_type": "UNETLoader", "inputs": {"unet_name": "flux1-dev.safetensors",
                                                      "weight_dtype": "default"}},
        "11": {"class_type": "DualCLIPLoader", "inputs": {"clip_name1": "t5xxl_fp16.safetensors",
                                                          "clip_name2": "clip_l.safetensors"}},
    }


def test_comfyui_flux_sampler_custom_advanced_first_pass():
    meta = metadata_from_text({"prompt": json.dumps(_flux_graph())})
    p = meta.params
    assert meta.source == "comfyui" and meta.prompt == "a cat holding a sign"
    assert (p["seed"], p["steps"], p["sampler"], p["scheduler"]) == (972054013131368, 20,
                                                                     "euler", "simple")
    assert (p["width"], p["height"], p["guidance"]) == (1024, 768, 3.5)
    assert p["model"] == "flux1-dev.safetensors"
    assert p["loras"] == [{"name": "flux_realism.safetensors", "weight": 0.8}]
    assert "cfg" not in p  # a BasicGuider has none: reuse keeps Studio's default


def test_comfyui_sampler_custom_and_every_loader_kind():
    for loader, inputs in (("CheckpointLoader", {"config_name": "v1.yaml", "ckpt_name": "a.ckpt"}),
                           ("unCLIPCheckpointLoader", {"ckpt_name": "a.ckpt"}),
                           ("ImageOnlyCheckpointLoader", {"ckpt_name": "a.ckpt"}),
                           ("UnetLoaderGGUF", {"unet_name": "a.ckpt"}),
                           ("DiffusersLoader", {"model_path": "a.ckpt"})):
        graph = {
            "3": {"class_type": "SamplerCustom", "inputs": {
                "model": ["4", 0], "add_noise": True, "noise_seed": 7, "cfg": 5.5,
                "positive": ["6", 0], "negative": ["7", 0], "sampler": ["8", 0],
                "sigmas": ["9", 0], "latent_image": ["5", 0]}},
            "4": {"class_type": loader, "inputs": inputs},
            "5": {"class_type": "EmptyLatentImage", "inputs": {"width": 640, "height": 512,
                                                               "batch_size": 1}},
            "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "red fox"}},
            "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "blurry"}},
            "8": {"class_type": "KSamplerSelect", "inputs": {"sampler_name": "dpmpp_2m"}},
            "9": {"class_type": "KarrasScheduler", "inputs": {"steps": 25, "sigma_max": 14.6}},
        }
        meta = metadata_from_text({"prompt": json.dumps(graph)})
        assert meta.params["model"] == "a.ckpt", loader
        assert (meta.prompt, meta.negative_prompt) == ("red fox", "blurry")
        p = meta.params
        assert (p["seed"], p["cfg"], p["steps"], p["width"]) == (7, 5.5, 25, 640)
        assert to_request(meta, "/m").scheduler == "dpmpp_2m_karras"


def test_comfyui_workflow_only_finds_any_loader():
    wf = {"nodes": [
        {"id": 3, "type": "KSampler", "widgets_values": [1, "fixed", 10, 7, "euler", "normal", 1],
         "inputs": [{"name": "model", "link": 1}]},
        {"id": 4, "type": "UNETLoader", "widgets_values": ["flux1-dev.safetensors", "default"]},
    ], "links": [[1, 4, 0, 3, 0, "MODEL"]]}
    meta = metadata_from_text({"workflow": json.dumps(wf)})
    assert meta.params["model"] == "flux1-dev.safetensors"


# -- SwarmUI, Draw Things, A1111 extras ------------------------------------------------------------

def test_swarmui_json_parameters(tmp_path):
    params = {"sui_image_params": {
        "prompt": "a lighthouse", "negativeprompt": "fog", "model": "OfficialStableDiffusion/sdxl",
        "seed": 1234, "steps": 30, "cfgscale": 6.5, "width": 1024, "height": 1024,
        "sampler": "dpmpp_2m", "scheduler": "karras", "loras": ["detail"], "loraweights": ["0.6"],
        "swarm_version": "0.9.2.1"}, "sui_extra_data": {"date": "2024-08-01"}}
    meta = read_image_metadata(_png(tmp_path / "s.png", {"parameters": json.dumps(params)}))
    assert meta.source == "swarmui"
    assert (meta.prompt, meta.negative_prompt) == ("a lighthouse", "fog")
    assert meta.params["loras"] == [{"name": "detail", "weight": "0.6"}]
    req = to_request(meta, "")
    assert (req.seed, req.steps, req.cfg, req.scheduler) == (1234, 30, 6.5, "dpmpp_2m_karras")
    assert req.model == "OfficialStableDiffusion/sdxl"


def test_draw_things_xmp(tmp_path):
    comment = json.dumps({"c": "an owl & a moon", "uc": "text", "seed": 99, "steps": 12,
                          "scale": 4.5, "size": "768x512", "sampler": "DPM++ 2M Karras",
                          "model": "sd_xl_base_1.0_f16.ckpt",
                          "lora": [{"file": "owl.ckpt", "weight": 0.5}]})
    xmp = ('<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/'
           '22-rdf-syntax-ns#"><rdf:Description rdf:about="" xmlns:exif="http://ns.adobe.com/exif/'
           '1.0/"><exif:UserComment><rdf:Alt><rdf:li xml:lang="x-default">'
           + comment.replace("&", "&amp;").replace('"', "&quot;")
           + "</rdf:li></rdf:Alt></exif:UserComment></rdf:Description></rdf:RDF></x:xmpmeta>")
    meta = read_image_metadata(_png(tmp_path / "d.png", {"XML:com.adobe.xmp": xmp}))
    assert meta.source == "drawthings" and meta.prompt == "an owl & a moon"
    assert (meta.params["width"], meta.params["height"], meta.params["cfg"]) == (768, 512, 4.5)
    assert meta.params["loras"] == [{"name": "owl.ckpt", "weight": 0.5}]
    assert to_request(meta, "/m").scheduler == "dpmpp_2m_karras"


def test_a1111_loras_and_every_other_key_are_kept(tmp_path):
    text = ("a castle <lora:detail_tweaker:0.7>\nSteps: 20, Sampler: Euler a, CFG scale: 7, "
            "Seed: 5, Size: 512x512, Clip skip: 2, Hires upscale: 2")
    meta = read_image_metadata(_png(tmp_path / "a.png", {"parameters": text}))
    assert meta.params["loras"] == [{"name": "detail_tweaker", "weight": 0.7}]
    assert (meta.params["Clip skip"], meta.params["hires_scale"]) == ("2", 2.0)  # known: a number


# -- the command ----------------------------------------------------------------------------------

def test_studio_params_prints_the_same_reader_as_reuse():
    proc = run_studio("params", str(FOREIGN / "fooocus1_cropped.png"), "--json")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    meta = read_image_metadata(FOREIGN / "fooocus1_cropped.png")
    assert list(out)[:12] == ["source", "prompt", "negative_prompt", "steps", "cfg", "seed",
                              "width", "height", "sampler", "scheduler", "model", "loras"]
    assert out["seed"] == meta.params["seed"] and out["source"] == "fooocus"
    assert out["other"]["version"] == meta.params["version"] and out["notes"] == meta.notes
    text = run_studio("params", str(FOREIGN / "img2img_cropped.png"))
    assert text.returncode == 0
    assert "source: comfyui" in text.stdout and "model: v1-5-pruned-emaonly.ckpt" in text.stdout


def test_studio_params_bad_input_exits_2_with_one_line(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    for arg, needle in ((str(tmp_path / "nosuch.png"), "does not exist"),
                        (str(tmp_path / "notes.txt"), "is not a PNG, JPEG or WebP image")):
        proc = run_studio("params", arg)
        assert proc.returncode == 2 and proc.stdout == ""
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("studio: error: ") and needle in lines[0]


# -- A1111 "stealth" info in the alpha channel ------------------------------------------------------

def _stealth_png(path: Path, text: str, compressed: bool) -> Path:
    """What the stealth_pnginfo extension writes: signature, 32-bit bit length, payload, one bit
    per alpha value, column by column."""
    import gzip

    import numpy as np

    payload = gzip.compress(text.encode()) if compressed else text.encode()
    sig = b"stealth_pngcomp" if compressed else b"stealth_pnginfo"
    data = sig + (len(payload) * 8).to_bytes(4, "big") + payload
    bits = np.unpackbits(np.frombuffer(data, np.uint8))
    w, h = 48, 40
    alpha = np.full(w * h, 254, np.uint8)
    alpha[:bits.size] |= bits
    rgba = np.zeros((h, w, 4), np.uint8)
    rgba[..., 3] = alpha.reshape(w, h).T
    Image.fromarray(rgba, "RGBA").save(path)
    return path


def test_a1111_stealth_alpha_real_and_compressed(tmp_path):
    meta = read_image_metadata(FOREIGN / "automatic1111_stealth.png")
    assert (meta.source, meta.prompt, meta.negative_prompt) == ("a1111", "a circle", "a square")
    assert (meta.params["seed"], meta.params["steps"], meta.params["sampler"]) == (2015833630, 20,
                                                                                   "Euler")
    text = "a boat\nNegative prompt: fog\nSteps: 9, Sampler: Euler a, CFG scale: 3, Seed: 11"
    meta = read_image_metadata(_stealth_png(tmp_path / "c.png", text, compressed=True))
    assert (meta.prompt, meta.params["seed"], to_request(meta, "/m").scheduler) == (
        "a boat", 11, "euler_a")
    plain = Image.new("RGBA", (16, 16), (1, 2, 3, 255))  # alpha, but no signature
    plain.save(tmp_path / "p.png")
    assert read_image_metadata(tmp_path / "p.png").source == "none"


def test_describe_value_reads_like_the_cli_prints_it():
    from studio.media.metadata import describe_value

    assert describe_value([{"name": "a", "weight": 0.5}, {"name": "b"}]) == "a (0.5), b (1)"
    assert describe_value({"x": 1}) == '{"x": 1}' and describe_value(7.5) == "7.5"


def test_novelai_stealth_json_and_invokeai_loras(tmp_path):
    comment = json.dumps({"prompt": "a fox", "uc": "blurry", "steps": 28, "scale": 5,
                          "seed": 42, "width": 832, "height": 1216, "sampler": "k_euler"})
    chunks = json.dumps({"Description": "a fox", "Software": "NovelAI",
                         "Source": "NovelAI Diffusion V3 7BCCAA2C", "Comment": comment})
    meta = read_image_metadata(_stealth_png(tmp_path / "n.png", chunks, compressed=True))
    assert (meta.source, meta.prompt, meta.negative_prompt) == ("novelai", "a fox", "blurry")
    assert (meta.params["width"], to_request(meta, "/m").scheduler) == (832, "euler")
    inv = {"positive_prompt": "a dog", "seed": 3, "steps": 9, "cfg_scale": 6,
           "loras": [{"model": {"key": "k1", "name": "pixel-art"}, "weight": 0.75}]}
    meta = metadata_from_text({"invokeai_metadata": json.dumps(inv)})
    assert meta.params["loras"] == [{"name": "pixel-art", "weight": 0.75}]
