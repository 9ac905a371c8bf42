"""A pickle that would run code when loaded is refused by import, by generate and by every loader,
and its code never runs (issue #3, "Safe loading").

The exploit is a ``.ckpt/.pt/.pth/.bin`` whose unpickling would create a marker file — as a plain
pickle and as a ``torch.save`` zip, each carrying real weights' key names so that it looks like
the model it pretends to be and reaches the loader (a CycleGAN generator's keys, a UNet's, a
Llama's). Every path that can read such a file gets it: import (in process and ``studio models
import``), scanning, info and hashing, Generate, img2img, Transform, Chat, resuming a training
run, the TAESD previewer. Loaders must refuse it with a message a person can read; looking at it
(scan, info, hash) must not unpickle it. Whatever happens, the marker never appears.
"""

from __future__ import annotations

import ast
import hashlib
import json
import pickle
import shutil
import subprocess
from pathlib import Path

import pytest
import torch
from PIL import Image

from studio.core.config import Settings, default_paths
from studio.core.jobs import CancelToken, UserFacingError
from tests.fixtures.sinks import RecordingSink

ROOT = Path(__file__).resolve().parents[1]
STYLES = ("pickle", "torch-zip")
REFUSED = "refused for safety"


class _Exploit:
    """Unpickling this creates ``marker``: it stands for any code an attacker would run."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def write_exploit(path: Path, style: str, marker: Path, weights: dict | None = None) -> Path:
    """``path`` as a pickle holding ``weights`` (their key names, for the plain pickle) and the
    exploit. ``pickle`` is protocol 2, as torch's legacy format, so torch's unpickler gets as far
    as the exploit's global; ``torch-zip`` is what ``torch.save`` writes today."""
    path.parent.mkdir(parents=True, exist_ok=True)
    weights = dict(weights or {})
    if style == "pickle":
        payload = {key: list(value.shape) for key, value in weights.items()}
        payload["exploit"] = _Exploit(marker)
        path.write_bytes(pickle.dumps({"state_dict": payload}, protocol=2))
    else:
        torch.save({**weights, "exploit": _Exploit(marker)}, path)
    assert not marker.exists()
    return path


def _weights_of(path: Path) -> dict:
    from safetensors.torch import load_file

    # Copies: safetensors maps the file, and the tests overwrite or delete it next.
    return {key: value.clone() for key, value in load_file(str(path)).items()}


@pytest.fixture
def marker(tmp_path):
    """The file the exploit would create; no test in this module may ever see it."""
    path = tmp_path / "PWNED"
    yield path
    assert not path.exists(), "the pickle's code ran"


@pytest.fixture
def hf_home(tmp_path, monkeypatch):
    """An empty Hugging Face cache of our own, so nothing scans the user's real one."""
    home = tmp_path / "hf-home"
    (home / "hub").mkdir(parents=True)
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    return home


# -- the evil models, one per way a user's pickle reaches Studio ---------------------------------


def _generator_weights() -> dict:
    from tests.fixtures.tiny_cyclegan import tiny_generator

    return dict(tiny_generator(6, 4).state_dict())


def evil_ckpt(root: Path, style: str, marker: Path, request) -> Path:
    """An SD checkpoint (.ckpt) with UNet-looking keys: Generate's single-file path."""
    keys = {"model.diffusion_model.input_blocks.0.0.weight": torch.zeros(320, 4, 3, 3)}
    return write_exploit(root / "evil-sd.ckpt", style, marker, keys)


def evil_generator(root: Path, style: str, marker: Path, request) -> Path:
    """A CycleGAN generator (.pth) whose keys are a real generator's: the scan recognises it."""
    return write_exploit(root / "cyclegan" / "evil" / "latest_net_G.pth", style, marker,
                         _generator_weights())


def evil_generator_pair(root: Path, style: str, marker: Path, request) -> Path:
    """A trained G_A/G_B pair whose G_A is the exploit (G_B is a clean generator)."""
    folder = root / "evil-pair"
    write_exploit(folder / "latest_net_G_A.pth", style, marker, _generator_weights())
    torch.save(_generator_weights(), folder / "latest_net_G_B.pth")
    return folder


