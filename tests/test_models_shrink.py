"""Make smaller… / ``studio models shrink``: a tiny random Llama shrunk to int8 (and int4, fp8)
through the engine, loaded back by Chat's own loader and asked for a reply; the refusals (a
layer the method cannot take, a model already quantized, a taken name, too little disk); the
command line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from studio.core.config import Settings, default_paths
from studio.core.jobs import CancelToken, JobState, UserFacingError
from studio.core.shrink_requests import ShrinkRequest
from studio.pipelines.chat.types import ChatRequest


def _settings_paths():
    settings = Settings(device="cpu")
    return settings, settings.resolved_paths(default_paths())


def _run(requests):
    return run_jobs(requests, name="test-shrink")


def run_jobs(requests, name):
    """Run requests on a real engine; their finished snapshots."""
    from studio.pipelines.services import build_engine

    settings, paths = _settings_paths()
    engine = build_engine(lambda: settings, lambda: paths, name=name)
    try:
        jobs = [engine.submit(r, title="t") for r in requests]
        for job in jobs:
            engine.wait(job, timeout=120)
        return jobs
    finally:
        engine.shutdown(wait=True, timeout=10)


@pytest.fixture
def model(tiny_llama_dir):
    """The tiny Llama in this test's models folder (so the copy lands next to it)."""
    import shutil

    _settings, paths = _settings_paths()
    dest = paths.models_dir / "tiny-llama"
    shutil.copytree(tiny_llama_dir, dest)
    return dest


def _reply(model_path: Path):
    """One greedy reply through the chat service (the code path Chat and serve use)."""
    request = ChatRequest(model=str(model_path), messages=[{"role": "user", "content": "Hi"}],
                          temperature=0.0, max_new_tokens=4, seed=0)
    [job] = _run([request])
    assert job.state is JobState.DONE, job.error
    return job.result


def test_int8_copy_is_a_quantized_library_entry_chat_loads(model):
    from studio.library.catalog import list_models

    [job] = _run([ShrinkRequest(model=str(model), method="int8", eval_tokens=64,
                                speed_tokens=2)])
    assert job.state is JobState.DONE, job.error
    report = job.result
    out = model.parent / "tiny-llama-int8"
    assert report.path == out and report.name == "tiny-llama-int8"
    config = json.loads((out / "config.json").read_text())
    assert config["quantization_config"]["quant_method"] == "torchao"
    assert (out / "model.safetensors").is_file() and not list(out.glob("*.bin"))
    assert (out / "tokenizer.json").is_file()
    assert report.after.size_bytes < report.before.size_bytes
    assert report.before.eval_tokens == report.after.eval_tokens == 64
    assert report.before.perplexity > 1 and report.after.perplexity > 1
    assert len(report.rows()) == 3
    entries = {e.name: e for e in list_models(*_settings_paths())}
    assert entries["tiny-llama-int8"].precision == "torchao int8"
    assert entries["tiny-llama"].precision != "torchao int8"
    reply = _reply(out)
    assert reply.completion_tokens >= 1
    _served_reply(out)


def _served_reply(folder: Path) -> None:
    """``studio serve`` lists the copy as a chat model and answers with it."""
    from studio.pipelines.services import build_engine
    from studio.server.app import make_server
    from studio.server.catalog import build_catalog
    from tests.fixtures.asgi import asgi_call

    settings, paths = _settings_paths()
    engine = build_engine(lambda: settings, lambda: paths, name="test-shrink-serve")
    server = make_server("127.0.0.1", 0, engine, build_catalog([str(folder)], settings, paths))
    try:
        models = asgi_call(server, "GET", "/v1/models").json()["data"]
        assert [(m["id"], m["kind"]) for m in models] == [(folder.name, "chat")]
        r = asgi_call(server, "POST", "/v1/chat/completions", json={
            "model": folder.name, "max_tokens": 3, "temperature": 0,
            "messages": [{"role": "user", "content": "Hi"}]})
        assert r.status_code == 200, r.text
        assert r.json()["usage"]["completion_tokens"] >= 1
    finally:
        server.server_close()
        engine.shutdown(timeout=60)


