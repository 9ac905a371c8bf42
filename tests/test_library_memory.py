"""Memory: the model caches' shared budget, per-model low-memory options, the out-of-memory retry
with offload, "Unload all", and CycleGAN generators in the cache (issue #3, "Memory")."""

from __future__ import annotations

import dataclasses
import gc
import logging

import numpy as np
import pytest
import torch
from PIL import Image

from studio.core.config import MemoryOptions, Settings, default_paths
from studio.core.jobs import CancelToken, JobState, UserFacingError
from studio.core.requests import Img2ImgRequest, Txt2ImgRequest, UnloadRequest
from studio.library.models import resolve_model
from studio.pipelines import model_cache as mc
from studio.pipelines.diffusion import memory
from tests.fixtures.sinks import RecordingSink


@pytest.fixture(autouse=True)
def empty_caches():
    """Caches left alive by earlier tests share the budget: start and end with none loaded."""
    gc.collect()
    mc.unload_all_models()
    yield
    mc.unload_all_models()


def gb(n_bytes: float) -> float:
    return n_bytes / 2**30


def image_entry(folder):
    return resolve_model(str(folder), Settings(device="cpu"), default_paths())


def image_cache(settings):
    return mc.ModelCache(settings_getter=lambda: settings)


def sizes(*folders):
    return [mc.estimate_bytes(f, torch.float32) for f in folders]


# -- the budget ---------------------------------------------------------------------------------
def test_a_budget_for_two_keeps_both_so_switching_back_costs_no_load(tiny_sd15_dir,
                                                                     tiny_sdxl_dir):
    a, b = sizes(tiny_sd15_dir, tiny_sdxl_dir)
    cache = image_cache(Settings(device="cpu", memory_budget_gb=gb((a + b) * 1.1)))
    first = cache.get(image_entry(tiny_sd15_dir), "cpu", torch.float32)
    cache.get(image_entry(tiny_sdxl_dir), "cpu", torch.float32)
    again = cache.get(image_entry(tiny_sd15_dir), "cpu", torch.float32)
    assert cache.loads == 2 and again is first and cache.current is first
    report = mc.memory_report()
    assert [m.name for m in report] == [tiny_sd15_dir.name, tiny_sdxl_dir.name]  # recent first
    assert all(m.kind == "image" and m.device == "cpu" for m in report)
    # The measured size is what the weights take (the estimate from the headers is close).
    assert abs(report[0].bytes - a) < 0.01 * a


def test_a_budget_for_one_reloads_on_every_switch(tiny_sd15_dir, tiny_sdxl_dir):
    a, b = sizes(tiny_sd15_dir, tiny_sdxl_dir)
    cache = image_cache(Settings(device="cpu", memory_budget_gb=gb(max(a, b) * 1.1)))
    assert max(a, b) * 1.1 < a + b
    for folder in (tiny_sd15_dir, tiny_sdxl_dir, tiny_sd15_dir):
        cache.get(image_entry(folder), "cpu", torch.float32)
        assert [m.name for m in mc.memory_report()] == [folder.name]
    assert cache.loads == 3
    assert mc.loaded_model_paths() == {tiny_sd15_dir.resolve()}


def test_eviction_spans_caches_chat_and_image(tiny_sd15_dir, tiny_llama_dir):
    from studio.library.chat_models import resolve_chat_model
    from studio.pipelines.chat.loading import LoadOptions, load_chat_model

    settings = Settings(device="cpu")
    chat_options = LoadOptions(torch.float32)
    image_size = mc.estimate_bytes(tiny_sd15_dir, torch.float32)
    chat_size = mc.estimate_bytes(tiny_llama_dir, chat_options)
    settings = Settings(device="cpu", memory_budget_gb=gb(image_size + chat_size / 2))
    images = image_cache(settings)
    chats = mc.ModelCache(loader=load_chat_model, kind="chat", settings_getter=lambda: settings)
    chat_entry = resolve_chat_model(str(tiny_llama_dir), settings, default_paths())

    images.get(image_entry(tiny_sd15_dir), "cpu", torch.float32)
    loaded = chats.get(chat_entry, "cpu", chat_options)
    assert [(m.name, m.kind) for m in mc.memory_report()] == [(tiny_llama_dir.name, "chat")]
    assert images.current is None and chats.current is loaded
    images.get(image_entry(tiny_sd15_dir), "cpu", torch.float32)
    assert [m.kind for m in mc.memory_report()] == ["image"]
    assert (images.loads, chats.loads) == (2, 1)


