"""The ``lora-chat`` lesson's instruction sets: Studio's shipped set and the student's .jsonl,
with a sentence naming the line and the keys for each wrong shape."""

from __future__ import annotations

import json

import pytest

from studio.pipelines.train import chat_data
from studio.pipelines.train.base import InvalidParameter


def test_the_shipped_set_loads_and_its_licence_is_noted():
    data = chat_data.load_instructions("studio")
    assert len(data.examples) >= 40
    assert data.examples[0].prompt == "What is the capital of France?"
    assert data.examples[0].chat() == [{"role": "user",
                                        "content": "What is the capital of France?"}]
    readme = (chat_data.STUDIO_SET.parent / "README.md").read_text()
    assert "studio_chat.jsonl" in readme and "public domain" in readme


def _write(tmp_path, lines):
    path = tmp_path / "mine.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return str(path)


def test_both_shapes_of_a_students_file_load(tmp_path):
    pair = json.dumps({"prompt": "Hi?", "response": "Hello."})
    chat = json.dumps({"messages": [{"role": "system", "content": "Be brief."},
                                    {"role": "user", "content": "Sum 1+1?"},
                                    {"role": "assistant", "content": "2."}]})
    path = _write(tmp_path, [pair, "", chat, pair, pair])
    data = chat_data.load_instructions("file", path)
    assert data.describe() == "mine.jsonl: 4 examples."
    assert data.examples[1].messages == (("system", "Be brief."), ("user", "Sum 1+1?"))
    assert data.examples[1].answer == "2."
    assert chat_data.instruction_file_problem(path) == ""


@pytest.mark.parametrize("bad, words", [
    ('{"prompt": "Hi"', ["mine.jsonl line 2", "not valid JSON"]),
    ('["a", "b"]', ["line 2", "JSON list, not an object"]),
    ('{"question": "Hi", "answer": "Yo"}',
     ["line 2", "no 'prompt' and no 'response' key", "'question', 'answer'"]),
    ('{"prompt": "Hi", "response": ""}', ["line 2", "'response' must be non-empty text"]),
    ('{"messages": [{"role": "user", "content": "Hi"}]}', ["line 2", "at least two messages"]),
    ('{"messages": [{"role": "bot", "content": "Hi"}, {"role": "assistant", "content": "Yo"}]}',
     ["line 2", "message 1", "role one of system, user, assistant"]),
    ('{"messages": [{"role": "assistant", "content": "Hi"}, {"role": "user", "content": "Yo"}]}',
     ["line 2", "last message must be the assistant's answer"]),
])
def test_wrong_shapes_name_the_line_and_the_keys(tmp_path, bad, words):
    good = json.dumps({"prompt": "Hi?", "response": "Hello."})
    path = _write(tmp_path, [good, bad] + [good] * 4)
    problem = chat_data.instruction_file_problem(path)
    for word in words:
        assert word in problem
    with pytest.raises(InvalidParameter):
        chat_data.load_instructions("file", path)


def test_missing_short_and_non_utf8_files_get_a_sentence(tmp_path):
    assert "Choose your .jsonl file first" in chat_data.instruction_file_problem("")
    assert "does not exist" in chat_data.instruction_file_problem(str(tmp_path / "no.jsonl"))
    short = _write(tmp_path, [json.dumps({"prompt": "a", "response": "b"})])
    assert "holds 1 example; the lesson needs at least 4" in \
        chat_data.instruction_file_problem(short)
    latin = tmp_path / "latin.jsonl"
    latin.write_bytes(b'{"prompt": "caf\xe9", "response": "x"}\n')
    assert "is not UTF-8 text" in chat_data.instruction_file_problem(str(latin))


# -- the lesson ------------------------------------------------------------------------------------
def _steps(trainer, n):
    return [trainer.step() for _ in range(n)]


def test_tiny_model_lesson_counts_trainable_parameters_and_resumes_exactly():
    import torch

    from studio.pipelines.train.lora_chat import LoraChatLesson
    from tests.fixtures.resume import assert_resumes_exactly

    global_torch = torch.get_rng_state()
    lesson = LoraChatLesson({"batch_size": 2, "answer_tokens": 4}, seed=0)
    assert torch.equal(global_torch, torch.get_rng_state())
    trainable, total = lesson.trainable_parameters()
    assert lesson.model.get_nb_trainable_parameters() == (trainable, total)  # peft's count
    snap = lesson.snapshot()
    assert snap["before"] == snap["after"]  # B = 0: the adapter changes nothing yet
    assert snap["questions"][:3] == ["What is the capital of France?", "What is 2 + 3?",
                                     "Say hello."]
    assert snap["questions"][3] == "What is the capital of Spain?"
    assert f"{trainable:,} trainable parameters of {total:,}" in snap["parameters_note"]
    bigger = LoraChatLesson({"rank": 16, "batch_size": 2}, seed=0)
    assert bigger.trainable_parameters() == (2 * trainable, total + trainable)

    paused, _ = assert_resumes_exactly(
        lambda seed: LoraChatLesson({"batch_size": 2, "answer_tokens": 4, "sample_every": 3},
                                    seed=seed), _steps, steps=3)
    assert paused.answers["step"] == 3 and len(paused.answers["after"]) == 4


