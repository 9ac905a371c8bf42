"""``studio serve`` under attack (issue 20 items 2, 3, 4, 10 and 14's server parts): each test is
one attack, answered with a 4xx sentence before any job is queued.

In-process through httpx's ASGI transport (no socket, no uvicorn) except the test that needs
uvicorn's own HTTP parsing (``Content-Length: -1``, a chunked body that never ends)."""

from __future__ import annotations

import json
import socket
import threading

import pytest
from PIL import Image, PngImagePlugin

from studio.cli import main as cli_main
from studio.core.config import Settings, default_paths
from studio.core.requests import GeneratedImage
from studio.pipelines.services import build_engine
from studio.server.app import make_server
from studio.server.catalog import CHAT, IMAGE, Catalog, ServedModel
from studio.server.guard import MAX_BODY
from studio.server.limits import Limits
from tests.fixtures.asgi import asgi_call, run_async

CHAT_BODY = {"model": "tiny-chat", "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture
def served(tmp_path):
    """A server (bound, not serving) whose engine records every job it is given."""
    models = tmp_path / "secret-models"
    calls: list = []

    def chat(request, progress, cancel):
        from studio.pipelines.chat.types import ChatReply

        calls.append(request)
        return ChatReply("ok", 1, 1, "stop")

    def txt2img(request, progress, cancel):
        calls.append(request)
        info = PngImagePlugin.PngInfo()
        info.add_text("parameters", f"a cat\nSteps: 1, Model: {request.model}")
        info.add_text("studio", json.dumps({"model": request.model}))
        path = tmp_path / "out.png"
        Image.new("RGB", (request.width, request.height)).save(path, pnginfo=info)
        return [GeneratedImage(request=request, seed=request.seed, index=0, path=path)]

    engine = build_engine(Settings, default_paths, handlers={"chat": chat, "txt2img": txt2img})
    catalog = Catalog([ServedModel("tiny-chat", CHAT, str(models / "tiny-chat")),
                       ServedModel("tiny-sd", IMAGE, str(models / "tiny-sd"))])
    servers = []

    def start(**options):
        server = make_server("127.0.0.1", 0, engine, catalog, **options)
        servers.append(server)
        return server

    yield start, calls, models
    for server in servers:
        server.server_close()
    engine.shutdown(timeout=60)


call = asgi_call


def error(response) -> dict:
    return response.json()["error"]


# -- item 2: CSRF and DNS rebinding --------------------------------------------------------------
def assert_refused(server, header: str, value: str, flag: str) -> None:
    """A chat request with ``header: value`` gets a 403 naming ``flag VALUE`` as the way out."""
    r = call(server, "POST", "/v1/chat/completions", json=CHAT_BODY, headers={header: value})
    assert r.status_code == 403 and f"{flag} {value}" in error(r)["message"]


def test_a_foreign_host_is_refused(served):
    start, calls, _ = served
    server = start()
    assert_refused(server, "Host", "attacker.example", "--allow-host")
    assert call(server, "GET", "/v1/models", headers={"Host": "localhost:8000"}).status_code == 200
    allowed = start(allow_hosts=("studio.lan",))
    assert call(allowed, "GET", "/v1/models", headers={"Host": "studio.lan"}).status_code == 200
    assert not calls


def test_a_cross_site_origin_is_refused_and_cors_is_off_unless_asked(served):
    start, calls, _ = served
    server = start()
    assert_refused(server, "Origin", "https://evil.example", "--cors-origin")
    r = call(server, "GET", "/v1/models", headers={"Origin": "http://localhost:3000"})
    assert r.status_code == 200 and "access-control-allow-origin" not in r.headers
    opened = start(cors_origins=("https://app.example",))
    r = call(opened, "GET", "/v1/models", headers={"Origin": "https://app.example"})
    assert r.headers["access-control-allow-origin"] == "https://app.example"
    assert not calls


def test_a_text_plain_body_is_refused_unread(served):
    start, calls, _ = served
    r = call(start(), "POST", "/v1/chat/completions", content=json.dumps(CHAT_BODY),
             headers={"Content-Type": "text/plain"})
    assert r.status_code == 415 and "application/json" in error(r)["message"]
    assert not calls


# -- item 3: the body limit ----------------------------------------------------------------------
def test_an_endless_chunked_body_is_cut_at_the_limit_not_read(served):
    start, calls, _ = served
    sent = 0
    chunk = b" " * 2**20

    async def endless():
        nonlocal sent
        for _ in range(200):  # 200 MiB if it were all read
            sent += len(chunk)
            yield chunk

    r = call(start(), "POST", "/v1/chat/completions", content=endless(),
             headers={"Content-Type": "application/json"})
    assert r.status_code == 413 and "MiB" in error(r)["message"]
    assert sent <= MAX_BODY + 2 * len(chunk)  # read no further than the limit
    assert not calls


def test_content_length_minus_one_and_endless_chunks_on_a_real_socket(served):
    """uvicorn's own parser: a negative length is refused, and an endless chunked body is cut
    at the limit (the server stops reading: the client cannot push the rest)."""
    start, calls, _ = served
    server = start()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    host, port = server.server_address[:2]
    try:
        with socket.create_connection((host, port), timeout=60) as s:
            s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                      b"Content-Type: application/json\r\nContent-Length: -1\r\n\r\n"
                      + json.dumps(CHAT_BODY).encode())
            status = s.recv(4096).split(b"\r\n", 1)[0]
        assert status.split()[1] in (b"400", b"413"), status
        with socket.create_connection((host, port), timeout=60) as s:
            s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                      b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")
            piece = b"100000\r\n" + b" " * 2**20 + b"\r\n"
            sent, answer = 0, b""
            try:
                while sent < 64 * 2**20:  # 4× the limit
                    s.sendall(piece)
                    sent += 2**20
            except OSError:
                pass  # the server closed the connection: it read no more
            try:
                answer = s.recv(4096)
            except OSError:
                pass
        assert b" 413 " in answer.split(b"\r\n", 1)[0] or sent < 64 * 2**20, answer[:80]
    finally:
        server.shutdown()
    assert not calls