def test_copy_loads_with_int8_weights_and_matches_torchao(model):
    """The saved copy, loaded by Chat's loader, holds torchao int8 tensors and gives the same
    logits as the original quantized in memory by plain transformers + torchao."""
    import torch
    from torchao.quantization import Int8WeightOnlyConfig
    from transformers import AutoModelForCausalLM, TorchAoConfig

    from studio.library.chat_models import chat_entry_for_folder
    from studio.pipelines.chat.loading import LoadOptions, load_chat_model

    [job] = _run([ShrinkRequest(model=str(model), method="int8", eval_tokens=16,
                                speed_tokens=1)])
    assert job.state is JobState.DONE, job.error
    entry = chat_entry_for_folder(job.result.path, "studio")
    loaded = load_chat_model(entry, "cpu", LoadOptions(torch.float32))
    layer = loaded.model.model.layers[0].mlp.up_proj
    assert type(layer.weight).__name__ == "Int8Tensor"
    plain = AutoModelForCausalLM.from_pretrained(
        str(model), dtype="auto", quantization_config=TorchAoConfig(Int8WeightOnlyConfig()))
    ids = torch.tensor([[5, 6, 7, 8, 9]])
    with torch.inference_mode():
        assert torch.equal(loaded.model(ids).logits, plain(ids).logits)


@pytest.mark.parametrize("method", ["int4", "fp8"])
def test_other_methods_make_a_working_copy(model, method):
    [job] = _run([ShrinkRequest(model=str(model), method=method, eval_tokens=16,
                                speed_tokens=1)])
    assert job.state is JobState.DONE, job.error
    assert job.result.path.name == f"tiny-llama-{method}"
    assert _reply(job.result.path).completion_tokens >= 1


def _plan(**kw):
    from studio.pipelines.chat.shrink import plan_shrink

    return plan_shrink(ShrinkRequest(**kw), *_settings_paths())


def test_plan_estimates_the_size_before_loading(model):
    plan = _plan(model=str(model), method="int8")
    assert plan.out_name == "tiny-llama-int8" and plan.layers == 2 * 7  # q k v o gate up down
    assert plan.skipped == ["lm_head"]
    assert 0 < plan.size_estimate < plan.size_before


def test_a_model_in_the_hub_cache_is_named_by_its_repo(tiny_llama_dir, tmp_path, monkeypatch):
    from tests.fixtures.hub_cache import add_to_hub_cache

    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    add_to_hub_cache(tmp_path / "hf", "tiny/llama-chat", tiny_llama_dir)
    plan = _plan(model="tiny/llama-chat", method="int4")
    assert plan.out_name == "llama-chat-int4"
    assert plan.out_path == _settings_paths()[1].models_dir / "llama-chat-int4"


def test_refusals_say_what_to_do(model, tmp_path, monkeypatch):
    import shutil as real_shutil

    from studio.pipelines.chat import shrink

    (model.parent / "taken").mkdir()
    with pytest.raises(UserFacingError, match="already exists"):
        _plan(model=str(model), method="int8", out_name="taken")
    with pytest.raises(UserFacingError, match="cannot be a model name"):
        _plan(model=str(model), method="int8", out_name="../escape")
    with pytest.raises(UserFacingError, match="Unknown method"):
        _plan(model=str(model), method="int2")
    # int4 groups 32 weights: a layer with 48 inputs cannot be split into groups.
    config = json.loads((model / "config.json").read_text())
    odd = tmp_path / "odd"
    real_shutil.copytree(model, odd)
    config.update(hidden_size=48, num_attention_heads=4, num_key_value_heads=2)
    (odd / "config.json").write_text(json.dumps(config))
    with pytest.raises(UserFacingError, match=r"q_proj \(48 inputs, not a multiple of 32\)"):
        _plan(model=str(odd), method="int4")
    # a model already quantized
    quantized = tmp_path / "q"
    real_shutil.copytree(model, quantized)
    config = json.loads((model / "config.json").read_text())
    config["quantization_config"] = {"quant_method": "torchao",
                                     "quant_type": {"default": {"_type": "Int8WeightOnlyConfig"}}}
    (quantized / "config.json").write_text(json.dumps(config))
    with pytest.raises(UserFacingError, match=r"already quantized \(torchao int8\)"):
        _plan(model=str(quantized), method="int8")
    # too little disk: checked before anything is loaded or written
    monkeypatch.setattr(shrink.shutil, "disk_usage",
                        lambda _p: real_shutil._ntuple_diskusage(10**9, 10**9 - 1000, 1000))
    with pytest.raises(UserFacingError, match="Not enough disk space"):
        _plan(model=str(model), method="int8")