def test_the_model_in_use_is_never_evicted_even_over_budget(tiny_sd15_dir, tiny_sdxl_dir,
                                                            caplog):
    cache = image_cache(Settings(device="cpu", memory_budget_gb=1e-6))  # ~1 KB: nothing fits
    with caplog.at_level(logging.WARNING, logger="studio.pipelines.model_cache"):
        pipe = cache.get(image_entry(tiny_sd15_dir), "cpu", torch.float32)
    assert "more than the memory budget" in caplog.text
    assert cache.current is pipe and mc.loaded_model_paths() == {tiny_sd15_dir.resolve()}
    assert cache.get(image_entry(tiny_sd15_dir), "cpu", torch.float32) is pipe
    assert cache.loads == 1
    cache.get(image_entry(tiny_sdxl_dir), "cpu", torch.float32)
    assert mc.loaded_model_paths() == {tiny_sdxl_dir.resolve()}


def test_automatic_budget_is_half_the_ram_without_cuda():
    assert mc.budget_bytes(Settings(device="cpu")) == int(mc.physical_memory() * 0.5)
    assert mc.budget_bytes(Settings(device="cpu", memory_budget_gb=3)) == 3 * 2**30


def test_estimates_count_each_weight_once_and_scale_with_the_dtype(tiny_sd15_dir, tmp_path):
    fp32 = mc.estimate_bytes(tiny_sd15_dir, torch.float32)
    assert mc.estimate_bytes(tiny_sd15_dir, torch.float16) == fp32 // 2
    # An fp16 variant next to the full weights (as hub repos ship them) is not counted twice.
    import shutil

    copy = tmp_path / "with-variant"
    shutil.copytree(tiny_sd15_dir, copy)
    unet = copy / "unet" / "diffusion_pytorch_model.safetensors"
    shutil.copy(unet, unet.with_name("diffusion_pytorch_model.fp16.safetensors"))
    assert mc.estimate_bytes(copy, torch.float32) == fp32


# -- unload all ---------------------------------------------------------------------------------
def test_unload_all_models_frees_every_cache_and_the_previewer(tiny_sd15_dir, tiny_llama_dir):
    from studio.library.chat_models import resolve_chat_model
    from studio.pipelines.chat.loading import LoadOptions, load_chat_model
    from studio.pipelines.diffusion import previews

    settings = Settings(device="cpu")
    images = image_cache(settings)
    chats = mc.ModelCache(loader=load_chat_model, kind="chat")
    images.get(image_entry(tiny_sd15_dir), "cpu", torch.float32)
    chats.get(resolve_chat_model(str(tiny_llama_dir), settings, default_paths()), "cpu",
              LoadOptions(torch.float32))
    decoder = torch.nn.Linear(8, 8)  # stands in for a TAESD decoder: 8*8+8 float32
    previews._taesd_cache[("/models/taesd", "cpu", "torch.float32")] = decoder
    report = mc.memory_report()
    assert sorted(m.kind for m in report) == ["chat", "image", "preview"]
    assert [m.bytes for m in report if m.kind == "preview"] == [72 * 4]
    total = sum(m.bytes for m in report)

    assert mc.unload_all_models() == total
    assert mc.memory_report() == [] and mc.loaded_model_paths() == set()
    assert previews._taesd_cache == {} and images.current is None and chats.current is None


def test_the_unload_job_runs_on_the_worker(tiny_sd15_dir):
    from studio.core.config import default_paths
    from studio.pipelines.services import build_engine

    settings = Settings(device="cpu")
    cache = image_cache(settings)
    cache.get(image_entry(tiny_sd15_dir), "cpu", torch.float32)
    held = sum(m.bytes for m in mc.memory_report())
    engine = build_engine(lambda: settings, default_paths)
    try:
        job = engine.submit(UnloadRequest(), "Unload all models")
        assert job.lane == "gpu" and job.wait(timeout=300)
    finally:
        engine.shutdown()
    assert job.state == JobState.DONE, job.error
    assert job.result == held > 0
    assert mc.memory_report() == [] and cache.current is None


def test_the_window_runs_the_unload_job(qtbot):
    from studio.app import build_main_window
    from studio.ui.workspaces import Workspace
    from tests.gui_fixtures import RecordingPanel

    cache = mc.ModelCache(loader=lambda entry, *a, **k: torch.nn.Linear(16, 16))
    cache.get(image_entry_stub("held"), "cpu", "float32")
    window = build_main_window(workspaces=[
        Workspace("generate", "Generate", "generate", RecordingPanel("Generate"))])
    qtbot.addWidget(window)
    try:
        job = window.ctx.bridge.engine.submit(UnloadRequest(), "Unload all models")
        qtbot.waitUntil(lambda: job.state.finished, timeout=10_000)
        assert job.state == JobState.DONE and job.result == (16 * 16 + 16) * 4
        assert mc.memory_report() == []
    finally:
        window.shutdown()