def evil_diffusers_folder(root: Path, style: str, marker: Path, request) -> Path:
    """A diffusers SD pipeline whose UNet comes as ``diffusion_pytorch_model.bin`` only."""
    folder = root / "evil-pipeline"
    shutil.copytree(request.getfixturevalue("tiny_sd15_dir"), folder)
    unet = folder / "unet" / "diffusion_pytorch_model.safetensors"
    weights = _weights_of(unet)
    unet.unlink()
    write_exploit(unet.with_suffix(".bin"), style, marker, weights)
    return folder


def evil_chat_folder(root: Path, style: str, marker: Path, request) -> Path:
    """A Llama chat model whose weights are ``pytorch_model.bin`` (no safetensors)."""
    folder = root / "evil-llama"
    shutil.copytree(request.getfixturevalue("tiny_llama_dir"), folder)
    weights = _weights_of(folder / "model.safetensors")
    (folder / "model.safetensors").unlink()
    write_exploit(folder / "pytorch_model.bin", style, marker, weights)
    return folder


def evil_pt(root: Path, style: str, marker: Path, request) -> Path:
    """A bare ``.pt`` of unknown content."""
    return write_exploit(root / "evil.pt", style, marker, {"w": torch.ones(2)})


def evil_bin(root: Path, style: str, marker: Path, request) -> Path:
    """A bare ``.bin`` of unknown content."""
    return write_exploit(root / "evil.bin", style, marker, {"w": torch.ones(2)})


EVIL = {f.__name__.removeprefix("evil_"): f for f in (
    evil_ckpt, evil_generator, evil_generator_pair, evil_diffusers_folder, evil_chat_folder,
    evil_pt, evil_bin)}


def test_the_exploit_is_real(tmp_path, marker):
    """Without the safeguards each exploit does run its code — so the tests below can fail."""
    for style in STYLES:
        evil = write_exploit(tmp_path / f"{style}.ckpt", style, marker, {"w": torch.ones(1)})
        if style == "pickle":
            pickle.loads(evil.read_bytes())
        else:
            torch.load(evil, weights_only=False)
        assert marker.exists()
        marker.unlink()


# -- import -----------------------------------------------------------------------------------


@pytest.mark.parametrize("style", STYLES)
@pytest.mark.parametrize("what", sorted(EVIL))
def test_import_refuses_it_and_registers_or_copies_nothing(what, style, tmp_path, marker, hf_home,
                                                           request):
    from studio.library.manage import import_model

    evil = EVIL[what](tmp_path / "downloads", style, marker, request)
    settings, paths = Settings(), default_paths()
    for copy in (False, True):
        with pytest.raises(UserFacingError, match=REFUSED) as info:
            import_model(evil, settings, paths, copy=copy)
        assert "arbitrary code" in str(info.value) and ".safetensors" in str(info.value)
        assert "weights_only" not in str(info.value)  # not torch's how-to-load-it-anyway advice
    assert not paths.models_dir.exists() or not any(paths.models_dir.rglob("*"))
    assert settings.added_models == []


def test_import_takes_a_folder_whose_pickle_is_never_read(tmp_path, marker, hf_home,
                                                          tiny_sd15_dir):
    """safetensors first: a pickle beside a component's safetensors is never opened by diffusers,
    so it does not stop the import — and loading the model leaves it unread (see below)."""
    from studio.library.manage import import_model

    folder = tmp_path / "sd-with-both"
    shutil.copytree(tiny_sd15_dir, folder)
    write_exploit(folder / "unet" / "diffusion_pytorch_model.bin", "torch-zip", marker,
                  {"w": torch.ones(1)})
    result = import_model(folder, Settings(), default_paths())
    assert result.entry.kind == "image" and str(folder.resolve()) in result.settings.added_models


# -- looking at it: scanning, info, hashing ----------------------------------------------------