# -- item 4: work bounded before the queue -------------------------------------------------------
def test_a_huge_prompt_is_a_400_naming_the_token_limit(served):
    start, calls, _ = served
    body = {**CHAT_BODY, "messages": [{"role": "user", "content": "word " * 400_000}]}
    r = call(start(), "POST", "/v1/chat/completions", json=body)
    assert r.status_code == 400
    message = error(r)["message"]
    assert "32,768 tokens" in message and "--max-prompt-tokens" in message
    r = call(start(limits=Limits(max_prompt_tokens=8)), "POST", "/v1/images/generations",
             json={"model": "tiny-sd", "prompt": "a cat " * 20})
    assert r.status_code == 400 and error(r)["code"] == "prompt_too_long"
    assert not calls


def test_a_huge_image_request_is_a_400_before_the_queue(served):
    start, calls, _ = served
    r = call(start(), "POST", "/v1/images/generations",
             json={"model": "tiny-sd", "prompt": "a cat", "size": "4096x4096", "n": 10,
                   "steps": 500})
    assert r.status_code == 400 and error(r)["param"] == "size"
    r = call(start(limits=Limits(max_pixel_steps=64 * 64 * 10)), "POST",
             "/v1/images/generations",
             json={"model": "tiny-sd", "prompt": "a cat", "size": "64x64", "steps": 20})
    assert r.status_code == 400 and "--max-pixel-steps" in error(r)["message"]
    assert not calls


# -- item 10: a LoRA path in a served prompt tells nothing ---------------------------------------
def test_a_lora_path_gets_the_same_answer_whether_the_file_exists_or_not(served, tmp_path):
    start, calls, _ = served
    server = start()
    real = tmp_path / "real.safetensors"
    real.write_bytes(b"x")
    answers = []
    for path in (real, tmp_path / "missing.safetensors"):
        r = call(server, "POST", "/v1/images/generations",
                 json={"model": "tiny-sd", "prompt": f"a cat <lora:{path}:1>"})
        answers.append((r.status_code, error(r)["code"],
                        error(r)["message"].replace(str(path), "PATH")))
    assert answers[0] == answers[1] and answers[0][0] == 400
    assert not calls


# -- item 14: hostile JSON, paths in served PNGs --------------------------------------------------
@pytest.mark.parametrize("raw", [b"[" * 100_000 + b"]" * 100_000,
                                 b'{"model": "tiny-chat", "messages": [{"role": "user", '
                                 b'"content": "\\ud800"}]}'])
