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