@pytest.mark.parametrize("style", STYLES)
def test_scanning_lists_every_pickle_and_unpickles_none(style, tmp_path, marker, hf_home,
                                                        request):
    from studio.library.catalog import describe_path, list_models
    from studio.library.manage import model_sha256
    from tests.fixtures.hub_cache import add_to_hub_cache

    paths = default_paths()
    # A trained pair is found where the scanners look for CycleGAN models (<models>/cyclegan).
    placed = {what: EVIL[what](paths.models_dir / ("cyclegan" if what == "generator_pair" else ""),
                               style, marker, request) for what in EVIL}
    extra = tmp_path / "a1111"
    placed["a1111"] = write_exploit(extra / "models" / "Stable-diffusion" / "evil-a1111.ckpt",
                                    style, marker, {"w": torch.ones(1)})
    add_to_hub_cache(hf_home, "evil/pipeline", placed["diffusers_folder"])
    add_to_hub_cache(hf_home, "evil/llama", placed["chat_folder"])
    settings = Settings(extra_model_dirs=[str(extra)])

    entries = list_models(settings, paths)
    assert not marker.exists()
    listed = {e.path.resolve(): e for e in entries}
    for what, path in placed.items():
        assert path.resolve() in listed or any(  # a pair is listed by its folder or first file
            e.files and path.resolve() in {f.resolve() for f in e.files} | {e.path.resolve()}
            for e in entries), (what, sorted(map(str, listed)))
    assert {e.repo_id for e in entries if e.source == "hf-cache"} == {"evil/pipeline",
                                                                      "evil/llama"}
    kinds = {what: describe_path(path, "file", paths).kind for what, path in placed.items()}
    assert kinds["generator"] == kinds["generator_pair"] == "transform"  # by its keys alone
    assert kinds["ckpt"] == kinds["diffusers_folder"] == "image" and kinds["chat_folder"] == "chat"
    # The hash is of the bytes, as A1111's "Model hash": reading them runs nothing.
    entry = listed[placed["ckpt"].resolve()]
    assert model_sha256(entry, paths).sha256 == hashlib.sha256(
        placed["ckpt"].read_bytes()).hexdigest()


# -- loading it: every loader refuses it with a readable message -------------------------------


def _settings() -> Settings:
    return Settings(device="cpu", precision="fp32", preview_mode="fast")


def _picture(tmp_path: Path) -> Path:
    path = tmp_path / "photo.png"
    Image.new("RGB", (64, 64), (200, 120, 40)).save(path)
    return path


def _generate(model: Path, tmp_path: Path) -> None:
    from studio.core.requests import Txt2ImgRequest
    from studio.pipelines.diffusion.txt2img import Txt2ImgService

    request = Txt2ImgRequest(model=str(model), prompt="a cat", steps=1, width=64, height=64)
    Txt2ImgService(_settings, default_paths).run(request, RecordingSink(), CancelToken())


def _img2img(model: Path, tmp_path: Path) -> None:
    from studio.core.requests import Img2ImgRequest
    from studio.pipelines.diffusion.img2img import Img2ImgService

    request = Img2ImgRequest(model=str(model), image=str(_picture(tmp_path)), prompt="a cat",
                             steps=1)
    Img2ImgService(_settings, default_paths).run(request, RecordingSink(), CancelToken())


def _transform(model: Path, tmp_path: Path) -> None:
    from studio.core.requests import TransformRequest
    from studio.pipelines.cyclegan.service import TransformService

    request = TransformRequest(model=str(model), inputs=[str(_picture(tmp_path))])
    TransformService(_settings, default_paths).run(request, RecordingSink(), CancelToken())


def _cyclegan(model: Path, tmp_path: Path) -> None:
    from studio.pipelines.cyclegan.model import CycleGANGenerator

    CycleGANGenerator(model)


def _chat(model: Path, tmp_path: Path):
    from studio.library.chat_models import resolve_chat_model
    from studio.pipelines.chat.loading import LoadOptions, load_chat_model

    entry = resolve_chat_model(str(model), _settings(), default_paths())
    return load_chat_model(entry, "cpu", LoadOptions(torch.float32))


LOADERS = [  # (what the user runs, the evil model it gets)
    (_generate, "ckpt"), (_generate, "diffusers_folder"), (_img2img, "ckpt"),
    (_img2img, "diffusers_folder"), (_transform, "generator"), (_transform, "generator_pair"),
    (_cyclegan, "generator"), (_chat, "chat_folder"),
]


