"""LoRAs in generation: a LoRA made locally changes the tiny pipeline's output exactly as plain
diffusers applies it (kohya and diffusers formats, several at once, prompt tags or picked), is
recorded in the PNG metadata the way A1111 records it, and bad LoRAs fail with a clear message."""

from __future__ import annotations

import hashlib
import json
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from studio.core.config import Settings, default_paths
from studio.core.jobs import CancelToken, UserFacingError
from studio.core.requests import Img2ImgRequest, Txt2ImgRequest
from studio.media.metadata import parse_parameters, read_image_metadata, to_request
from studio.pipelines.diffusion.img2img import Img2ImgService
from studio.pipelines.diffusion.loras import LoraPlan, lora_hash, parse_prompt_loras, plan_loras
from studio.pipelines.diffusion.txt2img import Txt2ImgService
from studio.pipelines.model_cache import ModelCache
from tests.fixtures.cli_run import studio_in_process
from tests.fixtures.sinks import RecordingSink

SMALL = dict(steps=2, width=64, height=64, cfg=6.0)


# -- fixtures: LoRA files built once, a model loaded once ----------------------------------------
@pytest.fixture(scope="session")
def lora_files(tmp_path_factory, tiny_sd15_dir, tiny_sdxl_dir):
    """{name: path}: SD 1.5 LoRAs (diffusers format, its kohya twin, a UNet-only one), an SDXL
    LoRA (recognisable by its second text encoder), an SDXL UNet-only one (base unknown) and a
    LyCORIS LoHa."""
    from tests.fixtures.tiny_lora import build_tiny_lora, lyco_loha, to_kohya

    root = tmp_path_factory.mktemp("loras")
    ink = build_tiny_lora(tiny_sd15_dir, root / "ink.safetensors", seed=1,
                          metadata={"ss_base_model_version": "sd_v1"})
    return {
        "ink": ink,
        "ink-kohya": to_kohya(ink, root / "ink-kohya.safetensors"),
        "paper": build_tiny_lora(tiny_sd15_dir, root / "paper.safetensors", seed=2,
                                 text_encoder=False),
        "neon-xl": build_tiny_lora(tiny_sdxl_dir, root / "neon-xl.safetensors", seed=3),
        "mystery": build_tiny_lora(tiny_sdxl_dir, root / "mystery.safetensors", seed=4,
                                   text_encoder=False),
        "loha": lyco_loha(root / "loha.safetensors"),
    }


@pytest.fixture
def library(studio_home, lora_files):
    """This test's Studio models folder with every LoRA in ``models/loras``."""
    folder = default_paths().models_dir / "loras"
    folder.mkdir(parents=True)
    for path in lora_files.values():
        shutil.copy(path, folder / path.name)
    return folder


@pytest.fixture(scope="module")
def cache():
    return ModelCache()  # one tiny model load for the whole module


def service(cache):
    settings = Settings(device="cpu", precision="fp32", preview_mode="off")
    return Txt2ImgService(lambda: settings, default_paths, cache=cache)


def generate(cache, model, **fields):
    request = Txt2ImgRequest(model=str(model), seed=fields.pop("seed", 42),
                             **{**SMALL, **fields})
    return service(cache).run(request, RecordingSink(), CancelToken())[0]


def pixels(result_or_image):
    image = getattr(result_or_image, "image", result_or_image)
    return np.asarray(image)


@pytest.fixture(scope="module")
def plain(tiny_sd15_dir):
    """Plain diffusers' own pipeline for the tiny SD 1.5 model (LoRAs are loaded per test)."""
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(str(tiny_sd15_dir), local_files_only=True,
                                                   safety_checker=None)
    pipe.set_progress_bar_config(disable=True)
    yield pipe


def plain_image(pipe, loras: dict[str, float], prompt="a fox", seed=42, negative=""):
    """diffusers' documented way: load_lora_weights for each file, set_adapters, call."""
    try:
        for name in loras:
            path = Path(name)
            pipe.load_lora_weights(str(path.parent), weight_name=path.name,
                                   adapter_name=path.stem.replace("-", "_"))
        if loras:
            pipe.set_adapters([Path(n).stem.replace("-", "_") for n in loras],
                              list(loras.values()))
        return pipe(prompt, negative_prompt=negative, num_inference_steps=SMALL["steps"],
                    guidance_scale=SMALL["cfg"], width=64, height=64,
                    generator=torch.Generator("cpu").manual_seed(seed)).images[0]
    finally:
        pipe.unload_lora_weights()


