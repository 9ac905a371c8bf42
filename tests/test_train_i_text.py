"""Text lessons (``tokenizer``, ``char-rnn``, ``gpt``) and their data: the shipped text, the
student's own file with every kind of bad input, a tokenizer that grows live and compares with a
chat model's, two language models that are deterministic and resume exactly, and the trained
GPT exported into the library, where Chat generates from it what plain transformers does."""

from __future__ import annotations

import io
import shutil

import pytest
import torch

from studio.pipelines.train import text_data
from studio.pipelines.train.base import InvalidParameter
from studio.pipelines.train.text_lessons import (
    CharRNNTrainer,
    GPTTrainer,
    TokenizerLesson,
)
from tests.fixtures.torch_threads import one_torch_thread  # noqa: F401

#: a text of its own for the tests: small, so tokenizers train and encode it in milliseconds
WORDS = ("the quick brown fox jumps over the lazy dog while the king speaks to the queen and "
         "the people of the town listen to the song of the river ")


@pytest.fixture(scope="module")
def text_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("text") / "mine.txt"
    path.write_text((WORDS * 40 + "\n") * 2, encoding="utf-8")
    return str(path)


def lm(cls, text_file, seed=0, **overrides):
    config = {"dataset": "file", "text_file": text_file, "context": 16, "batch_size": 4,
              "width": 32, "sample_every": 3, "sample_length": 12, **overrides}
    if cls is GPTTrainer:
        config.setdefault("vocab_size", 300)
        config.setdefault("heads", 2)
    return cls(config=config, seed=seed)


# -- data ----------------------------------------------------------------------------------------
def test_the_shipped_text_is_shakespeare_with_its_licence_noted():
    corpus = text_data.load_text("shakespeare")
    assert 300_000 < len(corpus.text) < 500_000 and "CORIOLANUS" in corpus.text
    note = (text_data.SHAKESPEARE.parent / "README.md").read_text(encoding="utf-8")
    assert "public domain" in note and "karpathy/char-rnn" in note


@pytest.mark.parametrize("case,message", [
    ("unset", "Choose your .txt file first"),
    ("missing", "does not exist or is not a file"),
    ("empty", "is empty: put some text in it"),
    ("binary", "is not a text file .*binary"),
    ("short", "holds only 11 characters; .* at least 2,000"),
])
def test_bad_text_files_get_a_sentence(tmp_path, case, message):
    path = tmp_path / f"{case}.txt"
    if case == "empty":
        path.write_text("  \n")
    elif case == "binary":
        path.write_bytes(b"PK\x03\x04\x00\x00" * 500)
    elif case == "short":
        path.write_text("Hello world")
    name = "" if case == "unset" else str(path)
    for cls in (TokenizerLesson, CharRNNTrainer, GPTTrainer):
        with pytest.raises(InvalidParameter, match=message):
            cls.validate_config({"dataset": "file", "text_file": name})


def test_a_vocabulary_larger_than_the_text_supports_is_refused(text_file):
    with pytest.raises(InvalidParameter, match=r"supports a vocabulary of only \d+ tokens"):
        lm(GPTTrainer, text_file, vocab_size=5000)


# -- the tokenizer -------------------------------------------------------------------------------
def test_tokenizer_grows_its_vocabulary_and_words_take_fewer_tokens(text_file, tiny_llama_dir):
    lesson = TokenizerLesson(config={"dataset": "file", "text_file": text_file,
                                     "merges_per_step": 8, "sentence": "the quick king"})
    metrics = [lesson.step() for _ in range(3)]
    assert [m["vocab"] for m in metrics] == [264, 272, 280]
    assert metrics[0]["loss"] > metrics[1]["loss"] > metrics[2]["loss"]
    snap = lesson.snapshot()
    assert snap["history"][:, 0].tolist() == [256, 264, 272, 280]
    number, a, b, made = snap["merges"][0]  # the newest merge first
    assert number == 24 and made == text_data.readable(a + b)
    assert "".join(snap["pieces"]) == "the quick king" and len(snap["pieces"]) < 14
    trained = text_data.new_bpe(280, lesson.corpus.text)  # training to 280 gives the same
    assert text_data.merges(trained) == text_data.merges(lesson.tokenizer)
    assert trained.get_vocab() == lesson.tokenizer.get_vocab()

    lesson.set_param("merges_per_step", 4)
    assert lesson.step()["vocab"] == 284
    lesson.set_param("compare", str(tiny_llama_dir))
    snap = lesson.snapshot()
    assert snap["compare_name"] == tiny_llama_dir.name and snap["compare_note"] == ""
    assert "".join(snap["compare_pieces"]).strip() == "the quick king"
    lesson.set_param("compare", str(tiny_llama_dir.parent))
    assert "has no tokenizer files" in lesson.snapshot()["compare_note"]
    lesson.set_param("compare", "no-such-model")  # a name in the library, which has none
    assert "no-such-model" in lesson.snapshot()["compare_note"]
    assert lesson.snapshot()["compare_pieces"] == []
    from studio.core.config import default_paths

    shutil.copytree(tiny_llama_dir, default_paths().models_dir / "tiny-chat")
    lesson.set_param("compare", "tiny-chat")  # by its name, as Chat lists it
    assert "".join(lesson.snapshot()["compare_pieces"]).strip() == "the quick king"