@pytest.mark.parametrize("style", STYLES)
@pytest.mark.parametrize("run, what", LOADERS,
                         ids=[f"{run.__name__[1:]}-{what}" for run, what in LOADERS])
def test_every_loader_refuses_it(run, what, style, tmp_path, marker, hf_home, request,
                                 tiny_single_file_env):
    evil = EVIL[what](tmp_path / "models", style, marker, request)
    with pytest.raises(UserFacingError, match=REFUSED) as info:
        run(evil, tmp_path)
    message = str(info.value)
    assert "arbitrary code" in message and ".safetensors" in message
    assert "weights_only" not in message and "\x1b[" not in message
    if style == "torch-zip":
        assert "io.open" in message  # says what the file asked for


@pytest.mark.parametrize("style", STYLES)
def test_resuming_a_run_whose_checkpoint_was_replaced_by_a_pickle(style, tmp_path, marker):
    """Studio's own checkpoints are safetensors + JSON; a pickle in their place is refused by
    name, from the session the Train workspace resumes with as from the run itself."""
    import threading

    from studio.pipelines.train.registry import lesson_class
    from studio.pipelines.train.runs import CHECKPOINT, Run
    from studio.pipelines.train.session import TrainingSession

    cls = lesson_class("classifier-2d")
    trainer = cls(cls.validate_config({}), seed=0)
    trainer.step()
    run = Run.create(tmp_path / "runs", "classifier-2d", 0, trainer.config)
    run.save_checkpoint(trainer)
    assert Run(run.path).resume().step_count == 1  # the genuine checkpoint resumes
    tensors = run.path / CHECKPOINT
    write_exploit(tensors, style, marker, _weights_of(tensors))

    with pytest.raises(UserFacingError, match=REFUSED):
        Run(run.path).resume()
    states: list[tuple[str, str]] = []
    done = threading.Event()

    def on_state(state: str, message: str) -> None:
        states.append((state, message))
        done.set()

    session = TrainingSession("classifier-2d", lambda frame: None, on_state)
    session.start(resume=run.path)
    try:
        assert done.wait(120)
    finally:
        session.stop()
    assert states[0][0] == "error" and REFUSED in states[0][1], states


@pytest.mark.parametrize("style", STYLES)
def test_taesd_previewer_reads_safetensors_only(style, tmp_path, marker, monkeypatch, caplog):
    """A TAESD folder whose decoder is only a pickle: previews fall back to the fast ones and
    the pickle is not even opened (``torch.load`` is never called)."""
    from diffusers import AutoencoderTiny
    from safetensors.torch import save_file

    from studio.pipelines.diffusion import previews

    folder = default_paths().models_dir / "taesd"
    tiny = AutoencoderTiny(encoder_block_out_channels=(8, 8, 8, 8),
                           decoder_block_out_channels=(8, 8, 8, 8), latent_channels=4)
    tiny.save_pretrained(folder)
    weights = _weights_of(folder / "diffusion_pytorch_model.safetensors")
    (folder / "diffusion_pytorch_model.safetensors").unlink()
    # madebyollin/taesd also ships the bare decoder as taesd_decoder.safetensors.
    save_file({k: v for k, v in weights.items() if k.startswith("decoder.")},
              str(folder / "taesd_decoder.safetensors"))
    write_exploit(folder / "diffusion_pytorch_model.bin", style, marker, weights)
    assert previews.find_taesd("sd1", default_paths()) == folder

    loads = []
    real_load = torch.load
    monkeypatch.setattr(torch, "load", lambda *a, **k: loads.append(a) or real_load(*a, **k))
    previews._taesd_cache.clear()
    previewer = previews.make_previewer("taesd", "sd1", 2, default_paths(), "cpu", torch.float32)
    assert previewer.mode == "fast" and previewer.taesd is None
    assert loads == []
    assert "could not be loaded" in caplog.text


# -- the libraries' own loading: weights_only, safetensors first, no remote code ---------------