def image_entry_stub(name):
    class Entry:
        pass

    entry = Entry()
    entry.name, entry.path = name, default_paths().models_dir / name
    return entry


# -- memory options -----------------------------------------------------------------------------
def _txt2img(settings, cache):
    from studio.pipelines.diffusion.txt2img import Txt2ImgService

    return Txt2ImgService(lambda: settings, default_paths, cache=cache)


def _plain_sd15(folder, req):
    import diffusers

    pipe = diffusers.StableDiffusionPipeline.from_pretrained(str(folder), safety_checker=None,
                                                             local_files_only=True)
    pipe.set_progress_bar_config(disable=True)
    return pipe(req.prompt, num_inference_steps=req.steps, guidance_scale=req.cfg,
                width=req.width, height=req.height,
                generator=torch.Generator("cpu").manual_seed(req.seed)).images[0]


def test_options_apply_and_turning_them_off_restores_plain_diffusers(tiny_sd15_dir):
    base = Settings(device="cpu", precision="fp32", preview_mode="off")
    sliced = base.with_memory_options(tiny_sd15_dir,
                                      MemoryOptions(attention_slicing=True, vae_tiling=True))
    cache = mc.ModelCache()
    req = Txt2ImgRequest(model=str(tiny_sd15_dir), prompt="a red kite", steps=2, width=64,
                         height=64, seed=5)

    [low] = _txt2img(sliced, cache).run(req, RecordingSink(), CancelToken())
    pipe = cache.current
    kinds = {type(p).__name__ for p in pipe.unet.attn_processors.values()}
    assert kinds == {"SlicedAttnProcessor"} and pipe.vae.use_tiling
    assert memory.applied_options(pipe) == MemoryOptions(True, True, "none")
    pixels = np.asarray(low.image)
    assert low.image.size == (64, 64) and pixels.std() > 1 and low.warnings == []

    [plain] = _txt2img(base, cache).run(req, RecordingSink(), CancelToken())
    assert cache.loads == 1 and cache.current is pipe  # the same model, options taken off
    assert {type(p).__name__ for p in pipe.unet.attn_processors.values()} == {"AttnProcessor2_0"}
    assert not pipe.vae.use_tiling
    assert np.array_equal(np.asarray(plain.image), np.asarray(_plain_sd15(tiny_sd15_dir, req)))


def test_offload_on_cpu_is_a_warning_not_a_crash(tiny_sd15_dir):
    settings = Settings(device="cpu", precision="fp32", preview_mode="off").with_memory_options(
        tiny_sd15_dir, MemoryOptions(offload="sequential"))
    cache = mc.ModelCache()
    req = Txt2ImgRequest(model=str(tiny_sd15_dir), prompt="x", steps=1, width=64, height=64,
                         count=2)
    sink = RecordingSink()
    results = _txt2img(settings, cache).run(req, sink, CancelToken())
    assert len(results) == 2
    for result in results + sink.partials:
        assert result.warnings == [memory.OFFLOAD_IGNORED.format(
            what="Sequential CPU offload", device="CPU")]
    assert not hasattr(cache.current.unet, "_hf_hook")  # no accelerate hooks were put on
    assert memory.offload_mode(cache.current) == "none"


class FakePipe:
    """Records which memory calls reach it; raises CUDA out-of-memory ``ooms`` times."""

    def __init__(self, ooms: int = 0) -> None:
        self.calls: list[str] = []
        self.ooms = ooms

    def __call__(self, **kwargs):
        self.calls.append("call")
        if self.ooms:
            self.ooms -= 1
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return "image"

    def enable_attention_slicing(self):
        self.calls.append("slice")

    def disable_attention_slicing(self):
        self.calls.append("unslice")

    def enable_model_cpu_offload(self, device=None):
        self.calls.append(f"model-offload:{device}")

    def enable_sequential_cpu_offload(self, device=None):
        self.calls.append(f"sequential-offload:{device}")

    def remove_all_hooks(self):
        self.calls.append("remove-hooks")

    def to(self, device):
        self.calls.append(f"to:{device}")


def test_applying_the_same_options_again_does_nothing():
    pipe = FakePipe()
    options = MemoryOptions(attention_slicing=True, offload="model")
    assert memory.apply_memory_options(pipe, options, "cuda") == []
    assert memory.apply_memory_options(pipe, options, "cuda") == []
    assert pipe.calls == ["slice", "model-offload:cuda"]
    memory.apply_memory_options(pipe, MemoryOptions(), "cuda")
    assert pipe.calls[2:] == ["unslice", "remove-hooks", "to:cuda"]