def test_tokenizer_resumes_where_it_was(text_file):
    a = TokenizerLesson(config={"dataset": "file", "text_file": text_file})
    a.step()
    b = TokenizerLesson(config={"dataset": "file", "text_file": text_file})
    b.load_state_dict(a.state_dict())
    assert b.step() == a.step()


# -- the language models -------------------------------------------------------------------------
@pytest.mark.parametrize("cls", [CharRNNTrainer, GPTTrainer])
def test_language_models_are_deterministic_and_resume_exactly(cls, text_file):
    a, b, c = lm(cls, text_file, seed=5), lm(cls, text_file, seed=5), lm(cls, text_file, seed=6)
    global_torch = torch.get_rng_state()
    ma, mb, mc = [], [], []
    for _ in range(4):
        ma.append(a.step())
        mc.append(c.step())
        mb.append(b.step())
    assert ma == mb and ma != mc
    assert torch.equal(global_torch, torch.get_rng_state())
    assert "val_loss" in ma[0] and a.samples == b.samples and len(a.samples) == 1
    assert a.samples[0][:2] == (3, 0.8) and a.samples[0][2]

    buffer = io.BytesIO()
    torch.save(a.state_dict(), buffer)
    buffer.seek(0)
    resumed = lm(cls, text_file, seed=5)
    resumed.load_state_dict(torch.load(buffer, weights_only=True))
    a.set_param("temperature", 1.3)
    resumed.set_param("temperature", 1.3)
    assert [a.step() for _ in range(2)] == [resumed.step() for _ in range(2)]
    assert a.samples == resumed.samples and a.samples[-1][:2] == (6, 1.3)


def test_gpt_shows_attention_per_head_and_embeddings_in_2d(text_file):
    gpt = lm(GPTTrainer, text_file, layers=2, sentence="the king and the queen")
    gpt.step()
    gpt.set_param("layer", 2)
    snap = gpt.snapshot()
    n = len(snap["tokens"])
    assert "".join(snap["tokens"]) == "the king and the queen"
    assert snap["attention"].shape == (2, n, n) and snap["layer"] == 2
    rows = snap["attention"].sum(-1)
    assert torch.allclose(torch.from_numpy(rows), torch.ones(2, n), atol=1e-5)
    assert float(snap["attention"][0, 0, 1:].max()) == 0.0  # causal: no look ahead
    assert snap["embeddings"].shape == (len(snap["embedding_labels"]), 2)