def test_safetensors_beside_a_pickle_win_and_the_pickle_is_never_opened(tmp_path, marker,
                                                                        tiny_sd15_dir,
                                                                        tiny_llama_dir):
    sd = tmp_path / "sd"
    shutil.copytree(tiny_sd15_dir, sd)
    write_exploit(sd / "unet" / "diffusion_pytorch_model.bin", "torch-zip", marker,
                  {"w": torch.ones(1)})
    _generate(sd, tmp_path)
    llama = tmp_path / "llama"
    shutil.copytree(tiny_llama_dir, llama)
    write_exploit(llama / "pytorch_model.bin", "torch-zip", marker, {"w": torch.ones(1)})
    _chat(llama, tmp_path)


@pytest.mark.parametrize("library", ["transformers", "diffusers"])
def test_the_libraries_read_bin_weights_with_weights_only(library, tmp_path, monkeypatch,
                                                          tiny_sd15_dir, tiny_llama_dir):
    """Clean ``.bin`` weights load — through ``torch.load(weights_only=True)`` and nothing else.
    A new transformers/diffusers that dropped weights_only fails here first."""
    if library == "transformers":
        folder = tmp_path / "llama"
        shutil.copytree(tiny_llama_dir, folder)
        weights_file = folder / "model.safetensors"
        target, run = folder / "pytorch_model.bin", _chat
    else:
        folder = tmp_path / "sd"
        shutil.copytree(tiny_sd15_dir, folder)
        weights_file = folder / "unet" / "diffusion_pytorch_model.safetensors"
        target, run = weights_file.with_suffix(".bin"), _generate
    torch.save(_weights_of(weights_file), target)
    weights_file.unlink()
    calls: list[dict] = []
    real_load = torch.load
    monkeypatch.setattr(torch, "load", lambda *a, **k: calls.append(k) or real_load(*a, **k))
    run(folder, tmp_path)
    assert calls and all(call.get("weights_only") is True for call in calls), calls


@pytest.mark.parametrize("part", ["model", "tokenizer", "architecture"])
def test_a_chat_model_shipping_its_own_code_never_runs_it(part, tmp_path, marker,
                                                          tiny_llama_dir):
    """``auto_map`` names Python files in the folder that transformers imports only with
    ``trust_remote_code=True``, which Studio never passes: a known architecture loads with
    transformers' own class, the code ignored; a class that exists only as that code is refused."""
    folder = tmp_path / "remote-code"
    shutil.copytree(tiny_llama_dir, folder)
    (folder / "evil_code.py").write_text(
        f"open({str(marker)!r}, 'w').close()\n"
        "from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast\n"
        "class EvilConfig(LlamaConfig):\n    model_type = 'evil'\n"
        "class EvilForCausalLM(LlamaForCausalLM):\n    config_class = EvilConfig\n"
        "class EvilTokenizer(PreTrainedTokenizerFast):\n    pass\n", encoding="utf-8")
    name = "tokenizer_config.json" if part == "tokenizer" else "config.json"
    config = json.loads((folder / name).read_text(encoding="utf-8"))
    if part == "tokenizer":
        config.update(tokenizer_class="EvilTokenizer",
                      auto_map={"AutoTokenizer": [None, "evil_code.EvilTokenizer"]})
    else:
        config["auto_map"] = {"AutoConfig": "evil_code.EvilConfig",
                              "AutoModelForCausalLM": "evil_code.EvilForCausalLM"}
    if part == "architecture":
        config.update(model_type="evil", architectures=["EvilForCausalLM"])
    (folder / name).write_text(json.dumps(config), encoding="utf-8")
    if part == "model":
        loaded = _chat(folder, tmp_path)
        assert type(loaded.model).__name__ == "LlamaForCausalLM"
    else:
        with pytest.raises(UserFacingError, match="never runs a model's own code"):
            _chat(folder, tmp_path)


