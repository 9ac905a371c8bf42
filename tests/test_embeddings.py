"""Textual-inversion embeddings: a library kind, applied when their name is in the prompt."""

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
    _, vecs = embeddings
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
    tok, enc = pipe.tokenizer, pipe.text_encoder
    rows = enc.get_input_embeddings().weight
    for token, vector in (("MyStyle", vecs["MyStyle"][0]), ("MyStyle_1", vecs["MyStyle"][1]),
                          ("badhands", vecs["badhands"][0]), ("cat-toy", vecs["cat-toy"])):
        assert torch.equal(rows[tok.convert_tokens_to_ids(token)], vector), token
    _, without = run("a portrait, mystylish")  # not the name: nothing applies
    assert not np.array_equal(before, styled)
    _, again = run("a portrait")  # unloaded: the same image as before any embedding
    assert np.array_equal(before, again)
    assert not np.array_equal(without, styled)