def test_wrong_model_and_file_are_refused_with_a_sentence(tmp_path):
    from studio.pipelines.train.lora_chat import LoraChatLesson

    with pytest.raises(InvalidParameter, match="holds no config.json"):
        LoraChatLesson.validate_config({"model": str(tmp_path)})
    with pytest.raises(InvalidParameter, match="Choose your .jsonl file first"):
        LoraChatLesson.validate_config({"dataset": "file"})


def test_exported_adapter_chats_as_peft_generates_on_the_same_base(tiny_llama_dir, tmp_path):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from studio.core.config import Settings, default_paths
    from studio.core.jobs import CancelToken
    from studio.library.resolve import resolve_named
    from studio.pipelines.chat.local import LocalChatBackend
    from studio.pipelines.chat.types import ChatRequest
    from studio.pipelines.train.export import export_trainer
    from studio.pipelines.train.lora_chat import LoraChatLesson

    lesson = LoraChatLesson({"model": str(tiny_llama_dir), "batch_size": 4, "lr": 0.05,
                             "answer_tokens": 6}, seed=0)
    _steps(lesson, 3)
    snap = lesson.snapshot()
    assert snap["before"] != snap["after"] and snap["model"] == "tiny-llama"
    paths, settings = default_paths(), Settings(device="cpu")
    done = export_trainer(lesson, paths.models_dir, "my-lora")
    assert done.path == paths.models_dir / "chat" / "my-lora" and "Chat lists it" in done.message
    assert (done.path / "adapter" / "adapter_model.safetensors").is_file()

    question = [{"role": "user", "content": "What is the capital of France?"}]
    spec = resolve_named("my-lora", "chat", settings, paths, command="studio chat").spec
    reply = LocalChatBackend(lambda: settings, lambda: paths).generate(
        ChatRequest(model=spec, temperature=0, max_new_tokens=8, messages=question),
        CancelToken())

    tok = AutoTokenizer.from_pretrained(str(tiny_llama_dir))
    base = AutoModelForCausalLM.from_pretrained(str(tiny_llama_dir))
    peft_model = PeftModel.from_pretrained(base, str(done.path / "adapter")).eval()
    ids = tok.apply_chat_template(question, add_generation_prompt=True, return_tensors="pt",
                                  return_dict=True)["input_ids"]
    with torch.inference_mode():
        plain = peft_model.generate(input_ids=ids, attention_mask=torch.ones_like(ids),
                                    max_new_tokens=8, do_sample=False)
    assert reply.prompt_tokens == ids.shape[1]
    assert reply.text == tok.decode(plain[0, ids.shape[1]:], skip_special_tokens=True).strip()

    # and from a saved run's checkpoint, as the Runs list does: the same merged weights
    from safetensors.torch import load_file

    from studio.pipelines.train.export import export_run
    from studio.pipelines.train.runs import Run

    saved = Run.create(tmp_path / "runs", "lora-chat", 0, lesson.config)
    saved.save_checkpoint(lesson)
    again = export_run(saved.path, paths.models_dir, "from-run")
    first, second = (load_file(str(f / "model.safetensors")) for f in (done.path, again.path))
    assert first.keys() == second.keys()
    assert all(torch.equal(first[k], second[k]) for k in first)


def test_studio_train_lora_chat_export_then_chat_by_name(capsys):
    from studio.cli import _main
    from studio.core.config import default_paths

    args = ["train", "lora-chat", "--steps", "2", "--set", "batch_size=2", "--set",
            "answer_tokens=2"]
    assert _main(args + ["--export", "tiny-lora"]) == 0
    assert "Exported tiny-lora: Chat lists it" in capsys.readouterr().err
    folder = default_paths().models_dir / "chat" / "tiny-lora"
    assert (folder / "model.safetensors").is_file() and (folder / "tokenizer.json").is_file()
    assert (folder / "adapter" / "adapter_config.json").is_file()
    assert _main(["chat", "--model", "tiny-lora", "--prompt", "Say hello.", "--temperature",
                  "0", "--max-new-tokens", "3"]) == 0


def test_the_window_shows_answers_before_and_after_and_takes_a_question_mid_run(
        main_window, qtbot, monkeypatch):
    from PySide6.QtCore import Qt

    from studio.ui.panels.train.panel import TrainPanel

    monkeypatch.setattr(TrainPanel, "session_in_process", False)  # a thread: no torch start-up
    main_window.resize(1480, 920)
    main_window.show()
    panel = main_window.show_workspace("train")
    qtbot.waitUntil(lambda: panel.frames_drawn >= 1, timeout=60000)
    panel.open_lesson("lora-chat")
    qtbot.waitUntil(lambda: panel.lesson == "lora-chat" and panel.last_frame is not None
                    and panel.session.state == "paused", timeout=60000)
    qtbot.mouseClick(panel.controls.step_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: panel.last_frame.step >= 1, timeout=60000)
    view = panel.view
    table = view.answers_box.toPlainText()
    assert "Before (base model)" in table and "What is 2 + 3?" in table
    assert "trainable parameters of" in view.params_label.full_text()
    panel.set_param("question", "Who wrote Hamlet?")  # a live knob: no reset
    qtbot.waitUntil(lambda: "Who wrote Hamlet?" in view.answers_box.toPlainText(),
                    timeout=60000)
    assert panel.last_frame.step >= 1