def test_nothing_in_studio_unpickles_but_safe_load():
    """The Gallery, metadata readers and every other module: no ``pickle.load``, no
    ``torch.load`` outside :mod:`studio.library.safe_load` (and that one weights_only), no
    ``trust_remote_code`` other than False, no ``allow_pickle=True``."""
    bad: list[str] = []
    for file in sorted((ROOT / "studio").rglob("*.py")):
        rel = file.relative_to(ROOT).as_posix()
        for node in ast.walk(ast.parse(file.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.Call):
                continue
            func = node.func
            owner = func.value.id if isinstance(func, ast.Attribute) and isinstance(
                func.value, ast.Name) else ""
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            where = f"{rel}:{node.lineno}"
            kw = {k.arg: k.value for k in node.keywords if k.arg}
            if owner in ("pickle", "cPickle", "dill", "joblib", "marshal") and name in (
                    "load", "loads", "Unpickler"):
                bad.append(f"{where} {owner}.{name}")
            if owner == "torch" and name == "load":
                flag = kw.get("weights_only")
                if rel != "studio/library/safe_load.py" or not (
                        isinstance(flag, ast.Constant) and flag.value is True):
                    bad.append(f"{where} torch.load")
            for key, safe in (("trust_remote_code", False), ("weights_only", True)):
                if key in kw and not (isinstance(kw[key], ast.Constant)
                                      and kw[key].value is safe):
                    bad.append(f"{where} {key}={ast.unparse(kw[key])}")
            if "allow_pickle" in kw and not (isinstance(kw["allow_pickle"], ast.Constant)
                                             and kw["allow_pickle"].value is False):
                bad.append(f"{where} allow_pickle={ast.unparse(kw['allow_pickle'])}")
    assert bad == []


# -- the command line ------------------------------------------------------------------------


def _studio(*args: str) -> subprocess.CompletedProcess:
    """``studio ARGS`` through its ``main()`` in this process (tests/fixtures/cli_run.py): the same
    stderr and exit status as a child, without one importing torch and diffusers for each case.
    What a ``python -m studio`` process does with bad input is tests/test_cli_conventions.py's."""
    from tests.fixtures.cli_run import studio_in_process

    return studio_in_process(*args)


CLI = [  # (argv after `studio`, the evil model, its style); {model} and {image} are filled in
    (["models", "import", "{model}"], "ckpt", "pickle"),
    (["models", "import", "--copy", "{model}"], "chat_folder", "torch-zip"),
    (["generate", "--model", "{model}", "--prompt", "x", "--steps", "1", "--width", "64",
      "--height", "64"], "ckpt", "torch-zip"),
    (["generate", "--model", "{model}", "--prompt", "x", "--steps", "1", "--width", "64",
      "--height", "64"], "diffusers_folder", "pickle"),
    (["img2img", "--model", "{model}", "--image", "{image}", "--prompt", "x", "--steps", "1"],
     "ckpt", "pickle"),
    (["transform", "--model", "{model}", "--input", "{image}"], "generator", "torch-zip"),
    (["chat", "--model", "{model}", "--prompt", "hi", "--max-new-tokens", "2"], "chat_folder",
     "pickle"),
]


@pytest.mark.parametrize("argv, what, style", CLI,
                         ids=[f"{a[0]}{'-' + a[1] if a[0] == 'models' else ''}-{w}"
                              for a, w, _ in CLI])
def test_cli_refuses_it_in_one_line(argv, what, style, tmp_path, marker, hf_home, request):
    evil = EVIL[what](tmp_path / "downloads", style, marker, request)
    image = _picture(tmp_path)
    proc = _studio(*[a.format(model=evil, image=image) for a in argv])
    assert proc.returncode not in (0, None), proc.stdout
    assert "Traceback" not in proc.stderr, proc.stderr
    assert REFUSED in proc.stderr and "studio: error:" in proc.stderr, proc.stderr
    assert not (default_paths().models_dir.exists()
                and any(default_paths().models_dir.rglob("*.bin")))


def test_cli_info_and_hash_read_bytes_not_pickles(tmp_path, marker, hf_home, request):
    evil = EVIL["ckpt"](default_paths().models_dir, "torch-zip", marker, request)
    proc = _studio("models", "info", str(evil), "--hash", "--json")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["sha256"] == hashlib.sha256(evil.read_bytes()).hexdigest()
    assert data["kind"] == "image" and "pickled" in data["detail"]
