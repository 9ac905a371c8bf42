"""Textual-inversion embeddings: a library kind, applied when their name is in the prompt; and
per-step prompts (editing, alternation) through the batch loop for SDXL and img2img."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from studio.core.config import Settings, default_paths
from studio.core.jobs import CancelToken
from studio.core.requests import Txt2ImgRequest
from studio.library.catalog import list_models
from studio.library.classify import classify_file
from studio.pipelines.diffusion.embeddings import embedding_vectors
from studio.pipelines.diffusion.txt2img import Txt2ImgService
from tests.fixtures.sinks import RecordingSink as Sink


@pytest.fixture()
def embeddings():
    """An A1111 .pt (two vectors), an A1111 .safetensors and a diffusers learned_embeds."""
    folder = default_paths().models_dir / "embeddings"
    (folder / "cat-toy").mkdir(parents=True, exist_ok=True)
    torch.manual_seed(1)
    vecs = {"MyStyle": torch.randn(2, 32), "badhands": torch.randn(1, 32),
            "cat-toy": torch.randn(32)}
    torch.save({"string_to_param": {"*": vecs["MyStyle"]}, "name": "MyStyle", "step": 500},
               folder / "MyStyle.pt")
    save_file({"emb_params": vecs["badhands"]}, folder / "badhands.safetensors")
    save_file({"<cat-toy>": vecs["cat-toy"]}, folder / "cat-toy" / "learned_embeds.safetensors")
    return folder, vecs


def test_embeddings_are_a_library_kind(embeddings):
    folder, _ = embeddings
    assert classify_file(folder / "MyStyle.pt").kind == "embedding"
    assert classify_file(folder / "badhands.safetensors").kind == "embedding"
    found = {e.name: e for e in list_models(Settings(), default_paths()) if e.kind == "embedding"}
    assert set(found) >= {"MyStyle", "badhands", "cat-toy"}
    assert found["badhands"].kind_title == "Textual inversion"
    vectors = embedding_vectors(folder / "MyStyle.pt")["clip_l"]
    assert torch.equal(vectors, embeddings[1]["MyStyle"])


def test_named_embeddings_apply_and_unload(embeddings, tiny_sd15_dir):
    folder, vecs = embeddings
    settings = Settings(device="cpu", precision="fp32", preview_mode="off")
    service = Txt2ImgService(lambda: settings, default_paths)

    def run(prompt, negative=""):
        req = Txt2ImgRequest(model=str(tiny_sd15_dir), prompt=prompt, negative_prompt=negative,
                             steps=1, width=64, height=64, seed=4)
        (result,) = service.run(req, Sink(), CancelToken())
        return result, np.asarray(result.image)

    _, before = run("a portrait")
    from studio.library.models import resolve_model

    pipe = service.cache.get(resolve_model(str(tiny_sd15_dir), settings, default_paths()),
                             "cpu", torch.float32)
    result, styled = run("a portrait, (mystyle:1.2)", negative="badhands, cat-toy")
    assert result.warnings == []
    assert result.parameters.startswith("a portrait, (mystyle:1.2)")  # stored as typed
    import hashlib

    from studio.media.metadata import parse_parameters

    digest = hashlib.sha256((folder / "badhands.safetensors").read_bytes()).hexdigest()[:12]
    ti = parse_parameters(result.parameters)["TI hashes"]
    assert f"badhands: {digest}" in ti and "MyStyle: " in ti and "cat-toy: " in ti
    tok, enc = pipe.tokenizer, pipe.text_encoder
    rows = enc.get_input_embeddings().weight
    for token, vector in (("mystyle", vecs["MyStyle"][0]), ("mystyle_1", vecs["MyStyle"][1]),
                          ("badhands", vecs["badhands"][0]), ("cat-toy", vecs["cat-toy"])):
        assert torch.equal(rows[tok.convert_tokens_to_ids(token)], vector), token
    # A two-vector embedding that would straddle two chunks starts the next one (as A1111).
    from studio.pipelines.diffusion.prompts import weighted_chunks

    chunks = weighted_chunks(pipe, tok, "a " * 74 + "mystyle")  # as spell_as_named writes it
    assert [len(ids) for ids, _ in chunks] == [74, 2]
    # Any case names it; both vectors carry the weight written around the name.
    from studio.pipelines.diffusion.embeddings import EmbeddingPlan, spell_as_named

    text = spell_as_named("a (MYSTYLE:1.2)", EmbeddingPlan({"MyStyle": folder / "MyStyle.pt"}))
    assert text == "a (mystyle:1.2)"
    ids, weights = weighted_chunks(pipe, tok, text)[0]
    assert ids[-2:] == tok.convert_tokens_to_ids(["mystyle", "mystyle_1"])
    assert weights[-2:] == [1.2, 1.2]
    _, without = run("a portrait, mystylish")  # not the name: nothing applies
    assert not np.array_equal(before, styled)
    _, again = run("a portrait")  # unloaded: the same image as before any embedding
    assert np.array_equal(before, again)
    assert not np.array_equal(without, styled)


def _record_unet(pipe):
    seen = []

    def hook(module, args, kwargs):
        added = kwargs.get("added_cond_kwargs") or {}
        seen.append((kwargs["encoder_hidden_states"].clone(),
                     added["text_embeds"].clone() if "text_embeds" in added else None))

    return seen, pipe.unet.register_forward_pre_hook(hook, with_kwargs=True)


def test_sdxl_embedding_and_alternation_per_step(tiny_sdxl_dir):
    from studio.library.models import resolve_model
    from studio.pipelines.diffusion.prompts import prepare_prompt_inputs

    folder = default_paths().models_dir / "embeddings"
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(2)
    clip_l, clip_g = torch.randn(1, 32), torch.randn(1, 64)
    save_file({"clip_l": clip_l, "clip_g": clip_g}, folder / "xlstyle.safetensors")
    assert classify_file(folder / "xlstyle.safetensors").family == "sdxl"

    settings = Settings(device="cpu", precision="fp32", preview_mode="off")
    service = Txt2ImgService(lambda: settings, default_paths)
    pipe = service.cache.get(resolve_model(str(tiny_sdxl_dir), settings, default_paths()),
                             "cpu", torch.float32)
    seen, handle = _record_unet(pipe)
    req = Txt2ImgRequest(model=str(tiny_sdxl_dir), prompt="[xlstyle|a dog]", steps=3, width=64,
                         height=64, scheduler="euler")
    try:
        (result,) = service.run(req, Sink(), CancelToken())
    finally:
        handle.remove()
    assert result.warnings == []
    for tok, enc, vec in ((pipe.tokenizer, pipe.text_encoder, clip_l),
                          (pipe.tokenizer_2, pipe.text_encoder_2, clip_g)):
        assert torch.equal(enc.get_input_embeddings().weight[tok.convert_tokens_to_ids("xlstyle")],
                           vec[0])
    # A1111's alternation over 3 steps: step indices 0, 1, 2 → xlstyle, xlstyle, a dog.
    style = prepare_prompt_inputs(pipe, "sdxl", "xlstyle", "", "cpu").kwargs
    dog = prepare_prompt_inputs(pipe, "sdxl", "a dog", "", "cpu").kwargs
    assert len(seen) == 3
    for step, expected in ((0, style), (1, style), (2, dog)):
        embeds, pooled = seen[step]
        want = expected.get("prompt_embeds")
        if want is None:
            want, _, want_pooled, _ = pipe.encode_prompt(expected["prompt"], device="cpu",
                                                         do_classifier_free_guidance=False)
        else:
            want_pooled = expected["pooled_prompt_embeds"]
        assert torch.equal(embeds[1:], want) and torch.equal(pooled[1:], want_pooled), step


def test_img2img_prompt_editing_through_the_batch_loop(tiny_sd15_dir, tmp_path):
    from PIL import Image

    from studio.core.requests import Img2ImgRequest
    from studio.library.models import resolve_model
    from studio.pipelines.diffusion.img2img import Img2ImgService

    source = tmp_path / "in.png"
    Image.new("RGB", (64, 64), (120, 30, 200)).save(source)
    settings = Settings(device="cpu", precision="fp32", preview_mode="off")
    service = Img2ImgService(lambda: settings, default_paths)
    pipe = service.cache.get(resolve_model(str(tiny_sd15_dir), settings, default_paths()),
                             "cpu", torch.float32)
    seen, handle = _record_unet(pipe)
    req = Img2ImgRequest(model=str(tiny_sd15_dir), image=str(source), prompt="a [cat:dog:0]",
                         strength=1.0, steps=2, scheduler="euler")
    try:
        service.run(req, Sink(), CancelToken())
    finally:
        handle.remove()
    # when 0: dog from the first step on (A1111 drops a step of 0 from the schedule).
    dog = pipe.encode_prompt("a dog", "cpu", 1, False)[0]
    assert len(seen) == 2 and all(torch.equal(s[0][1:], dog) for s in seen)
    req = Img2ImgRequest(model=str(tiny_sd15_dir), image=str(source), prompt="[a cat|a dog]",
                         strength=1.0, steps=3, scheduler="euler")
    seen, handle = _record_unet(pipe)
    try:
        service.run(req, Sink(), CancelToken())
    finally:
        handle.remove()
    cat = pipe.encode_prompt("a cat", "cpu", 1, False)[0]
    assert [torch.equal(s[0][1:], cat) for s in seen] == [True, True, False]
    assert torch.equal(seen[2][0][1:], dog)  # swapped in by the step callback