def a1111_hash(path: Path) -> str:
    """A1111's LoRA short hash, computed here independently: sha256 after the safetensors
    header, 12 hex digits (AUTOMATIC1111 extensions-builtin/Lora/network.py)."""
    data = Path(path).read_bytes()
    return hashlib.sha256(data[8 + int.from_bytes(data[:8], "little"):]).hexdigest()[:12]


# -- the image ----------------------------------------------------------------------------------
def test_lora_changes_the_image_exactly_as_plain_diffusers_applies_it(cache, plain, library,
                                                                        tiny_sd15_dir):
    without = generate(cache, tiny_sd15_dir, prompt="a fox")
    with_ink = generate(cache, tiny_sd15_dir, prompt="a fox",
                        loras=[{"name": "ink", "weight": 0.8}])
    assert not np.array_equal(pixels(without), pixels(with_ink))  # the LoRA does something
    expected = plain_image(plain, {str(library / "ink.safetensors"): 0.8})
    assert np.array_equal(pixels(with_ink), np.asarray(expected))
    assert with_ink.loras == [{"name": "ink", "weight": 0.8,
                               "path": str(library / "ink.safetensors"),
                               "hash": a1111_hash(library / "ink.safetensors"),
                               "source": "request"}]
    # Kohya key names (lora_unet_…, lora_down/lora_up, alpha) give the same layers.
    kohya = generate(cache, tiny_sd15_dir, prompt="a fox",
                     loras=[{"name": "ink-kohya", "weight": 0.8}])
    assert np.array_equal(pixels(kohya), pixels(with_ink))
    # Without LoRAs the model is plain diffusers again, bit for bit (they were unloaded).
    again = generate(cache, tiny_sd15_dir, prompt="a fox")
    assert np.array_equal(pixels(again), pixels(without))
    assert np.array_equal(pixels(again), np.asarray(plain_image(plain, {})))


def test_two_loras_at_once_with_their_weights(cache, plain, library, tiny_sd15_dir):
    both = generate(cache, tiny_sd15_dir, prompt="a fox",
                    loras=[{"name": "ink", "weight": 0.7}, {"name": "paper", "weight": -0.5}])
    expected = plain_image(plain, {str(library / "ink.safetensors"): 0.7,
                                   str(library / "paper.safetensors"): -0.5})
    assert np.array_equal(pixels(both), np.asarray(expected))
    ink_only = generate(cache, tiny_sd15_dir, prompt="a fox",
                        loras=[{"name": "ink", "weight": 0.7}])
    assert not np.array_equal(pixels(both), pixels(ink_only))
    assert [lora["name"] for lora in both.loras] == ["ink", "paper"]


def test_prompt_tag_equals_the_picked_lora_and_weight_zero_equals_none(cache, library,
                                                                         tiny_sd15_dir):
    tagged = generate(cache, tiny_sd15_dir, prompt="a fox <lora:INK:0.8>")  # case-insensitive
    picked = generate(cache, tiny_sd15_dir, prompt="a fox",
                      loras=[{"name": "ink", "weight": 0.8}])
    assert np.array_equal(pixels(tagged), pixels(picked))
    assert tagged.loras[0]["source"] == "prompt" and tagged.loras[0]["name"] == "INK"
    # The same file named twice: the later weight counts, and the user is told.
    twice = generate(cache, tiny_sd15_dir, prompt="a fox <lora:ink:0.3>",
                     loras=[{"name": "ink", "weight": 0.8}])
    assert np.array_equal(pixels(twice), pixels(picked))
    assert any("named more than once" in w and "0.8" in w for w in twice.warnings)
    # Weight 0 adds exactly zero to every layer: the image without the LoRA.
    zero = generate(cache, tiny_sd15_dir, prompt="a fox", loras=[{"name": "ink", "weight": 0}])
    none = generate(cache, tiny_sd15_dir, prompt="a fox")
    assert np.array_equal(pixels(zero), pixels(none))