def test_offload_that_cannot_start_is_a_warning_and_the_model_runs_without_it():
    class NoSeq(FakePipe):
        def enable_model_cpu_offload(self, device=None):
            raise ValueError("Model CPU offload cannot be enabled because no "
                             "`model_cpu_offload_seq` class attribute is set.")

    pipe = NoSeq()
    [warning] = memory.apply_memory_options(pipe, MemoryOptions(offload="model"), "cuda")
    assert warning.startswith("Model CPU offload could not be turned on (Model CPU offload "
                              "cannot be enabled")
    assert pipe.calls == ["remove-hooks", "to:cuda"] and memory.offload_mode(pipe) == "none"


# -- out of memory: retry once with model offload -----------------------------------------------
def _notes():
    notes: list[str] = []
    return notes, notes.append


def test_out_of_memory_retries_once_with_model_offload_and_says_so():
    pipe, other = FakePipe(ooms=1), torch.nn.Linear(4, 4)
    holder = mc.ModelCache(loader=lambda entry, *a, **k: entry.model)
    bystander = mc.ModelCache(loader=lambda entry, *a, **k: entry.model, kind="chat")

    class Entry:
        def __init__(self, name, model):
            self.name, self.path, self.model = name, default_paths().models_dir / name, model

    holder.get(Entry("big", pipe), "cuda", "float16")
    bystander.get(Entry("other", other), "cuda", "float16")
    memory.apply_memory_options(pipe, MemoryOptions(), "cuda")
    notes, note = _notes()

    assert memory.run_with_offload_retry(lambda: pipe(), pipe, "1024×1024", note) == "image"
    assert pipe.calls == ["call", "model-offload:cuda", "call"]
    assert notes == [memory.OOM_OFFLOAD_NOTE.format(size="1024×1024")]
    assert "Ran out of GPU memory at 1024×1024" in notes[0]
    assert [m.name for m in mc.memory_report()] == ["big"]  # the other model was unloaded
    assert mc.memory_report()[0].device == "cuda (model offload)"
    # The offload stays for later jobs, even when their options say none.
    memory.apply_memory_options(pipe, MemoryOptions(), "cuda")
    assert memory.offload_mode(pipe) == "model" and "remove-hooks" not in pipe.calls


def test_a_second_out_of_memory_is_the_clear_message():
    from studio.pipelines.diffusion.batch import out_of_memory_as

    pipe = FakePipe(ooms=5)
    memory.apply_memory_options(pipe, MemoryOptions(), "cuda")
    notes, note = _notes()
    with pytest.raises(UserFacingError, match="Out of memory at 64×64"):
        with out_of_memory_as("Out of memory at 64×64 — try a smaller size."):
            memory.run_with_offload_retry(lambda: pipe(), pipe, "64×64", note)
    assert pipe.calls == ["call", "model-offload:cuda", "call"]  # retried once, not more
    # Offload on already: the next out-of-memory error is not retried again.
    with pytest.raises(torch.OutOfMemoryError):
        memory.run_with_offload_retry(lambda: pipe(), pipe, "64×64", note)
    assert pipe.calls.count("model-offload:cuda") == 1


def test_out_of_memory_on_cpu_is_not_retried():
    pipe = FakePipe(ooms=1)
    memory.apply_memory_options(pipe, MemoryOptions(), "cpu")
    with pytest.raises(torch.OutOfMemoryError):
        memory.run_with_offload_retry(lambda: pipe(), pipe, "64×64", _notes()[1])
    assert pipe.calls == ["call"]


@pytest.fixture
def offload_on_cpu(monkeypatch):
    """Let the retry offload on CPU: accelerate's model offload runs there too (to "cpu:0"), so
    the real diffusers path is exercised without a GPU."""
    monkeypatch.setattr(memory, "offload_supported", lambda device: True)


def _fail_once(monkeypatch, cls):
    original = cls.__call__
    state = {"failed": 0}

    def flaky(self, *args, **kwargs):
        if not state["failed"]:
            state["failed"] += 1
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 8.00 GiB")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(cls, "__call__", flaky)
    return state