# -- train, then use: the GPT in Chat ------------------------------------------------------------
def test_exported_gpt_chats_by_its_name_as_plain_transformers_generates(text_file):
    from transformers import AutoTokenizer, GPT2LMHeadModel

    from studio.core.config import Settings, default_paths
    from studio.core.jobs import CancelToken
    from studio.library.resolve import resolve_named
    from studio.pipelines.chat.local import LocalChatBackend
    from studio.pipelines.chat.types import ChatRequest
    from studio.pipelines.train.export import export_trainer

    gpt = lm(GPTTrainer, text_file)
    for _ in range(3):
        gpt.step()
    paths, settings = default_paths(), Settings(device="cpu")  # STUDIO_HOME: the test's own
    done = export_trainer(gpt, paths.models_dir, "my-gpt")
    assert done.path == paths.models_dir / "chat" / "my-gpt" and "Chat lists it" in done.message
    # what `studio chat --model my-gpt --prompt "the king" --temperature 0` does
    model_spec = resolve_named("my-gpt", "chat", settings, paths, command="studio chat").spec
    backend = LocalChatBackend(lambda: settings, lambda: paths)
    reply = backend.generate(ChatRequest(model=model_spec, temperature=0, max_new_tokens=10,
                                         messages=[{"role": "user", "content": "the king"}]),
                             CancelToken())
    assert reply.warnings == []  # it has its own (plain continuation) template

    model = GPT2LMHeadModel.from_pretrained(str(done.path))
    tok = AutoTokenizer.from_pretrained(str(done.path))
    ids = tok("the king", return_tensors="pt")["input_ids"]
    with torch.inference_mode():
        plain = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids),
                               max_new_tokens=10, do_sample=False)
    assert reply.prompt_tokens == ids.shape[1] and reply.completion_tokens == 10
    assert reply.text == tok.decode(plain[0, ids.shape[1]:])
    assert torch.equal(model.transformer.wte.weight, gpt.model.transformer.wte.weight)


def test_studio_train_gpt_export_then_chat_by_name(text_file, capsys):
    from studio.cli import _main
    from studio.core.config import default_paths

    args = ["train", "gpt", "--steps", "2", "--set", "dataset=file", "--set",
            f"text_file={text_file}", "--set", "context=16", "--set", "batch_size=2",
            "--set", "width=16", "--set", "heads=2", "--set", "vocab_size=260"]
    assert _main(args + ["--export", "bard"]) == 0
    assert "Exported bard: Chat lists it" in capsys.readouterr().err
    assert (default_paths().models_dir / "chat" / "bard" / "model.safetensors").is_file()
    assert _main(args + ["--export", "bard"]) == 2  # the name is taken: refused before training
    assert "exists already" in capsys.readouterr().err
    assert _main(["train", "char-rnn", "--steps", "1", "--export", "x"]) == 2
    assert "--export is for cyclegan, dcgan, ddpm, gpt, lora-chat, dpo" in capsys.readouterr().err
    assert _main(["chat", "--model", "bard", "--prompt", "the king", "--temperature", "0",
                  "--max-new-tokens", "4"]) == 0
    assert capsys.readouterr().out.rstrip("\n")  # four tokens (spaces, after two steps)


def test_export_to_chat_from_the_runs_tab_of_the_window(main_window, qtbot, monkeypatch,
                                                         text_file):
    from studio.core.config import default_paths
    from studio.library.chat_models import find_chat_models
    from studio.ui.panels.train.panel import TrainPanel

    monkeypatch.setattr(TrainPanel, "session_in_process", False)  # a thread: no torch start-up
    main_window.resize(1480, 920)
    main_window.show()
    panel = main_window.show_workspace("train")
    qtbot.waitUntil(lambda: panel.frames_drawn >= 1, timeout=60000)
    small = {"dataset": "file", "text_file": text_file, "context": 16, "batch_size": 2,
             "width": 16, "heads": 2, "vocab_size": 260}
    panel.open_lesson("gpt")
    qtbot.waitUntil(lambda: panel.lesson == "gpt" and panel.last_frame is not None
                    and panel.session.state == "paused", timeout=60000)
    assert panel.runs.model_button.text() == "Export model to Chat…"
    panel.reset(overrides=small)
    qtbot.waitUntil(lambda: panel.last_frame.config.get("text_file") == text_file, timeout=60000)
    panel.controls.play_button.click()
    qtbot.waitUntil(lambda: panel.last_frame.step >= 2, timeout=60000)
    panel.controls.play_button.click()  # pausing writes the checkpoint
    qtbot.waitUntil(lambda: panel.session.state == "paused", timeout=60000)
    rescans: list[int] = []
    panel.ctx.libraryChanged.connect(lambda: rescans.append(1))
    message = panel.export_model(panel.last_frame.run_path, "bard")
    assert message.startswith("Exported bard: Chat lists it") and rescans == [1]
    paths = default_paths()
    assert [e.name for e in find_chat_models(panel.ctx.settings, paths)] == ["bard"]
    assert "exists already" in panel.export_model(panel.last_frame.run_path, "bard")