def test_same_loras_again_only_change_weights_no_reload(cache, library, tiny_sd15_dir,
                                                        monkeypatch):
    generate(cache, tiny_sd15_dir, prompt="x", loras=[{"name": "ink", "weight": 1.0}])
    pipe = cache.current
    loads = []
    original = type(pipe).load_lora_weights

    def counting(self, *args, **kwargs):
        loads.append(kwargs.get("weight_name"))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(type(pipe), "load_lora_weights", counting)
    a = generate(cache, tiny_sd15_dir, prompt="x", loras=[{"name": "ink", "weight": 0.5}])
    b = generate(cache, tiny_sd15_dir, prompt="x <lora:ink:1>")
    assert loads == []  # same file: only set_adapters
    assert not np.array_equal(pixels(a), pixels(b))  # … and the new weight took effect
    generate(cache, tiny_sd15_dir, prompt="x", loras=[{"name": "paper", "weight": 1.0}])
    assert loads == ["paper.safetensors"]  # another file: unloaded and loaded


def test_img2img_uses_loras_through_the_shared_model(cache, library, tiny_sd15_dir, tmp_path):
    from diffusers import StableDiffusionImg2ImgPipeline

    photo = tmp_path / "photo.png"
    rng = np.random.default_rng(0)
    Image.fromarray((rng.random((64, 64, 3)) * 255).astype(np.uint8)).save(photo)
    generate(cache, tiny_sd15_dir, prompt="x")  # the txt2img model, cached and shared
    settings = Settings(device="cpu", precision="fp32", preview_mode="off")
    img2img = Img2ImgService(lambda: settings, default_paths, cache)
    request = Img2ImgRequest(model=str(tiny_sd15_dir), image=str(photo), prompt="a barn",
                             strength=0.6, steps=4, cfg=6.0, seed=3,
                             loras=[{"name": "ink", "weight": 0.9}])
    result = img2img.run(request, RecordingSink(), CancelToken())[0]

    ref = StableDiffusionImg2ImgPipeline.from_pretrained(str(tiny_sd15_dir), local_files_only=True,
                                                         safety_checker=None)
    ref.set_progress_bar_config(disable=True)
    ref.load_lora_weights(str(library), weight_name="ink.safetensors", adapter_name="ink")
    ref.set_adapters(["ink"], [0.9])
    expected = ref("a barn", image=Image.open(photo).convert("RGB"), strength=0.6,
                   num_inference_steps=4, guidance_scale=6.0,
                   generator=torch.Generator("cpu").manual_seed(3)).images[0]
    assert np.array_equal(pixels(result), np.asarray(expected))
    parsed = parse_parameters(result.parameters)
    assert parsed["Prompt"] == "a barn <lora:ink:0.9>"
    assert parsed["Lora hashes"] == f"ink: {a1111_hash(library / 'ink.safetensors')}"
    assert len(parsed["Model hash"]) == 10  # img2img outputs carry the model hash too


# -- metadata -----------------------------------------------------------------------------------
def test_metadata_records_tags_and_hashes_and_reuse_applies_each_lora_once(cache, library,
                                                                            tiny_sd15_dir):
    request_loras = [{"name": "paper", "weight": 0.5}]
    result = generate(cache, tiny_sd15_dir, prompt="a fox <lora:ink:0.8>", loras=request_loras,
                      negative_prompt="blurry")
    parsed = parse_parameters(result.parameters)
    # The typed tag stays as typed; the picked LoRA is appended as a tag.
    assert parsed["Prompt"] == "a fox <lora:ink:0.8> <lora:paper:0.5>"
    assert parsed["Negative prompt"] == "blurry"
    ink, paper = a1111_hash(library / "ink.safetensors"), a1111_hash(library / "paper.safetensors")
    assert parsed["Lora hashes"] == f"ink: {ink}, paper: {paper}"
    assert f'Lora hashes: "ink: {ink}, paper: {paper}"' in result.parameters  # A1111's quoting

    meta = read_image_metadata(result.path)
    assert meta.source == "studio"
    again = to_request(meta, "")  # the exact request: tag in the prompt, the pick in loras
    assert again.prompt == "a fox <lora:ink:0.8>" and again.loras == request_loras
    assert np.array_equal(pixels(service(cache).run(again, RecordingSink(),
                                                    CancelToken())[0]), pixels(result))

    # The same image read as A1111 text (no studio chunk): every LoRA comes back as a tag and
    # applies once, through the tag path.
    image = Image.open(result.path)
    a1111 = result.path.with_name("a1111.png")
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    info.add_text("parameters", image.text["parameters"])
    image.save(a1111, pnginfo=info)
    foreign = to_request(read_image_metadata(a1111), str(tiny_sd15_dir))
    assert foreign.loras == [] and foreign.prompt == "a fox <lora:ink:0.8> <lora:paper:0.5>"
    remade = service(cache).run(foreign, RecordingSink(), CancelToken())[0]
    assert np.array_equal(pixels(remade), pixels(result))


