"""Loading a model on a worker thread never stops the main thread for long (issue #2).

Every Qt slot needs the GIL, so a worker that holds it for 200 ms freezes the window for 200 ms.
The culprit was the cyclic garbage collector: loading a model (a CLIP ``tokenizer.json`` alone
is ~100,000 lists) sets off full passes, and a full pass walks every object of the process — about
half a million once torch, diffusers, transformers and the window exist — holding the GIL throughout.
The loader now freezes the long-lived heap first (:mod:`studio.core.gc_pauses`), so the passes
that a load sets off skip it.

That is what is tested here, as behaviour: every full pass that runs while the tiny SD 1.5 and SDXL
pipelines load finds the long-lived heap (a window's worth of objects made before the load) frozen,
and the heap stays frozen after. How long the main thread then waits is measured, with and without
the freeze, by ``bench/gui_responsiveness.py`` (the longest main-thread gap while these models
load); a wall-clock bound here would only measure how busy the test machine is.
"""

from __future__ import annotations

import gc

import pytest


def _app_heap(n: int = 300_000) -> list:
    """Long-lived container objects, as a GUI process holds them (widgets' wrappers, gallery rows)."""
    return [[i] for i in range(n)]


def _collected_ids() -> set[int]:
    """Ids of the objects the collector walks (its generations; frozen objects are not there)."""
    return {id(o) for o in gc.get_objects()}


@pytest.mark.timeout(300)
def test_loading_sd15_and_sdxl_freezes_the_heap_before_any_full_pass(tiny_sd15_dir,
                                                                      tiny_sdxl_dir):
    import torch

    from studio.core.config import Settings, default_paths
    from studio.library.models import resolve_model
    from studio.pipelines.diffusion.loading import load_txt2img_pipeline

    paths = default_paths()
    entries = [resolve_model(str(d), Settings(), paths) for d in (tiny_sd15_dir, tiny_sdxl_dir)]
    assert [e.family for e in entries] == ["sd1", "sdxl"]
    heap = _app_heap()
    probes = [id(heap), id(heap[0]), id(heap[len(heap) // 2]), id(heap[-1])]
    assert set(probes) <= _collected_ids()  # new objects: walked by every full pass for now
    full_passes: list[bool] = []  # per full pass during the loads: was the heap skipped?

    def watch(phase: str, info: dict) -> None:
        if phase == "start" and info["generation"] == 2:
            walked = _collected_ids()
            full_passes.append(not any(p in walked for p in probes))

    loaded: list[str] = []
    gc.callbacks.append(watch)
    try:
        for entry in entries:
            pipe = load_txt2img_pipeline(entry, "cpu", torch.float32, paths)
            loaded.append(type(pipe).__name__)
            del pipe
    finally:
        gc.callbacks.remove(watch)
    assert loaded == ["StableDiffusionPipeline", "StableDiffusionXLPipeline"]
    assert all(full_passes), f"a full pass walked the long-lived heap: {full_passes}"
    assert not set(probes) & _collected_ids()  # frozen: later passes skip it too
    assert gc.isenabled()  # the loader switched the collector back on
    del heap  # frozen objects are still freed by reference counting (tested below)


def test_collector_is_restored_and_nesting_respected():
    from studio.core.gc_pauses import collector_paused_for_imports

    assert gc.isenabled()
    with collector_paused_for_imports():
        assert not gc.isenabled()
        with collector_paused_for_imports():
            assert not gc.isenabled()
        assert not gc.isenabled()  # the inner block did not switch it back on early
    assert gc.isenabled()
    gc.disable()
    try:
        with collector_paused_for_imports():
            pass
        assert not gc.isenabled()  # a caller's own gc.disable() is respected
    finally:
        gc.enable()


def test_frozen_objects_are_still_freed_by_reference_counting():
    import weakref

    from studio.core.gc_pauses import freeze_long_lived

    class Thing:
        pass

    thing = Thing()
    ref = weakref.ref(thing)
    freeze_long_lived()
    del thing
    assert ref() is None