def test_txt2img_retries_with_offload_and_the_image_is_unchanged(tiny_sd15_dir, monkeypatch,
                                                                 offload_on_cpu):
    import diffusers

    settings = Settings(device="cpu", precision="fp32", preview_mode="off")
    cache = mc.ModelCache()
    req = Txt2ImgRequest(model=str(tiny_sd15_dir), prompt="a red kite", steps=2, width=64,
                         height=64, seed=5, count=2)
    state = _fail_once(monkeypatch, diffusers.StableDiffusionPipeline)
    sink = RecordingSink()
    first, second = _txt2img(settings, cache).run(req, sink, CancelToken())
    assert state["failed"] == 1
    note = memory.OOM_OFFLOAD_NOTE.format(size="64×64")
    assert first.warnings == [note] == second.warnings and sink.partials[0].warnings == [note]
    pipe = cache.current
    assert memory.offload_mode(pipe) == "model" and hasattr(pipe.unet, "_hf_hook")
    expected = _plain_sd15(tiny_sd15_dir, req)
    assert np.array_equal(np.asarray(first.image), np.asarray(expected))

    # The next job keeps the offload and has nothing to report.
    [later] = _txt2img(settings, cache).run(
        Txt2ImgRequest(model=str(tiny_sd15_dir), prompt="x", steps=1, width=64, height=64),
        RecordingSink(), CancelToken())
    assert later.warnings == [] and memory.offload_mode(cache.current) == "model"
    cache.unload_all()  # unloading ends it: the model loads without offload
    _txt2img(settings, cache).run(dataclasses.replace(req, count=1), RecordingSink(),
                                  CancelToken())
    assert memory.offload_mode(cache.current) == "none"


def test_img2img_retry_offloads_the_shared_model(tiny_sd15_dir, tmp_path, monkeypatch,
                                                 offload_on_cpu):
    import diffusers

    from studio.pipelines.diffusion.img2img import Img2ImgService, derive_pipeline

    photo = tmp_path / "photo.png"
    rng = np.random.default_rng(1)
    Image.fromarray((rng.random((64, 64, 3)) * 255).astype(np.uint8)).save(photo)
    settings = Settings(device="cpu", precision="fp32", preview_mode="off")
    cache = mc.ModelCache()
    service = Img2ImgService(lambda: settings, default_paths, cache)
    req = Img2ImgRequest(model=str(tiny_sd15_dir), image=str(photo), steps=3, strength=0.6)
    [before] = service.run(req, RecordingSink(), CancelToken())

    _fail_once(monkeypatch, diffusers.StableDiffusionImg2ImgPipeline)
    [after] = service.run(req, RecordingSink(), CancelToken())
    assert after.warnings == [memory.OOM_OFFLOAD_NOTE.format(size="64×64")]
    assert np.array_equal(np.asarray(after.image), np.asarray(before.image))
    base = cache.current
    assert memory.offload_mode(base) == "model" and cache.loads == 1
    # A pipeline derived later shares the offload record, so diffusers re-arms it after a call.
    derived = derive_pipeline(base, inpaint=False)
    assert memory.base_of(derived) is base and derived._all_hooks is base._all_hooks
    assert memory.offload_mode(derived) == "model"


# -- CycleGAN through the cache -----------------------------------------------------------------
def test_cyclegan_generators_are_cached_recorded_and_unloadable(tmp_path):
    from studio.core.requests import TransformRequest
    from studio.library import manage, usage
    from studio.library.catalog import describe_path
    from studio.pipelines.cyclegan.service import TransformService
    from tests.fixtures.tiny_cyclegan import build_cyclegan_zoo

    zoo = build_cyclegan_zoo(tmp_path / "zoo")
    pair = zoo["G_A"].parent
    photo = tmp_path / "in.png"
    Image.new("RGB", (24, 16), (200, 30, 90)).save(photo)
    settings = Settings(device="cpu")
    service = TransformService(lambda: settings, default_paths)
    request = TransformRequest(str(pair), [str(photo)], "AtoB")
    service.run(request, RecordingSink(), CancelToken())
    service.run(request, RecordingSink(), CancelToken())
    assert service.loads == 1

    assert str(pair.resolve()) in usage.last_used()  # the library's entry: the pair's folder
    assert mc.loaded_model_paths() == {zoo["G_A"].resolve()}
    [loaded] = mc.memory_report()
    assert (loaded.name, loaded.kind) == ("mystyle (AtoB)", "transform") and loaded.bytes > 0
    entry = describe_path(pair, "file", default_paths())
    with pytest.raises(UserFacingError, match="loaded right now"):
        manage.plan_removal(entry, settings)

    assert mc.unload_all_models() == loaded.bytes
    assert mc.loaded_model_paths() == set()
    manage.plan_removal(entry, settings)  # no longer refused
    service.run(request, RecordingSink(), CancelToken())
    assert service.loads == 2