def test_lora_hash_is_a1111s_and_a_stored_one_is_used(tmp_path, library):
    from safetensors.torch import load_file, save_file

    paths = default_paths()
    assert lora_hash(library / "ink.safetensors", paths) == a1111_hash(library / "ink.safetensors")
    trained = tmp_path / "trained.safetensors"
    save_file(load_file(str(library / "paper.safetensors")), str(trained),
              metadata={"sshs_model_hash": "ABCDEF0123456789" * 4})
    assert lora_hash(trained, paths) == "abcdef012345"


# -- bad LoRAs ----------------------------------------------------------------------------------
def test_sdxl_lora_on_an_sd15_model_is_refused_clearly(cache, library, tiny_sd15_dir):
    with pytest.raises(UserFacingError) as err:
        generate(cache, tiny_sd15_dir, prompt="x", loras=[{"name": "neon-xl", "weight": 1}])
    assert str(err.value) == ("LoRA 'neon-xl' was made for SDXL models; 'tiny-sd15' is an SD 1.5 "
                              "model — pick an SD 1.5 LoRA or an SDXL model.")
    # A LoRA whose base the header does not tell is tried; diffusers' shape error is explained.
    with pytest.raises(UserFacingError, match=r"LoRA 'mystery' does not fit 'tiny-sd15' \(an SD "
                       r"1\.5 model\): size mismatch.*made for another kind of model"):
        generate(cache, tiny_sd15_dir, prompt="x", loras=[{"name": "mystery", "weight": 1}])
    # A LyCORIS LoHa for an SDXL layer shape on SD 1.5: refused naming the layer.
    from tests.fixtures.tiny_lora import lyco_file

    lyco_file(library / "wide.safetensors", "loha", {
        "lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn1_to_q": (128, 128)})
    with pytest.raises(UserFacingError, match=r"LoRA 'wide' does not fit 'tiny-sd15': its "
                                              r"layer .*attn1_to_q .*\(128, 128\)"):
        generate(cache, tiny_sd15_dir, prompt="x", loras=[{"name": "wide", "weight": 1}])
    # Nothing of the failed LoRAs stays in the model.
    assert not hasattr(cache.current.unet, "peft_config")


def test_unknown_lora_picked_is_an_error_in_a_tag_a_warning(cache, library, tiny_sd15_dir):
    with pytest.raises(UserFacingError) as err:
        generate(cache, tiny_sd15_dir, prompt="x", loras=[{"name": "nowhere", "weight": 1}])
    message = str(err.value)
    assert "No LoRA called 'nowhere'" in message
    assert str(default_paths().models_dir) in message and "models/Lora" in message
    tagged = generate(cache, tiny_sd15_dir, prompt="a fox <lora:nowhere:0.7>")
    assert "LoRA 'nowhere' is not in your library — generated without it." in tagged.warnings
    assert tagged.loras == []
    assert np.array_equal(pixels(tagged), pixels(generate(cache, tiny_sd15_dir,
                                                          prompt="a fox")))


