"""Document collections through ``studio serve``: ``GET /v1/collections``, a chat completion
with ``studio_collection`` answering from the collection's passages with ``studio_citations``
(plain and streamed), and OpenAI-shaped errors naming the field. The tiny Llama through the real
engine, the FastAPI app in-process (httpx's ASGI transport)."""

from __future__ import annotations

import json
import shutil

import pytest

from studio.core.config import Settings, default_paths
from studio.pipelines.chat import documents as docs
from studio.pipelines.chat.documents import DocumentIndex
from studio.pipelines.chat.store import ConversationStore
from studio.pipelines.services import build_engine
from studio.server.app import make_server
from studio.server.catalog import CHAT, Catalog, ServedModel
from studio.server.documents import ServedDocuments
from tests.fixtures.asgi import asgi_call as call
from tests.test_chat_docs import BREAD, FOXES
from tests.test_chat_docs_docx import write_docx

QUESTION = [{"role": "user", "content": "What tonnage is the Albatross?"}]


@pytest.fixture(scope="module")
def servers(tiny_llama_dir, tmp_path_factory):
    folder = tmp_path_factory.mktemp("served-docs")
    database = folder / "studio.db"
    store = ConversationStore(database)
    index = DocumentIndex(store)
    index.add(index.collection("harbour"), [write_docx(folder / "harbour.docx")])
    (folder / "kitchen").mkdir()
    (folder / "kitchen" / "bread.txt").write_text(BREAD, encoding="utf-8")
    (folder / "kitchen" / "foxes.md").write_text(FOXES, encoding="utf-8")
    index.add(index.collection("kitchen"), [folder / "kitchen"])
    index.collection("empty")
    store.close()
    model = shutil.copytree(tiny_llama_dir, folder / "tiny-llama")  # with room for passages:
    config = json.loads((model / "config.json").read_text())  # rotary positions, no weights
    (model / "config.json").write_text(json.dumps(config | {"max_position_embeddings": 1024}))
    engine = build_engine(lambda: Settings(device="cpu"), default_paths)
    catalog = Catalog([ServedModel("tiny-chat", CHAT, str(model))])
    with_docs = make_server("127.0.0.1", 0, engine, catalog,
                            documents=ServedDocuments(database))
    without = make_server("127.0.0.1", 0, engine, catalog)
    yield with_docs, without, database
    with_docs.server_close()
    without.server_close()
    engine.shutdown(timeout=120)


def _chat(server, **fields):
    return call(server, "POST", "/v1/chat/completions",
                json={"model": "tiny-chat", "max_tokens": 3, "temperature": 0,
                      "messages": QUESTION, **fields})


def test_collections_are_listed(servers):
    with_docs, without, _ = servers
    r = call(with_docs, "GET", "/v1/collections")
    assert r.status_code == 200
    assert r.json() == {"object": "list", "data": [
        {"id": "empty", "object": "collection", "files": 0, "passages": 0},
        {"id": "harbour", "object": "collection", "files": 1, "passages": 1},
        {"id": "kitchen", "object": "collection", "files": 2, "passages": 2}]}
    assert call(without, "GET", "/v1/collections").json() == {"object": "list", "data": []}


def test_a_reply_from_a_collection_carries_its_citations(servers):
    with_docs, _, database = servers
    r = _chat(with_docs, studio_collection="harbour")
    assert r.status_code == 200, r.text
    cited = r.json()["studio_citations"]
    assert [(c["index"], c["source"], c["file"], c["page"]) for c in cited] == [
        (1, "harbour.docx", "harbour.docx", None)]
    assert "Albatross | 4200" in cited[0]["text"] and str(database.parent) not in r.text
    # the model was asked exactly what the window asks: the same reply and prompt size
    store = ConversationStore(database)
    grounded, _ = docs.ground(DocumentIndex(store), [DocumentIndex(store).collection("harbour")],
                              QUESTION)
    store.close()
    plain = _chat(with_docs, messages=grounded).json()
    assert "studio_citations" not in plain
    assert r.json()["choices"][0]["message"] == plain["choices"][0]["message"]
    assert r.json()["usage"] == plain["usage"]

    off = _chat(with_docs, studio_collection="kitchen").json()  # nothing relevant there
    assert off["studio_citations"] == []

    stream = _chat(with_docs, studio_collection="harbour", stream=True)
    chunks = [json.loads(line[6:]) for line in stream.text.splitlines()
              if line.startswith("data: {")]
    assert chunks[0]["studio_citations"] == cited
    assert all("studio_citations" not in c for c in chunks[1:])
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks)
    assert text == plain["choices"][0]["message"]["content"]


@pytest.mark.parametrize(("server", "value", "status", "code"), [
    (0, "atlantis", 404, "collection_not_found"),
    (0, "empty", 400, "collection_empty"),
    (0, 7, 400, None),
    (0, "   ", 400, None),
    (1, "harbour", 400, "collections_unavailable")])
def test_bad_collections_get_errors_naming_the_field(servers, server, value, status, code):
    r = _chat(servers[server], studio_collection=value)
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert error["param"] == "studio_collection" and error["type"] == "invalid_request_error"
    if code is not None:
        assert error["code"] == code
    if value == "atlantis":
        assert "empty, harbour, kitchen" in error["message"]