def test_deep_nesting_and_lone_surrogates_are_400(served, raw):
    start, calls, _ = served
    r = call(start(), "POST", "/v1/chat/completions", content=raw,
             headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and "JSON" in error(r)["message"]
    assert not calls


def test_served_png_metadata_names_the_model_not_its_path(served):
    import base64
    import io

    start, calls, models = served
    r = call(start(), "POST", "/v1/images/generations",
             json={"model": "tiny-sd", "prompt": "a cat", "size": "64x64", "steps": 1})
    assert r.status_code == 200 and len(calls) == 1
    png = base64.b64decode(r.json()["data"][0]["b64_json"])
    assert str(models).encode() not in png
    assert "Model: tiny-sd" in Image.open(io.BytesIO(png)).text["parameters"]


# -- the CLI: secrets out of ps, clear sentences for bad values ----------------------------------
@pytest.mark.parametrize("args, needle", [
    (["--max-prompt-tokens", "0"], "--max-prompt-tokens must be a positive whole number"),
    (["--max-pixel-steps", "-5"], "--max-pixel-steps must be a positive whole number"),
    (["--cors-origin", "evil.example"], "is not an origin"),
    (["--allow-host", "http://x/"], "is not a host name"),
    (["--api-key-file", "/nonexistent/key"], "--api-key-file /nonexistent/key: cannot read"),
])
def test_serve_flags_refuse_bad_values_with_a_sentence(args, needle, capsys):
    assert cli_main(["serve", *args]) == 2
    assert needle in capsys.readouterr().err


def test_models_download_reads_its_token_from_a_file(tmp_path, capsys):
    assert cli_main(["models", "download", "org/repo", "--token-file",
                     str(tmp_path / "none")]) == 2
    assert f"--token-file {tmp_path / 'none'}: cannot read it" in capsys.readouterr().err


def test_the_api_key_comes_from_a_file_or_the_environment(tmp_path, monkeypatch):
    from studio.cli.common import read_secret

    key_file = tmp_path / "key"
    key_file.write_text("sk-from-file\n", encoding="utf-8")
    monkeypatch.setenv("STUDIO_API_KEY", "sk-from-env")
    envs = ("STUDIO_API_KEY",)
    assert read_secret(None, key_file, envs, "--api-key") == "sk-from-file"
    assert read_secret(None, None, envs, "--api-key") == "sk-from-env"
    monkeypatch.delenv("STUDIO_API_KEY")
    assert read_secret(None, None, envs, "--api-key") == ""
    (tmp_path / "empty").write_text("\n", encoding="utf-8")
    with pytest.raises(Exception, match="is empty"):
        read_secret(None, tmp_path / "empty", envs, "--api-key")


# -- item 14: a served openai: model's errors never show credentials -----------------------------
def _echoing_upstream(status: int) -> tuple[socket.socket, threading.Thread]:
    """An upstream that answers every request with ``status`` and an error quoting the request's
    Authorization header and a proxy URL with a password, as careless gateways do."""
    listener = socket.create_server(("127.0.0.1", 0))

    def answer() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with conn:
                head = b""
                while b"\r\n\r\n" not in head:
                    got = conn.recv(65536)
                    if not got:
                        break
                    head += got
                auth = next((line.split(b":", 1)[1].strip().decode() for line in
                             head.split(b"\r\n") if line.lower().startswith(b"authorization:")),
                            "")
                body = json.dumps({"error": {"message": f"via http://proxyuser:proxypass@"
                                                        f"gw.example:3128 with {auth}"}}).encode()
                conn.sendall(b"HTTP/1.1 %d Bad\r\nContent-Type: application/json\r\n"
                             b"Content-Length: %d\r\nConnection: close\r\n\r\n"
                             % (status, len(body)) + body)

    thread = threading.Thread(target=answer, daemon=True)
    thread.start()
    return listener, thread


@pytest.mark.parametrize("status", [401, 502])
def test_remote_model_errors_show_no_password_and_no_key(status):
    from studio.core.jobs import UserFacingError
    from studio.pipelines.chat.remote import RemoteChatBackend
    from studio.pipelines.chat.remote_async import AsyncRemoteChat

    key = "sk-very-secret-key-123"
    listener, _ = _echoing_upstream(status)
    port = listener.getsockname()[1]
    try:
        backend = RemoteChatBackend(f"http://alice:wonderland@127.0.0.1:{port}/v1", "m",
                                    api_key=key)
        messages = []
        for attempt in (backend.list_models,
                        lambda: run_async(AsyncRemoteChat(backend).list_models())):
            with pytest.raises(UserFacingError) as caught:
                attempt()
            messages.append(str(caught.value))
    finally:
        listener.close()
    refused = RemoteChatBackend("http://alice:wonderland@127.0.0.1:1/v1", "m", api_key=key)
    with pytest.raises(UserFacingError) as caught:
        refused.list_models()
    messages.append(str(caught.value))
    for message in messages:
        assert "127.0.0.1" in message, message
        for secret in ("wonderland", "alice:", "proxypass", "proxyuser", key):
            assert secret not in message, message


def test_docs_work_offline_and_list_every_route(served):
    start, _, _ = served
    server = start()
    page = call(server, "GET", "/docs")
    assert page.status_code == 200 and "<script" not in page.text  # nothing from a CDN
    paths = call(server, "GET", "/openapi.json").json()["paths"]
    for route in ("/v1/models", "/v1/chat/completions", "/v1/images/generations",
                  "/v1/images/edits", "/v1/embeddings"):
        assert route in paths and route in page.text