class _Exploit:
    """Unpickling this would create a marker file (stands in for any malicious code)."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_pickled_loras_load_safely_and_code_never_runs(cache, library, tiny_sd15_dir,
                                                        tmp_path):
    from safetensors.torch import load_file

    # A plain-tensor .pt LoRA works (weights_only) and equals its safetensors twin.
    torch.save(load_file(str(library / "ink-kohya.safetensors")), library / "ink-pickled.pt")
    pickled = generate(cache, tiny_sd15_dir, prompt="a fox",
                       loras=[{"name": "ink-pickled", "weight": 0.8}])
    safe = generate(cache, tiny_sd15_dir, prompt="a fox", loras=[{"name": "ink", "weight": 0.8}])
    assert np.array_equal(pixels(pickled), pixels(safe))
    # One that would run code is refused, by tag and by pick, and its code never runs.
    marker = tmp_path / "pwned"
    torch.save({"lora_unet_x.lora_down.weight": torch.ones(1), "x": _Exploit(marker)},
               library / "evil.pt")
    with (library / "evil-raw.ckpt").open("wb") as fh:
        pickle.dump({"lora_unet_x.lora_down.weight": _Exploit(marker)}, fh)
    for name in ("evil", "evil-raw"):
        with pytest.raises(UserFacingError, match="refused for safety"):
            generate(cache, tiny_sd15_dir, prompt=f"a fox <lora:{name}:1>")
    assert not marker.exists()


def test_prompt_tags_parse_like_a1111():
    text, mentions, warnings = parse_prompt_loras(
        "a <lora:ink:0.5> fox, <lora:Paper Cut>, <lora:duo:0.4:0.9> <hypernet:h:1>"
        " <lyco:Wash:0.6>")
    assert text == "a  fox, ,   "  # tags removed, nothing else touched (as A1111)
    assert [(m.name, m.weight) for m in mentions] == [("ink", 0.5), ("Paper Cut", 1.0),
                                                      ("duo", 0.4), ("Wash", 0.6)]
    assert any("<lora:duo:0.4:0.9>" in w and "one weight" in w for w in warnings)
    assert any("<hypernet:h:1>" in w for w in warnings)  # <lyco:…> is a LoRA, as in A1111
    assert not any("lyco" in w for w in warnings)
    with pytest.raises(UserFacingError, match=r"<lora:ink:lots> has a weight that is not a "
                                              r"number"):
        parse_prompt_loras("<lora:ink:lots>")
    with pytest.raises(UserFacingError, match="between -10 and 10"):
        parse_prompt_loras("<lora:ink:11>")
    assert LoraPlan("p").infotext_prompt("p") == "p"


def test_a_path_names_a_lora_outside_the_library(lora_files, studio_home):
    settings, paths = Settings(), default_paths()
    plan = plan_loras("x", [{"name": str(lora_files["ink"]), "weight": 0.5}], settings, paths)
    assert plan.loras[0].path == lora_files["ink"] and plan.loras[0].family == "sd1"
    assert plan.infotext_prompt("x") == "x <lora:ink:0.5>"  # the tag carries the file's stem
    with pytest.raises(UserFacingError, match="does not exist"):
        plan_loras("x", [{"name": "/no/such/ink.safetensors"}], settings, paths)


# -- command line (its main() in this process: tests/fixtures/cli_run.py) -----------------------
def test_cli_generate_and_img2img_with_lora(library, tiny_sd15_dir, tmp_path):
    out = studio_in_process("generate", "--model", str(tiny_sd15_dir), "--prompt", "a fox",
                            "--lora", "ink:0.8", "--lora", str(library / "paper.safetensors"),
                            "--seed", "42", "--steps", "2", "--cfg", "6", "--width", "64",
                            "--height", "64", "--json")
    assert out.returncode == 0, out.stderr
    row = json.loads(out.stdout)
    assert [(lora["name"], lora["weight"]) for lora in row["loras"]] == [
        ("ink", 0.8), (str((library / "paper.safetensors").resolve()), 1.0)]
    assert row["loras"][0]["hash"] == a1111_hash(library / "ink.safetensors")
    meta = read_image_metadata(Path(row["path"]))
    assert meta.request.loras == [{"name": "ink", "weight": 0.8},
                                  {"name": str((library / "paper.safetensors").resolve()),
                                   "weight": 1.0}]
    assert parse_parameters(meta.raw["parameters"])["Prompt"] == (
        "a fox <lora:ink:0.8> <lora:paper:1>")

    Image.new("RGB", (64, 64), (120, 80, 40)).save(tmp_path / "in.png")
    out = studio_in_process("img2img", "--model", str(tiny_sd15_dir), "--image",
                            str(tmp_path / "in.png"), "--prompt", "a barn", "--lora", "ink",
                            "--steps", "2", "--json")
    assert out.returncode == 0, out.stderr
    assert [lora["name"] for lora in json.loads(out.stdout)["loras"]] == ["ink"]


@pytest.mark.parametrize("spec,needle", [
    ("ink:lots", "the weight 'lots' is not a number"),
    (":0.5", "names no LoRA"),
    ("ink:12", "between -10 and 10"),
    ("nowhere:0.5", "No LoRA called 'nowhere'"),
    ("neon-xl", "was made for SDXL models"),
])
def test_cli_bad_lora_exits_2_with_the_reason(library, tiny_sd15_dir, spec, needle):
    out = studio_in_process("generate", "--model", str(tiny_sd15_dir), "--prompt", "x", "--lora",
                            spec, "--steps", "1", "--width", "64", "--height", "64")
    assert out.returncode == 2, out.stderr
    assert needle in out.stderr and out.stdout == ""