def test_gpt2_conv1d_layers_are_named(tmp_path):
    from transformers import GPT2Config, GPT2LMHeadModel

    folder = tmp_path / "gpt2"
    GPT2LMHeadModel(GPT2Config(n_embd=32, n_layer=1, n_head=2, vocab_size=50,
                               n_positions=32)).save_pretrained(folder)
    (folder / "tokenizer.json").write_text("{}")
    with pytest.raises(UserFacingError, match=r"h\.0\.attn\.c_attn \(transformers Conv1D\)"):
        _plan(model=str(folder), method="int8")


class _Progress:
    def __call__(self, *a):
        pass

    def message(self, text):
        pass


def test_cancel_while_measuring_the_copy_keeps_nothing(model, monkeypatch):
    from studio.core.jobs import JobCancelled
    from studio.pipelines.chat import shrink

    seen = []

    def measure(loaded, folder, request, cancel):
        seen.append(folder)
        if len(seen) == 2:  # the copy is saved and loaded: Cancel now
            raise JobCancelled()
        return shrink.Measure(1, 2.0, 3.0, 16)

    monkeypatch.setattr(shrink, "measure", measure)
    with pytest.raises(JobCancelled):
        shrink.ShrinkService(*_settings_paths()).run(
            ShrinkRequest(model=str(model), eval_tokens=16, speed_tokens=1), _Progress(),
            CancelToken())
    assert seen[1].name == "tiny-llama-int8"
    assert sorted(p.name for p in model.parent.iterdir()) == ["tiny-llama"]


def test_a_full_disk_while_saving_leaves_no_partial_folder(model, monkeypatch):
    import errno

    from transformers import PreTrainedModel

    from studio.pipelines.chat import shrink

    def full(self, folder, **kwargs):
        Path(folder).mkdir()
        (Path(folder) / "model.safetensors").write_bytes(b"half")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(PreTrainedModel, "save_pretrained", full)
    service = shrink.ShrinkService(*_settings_paths())
    with pytest.raises(UserFacingError, match="The disk is full: the int8 copy of tiny-llama"):
        service.run(ShrinkRequest(model=str(model), eval_tokens=16, speed_tokens=1),
                    _Progress(), CancelToken())
    assert sorted(p.name for p in model.parent.iterdir()) == ["tiny-llama"]


def test_cli_shrinks_by_name_and_refuses_a_taken_name(model):
    from tests.fixtures.cli_run import studio_in_process

    done = studio_in_process("models", "shrink", "tiny-llama", "--method", "int8", "--json",
                             "--eval-tokens", "16")
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert data["name"] == "tiny-llama-int8" and data["method"] == "int8"
    assert data["after"]["size_bytes"] < data["before"]["size_bytes"]
    again = studio_in_process("models", "shrink", "tiny-llama", "--method", "int8")
    assert again.returncode == 2
    assert "tiny-llama-int8 already exists" in again.stderr
    quantized = studio_in_process("models", "shrink", "tiny-llama-int8", "--out", "x")
    assert quantized.returncode == 2 and "already quantized" in quantized.stderr
    unknown = studio_in_process("models", "shrink", "no-such-model")
    assert unknown.returncode == 2
