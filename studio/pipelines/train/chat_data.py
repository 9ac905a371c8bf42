"""The instruction sets of the ``lora-chat`` lesson: question/answer pairs to fine-tune a chat
model on.

Two sources: the small set written for Studio (``assets/instructions/studio_chat.jsonl``, public
domain) or the student's own ``.jsonl`` file. Each line of a file is one JSON object, either
``{"prompt": ..., "response": ...}`` or ``{"messages": [{"role": "user", "content": ...},
{"role": "assistant", "content": ...}]}`` (the chat shape, several turns allowed; the last
message is the answer to learn). Every wrong shape gets a sentence naming the line and the keys.
No Qt here; no torch either.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path

from studio import ASSETS_DIR
from studio.core.wording import count_of
from studio.pipelines.train.base import InvalidParameter

STUDIO_SET = ASSETS_DIR / "instructions" / "studio_chat.jsonl"
SOURCES = ("studio", "file")
SOURCE_NAMES = {"studio": "Studio's questions (42)", "file": "Your .jsonl file"}
MIN_EXAMPLES = 4  # fewer pairs teach nothing a student could see
MAX_BYTES = 20_000_000  # an instruction file larger than this is refused (read once, in memory)
ROLES = ("system", "user", "assistant")
SHAPE = ('each line must be one JSON object, either {"prompt": "…", "response": "…"} or '
         '{"messages": [{"role": "user", "content": "…"}, {"role": "assistant", '
         '"content": "…"}]}')


@dataclass(frozen=True)
class Example:
    """One conversation to learn from: the messages before the answer, and the answer."""

    messages: tuple[tuple[str, str], ...]  # (role, content), ending with a user message
    answer: str

    @property
    def prompt(self) -> str:
        """The last thing the user said (what the before/after panel asks)."""
        return self.messages[-1][1]

    def chat(self) -> list[dict[str, str]]:
        """The conversation without the answer, as a chat template takes it."""
        return [{"role": role, "content": content} for role, content in self.messages]


@dataclass(frozen=True)
class InstructionSet:
    """The examples of a source, and what to say about it."""

    name: str
    examples: tuple[Example, ...]

    def describe(self) -> str:
        return f"{self.name}: {count_of(len(self.examples), 'example')}."


def _text(value: object) -> bool:
    return isinstance(value, str) and bool(value.strip())


def parse_line(line: str, where: str) -> Example:
    """One line of a ``.jsonl`` file as an :class:`Example`; ``where`` ("file.jsonl line 3")
    starts the sentence when the line has the wrong shape."""
    try:
        row = json.loads(line)
    except json.JSONDecodeError as exc:
        raise InvalidParameter(f"{where} is not valid JSON ({exc.msg}); {SHAPE}.") from None
    if not isinstance(row, dict):
        raise InvalidParameter(f"{where} is a JSON {type(row).__name__}, not an object; "
                               f"{SHAPE}.")
    if "messages" in row:
        return _chat_shape(row["messages"], where)
    missing = [key for key in ("prompt", "response") if key not in row]
    if missing:
        have = ", ".join(repr(k) for k in row) or "no keys"
        raise InvalidParameter(f"{where} has no {' and no '.join(repr(k) for k in missing)} "
                               f"key (it has {have}); {SHAPE}.")
    for key in ("prompt", "response"):
        if not _text(row[key]):
            raise InvalidParameter(f"{where}: {key!r} must be non-empty text; {SHAPE}.")
    return Example((("user", row["prompt"]),), row["response"])


def _chat_shape(messages: object, where: str) -> Example:
    if not isinstance(messages, list) or len(messages) < 2:
        raise InvalidParameter(f"{where}: 'messages' must be a list of at least two messages "
                               f"(a user message, then the assistant's answer); {SHAPE}.")
    turns: list[tuple[str, str]] = []
    for i, message in enumerate(messages, 1):
        if not isinstance(message, dict) or set(message) - {"role", "content"} \
                or message.get("role") not in ROLES or not _text(message.get("content")):
            raise InvalidParameter(
                f"{where}: message {i} must be {{\"role\": …, \"content\": …}} with role one of "
                f"{', '.join(ROLES)} and non-empty text as content.")
        turns.append((message["role"], message["content"]))
    if turns[-1][0] != "assistant" or turns[-2][0] != "user":
        raise InvalidParameter(f"{where}: the last message must be the assistant's answer and "
                               "the one before it the user's question.")
    return Example(tuple(turns[:-1]), turns[-1][1])


def instruction_file_problem(path: str) -> str:
    """Why ``path`` cannot be the lesson's instruction set ('' when it can)."""
    try:
        _read_file(path)
    except InvalidParameter as exc:
        return str(exc)
    return ""


def _read_file(path: str) -> InstructionSet:
    if not path.strip():
        raise InvalidParameter("Choose your .jsonl file first (Instruction file), or pick "
                               "Studio's questions.")
    file = Path(path).expanduser()
    if not file.is_file():
        raise InvalidParameter(f"{path} does not exist or is not a file; choose a .jsonl file.")
    try:
        if file.stat().st_size > MAX_BYTES:
            raise InvalidParameter(f"{path} is larger than {MAX_BYTES // 1_000_000} MB; a "
                                   "lesson needs a few hundred examples at most. Use a shorter "
                                   "file.")
        raw = file.read_bytes()
    except OSError as exc:
        raise InvalidParameter(f"{path} cannot be read ({exc.strerror or exc}); check its "
                               "permissions.") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise InvalidParameter(f"{path} is not UTF-8 text; save it as a UTF-8 .jsonl file "
                               "(one JSON object per line).") from None
    examples = [parse_line(line, f"{file.name} line {n}")
                for n, line in enumerate(text.splitlines(), 1) if line.strip()]
    if len(examples) < MIN_EXAMPLES:
        raise InvalidParameter(f"{path} holds {count_of(len(examples), 'example')}; the lesson "
                               f"needs at least {MIN_EXAMPLES}. Add more lines.")
    return InstructionSet(file.name, tuple(examples))


@functools.lru_cache(maxsize=4)
def load_instructions(source: str, path: str = "") -> InstructionSet:
    """The lesson's examples: Studio's set, or the student's file (checked, with a sentence for
    each wrong shape)."""
    if source == "file":
        return _read_file(path)
    if source != "studio":
        raise InvalidParameter(f"Unknown instruction source {source!r}; choose one of: "
                               f"{', '.join(SOURCES)}.")
    examples = [parse_line(line, f"{STUDIO_SET.name} line {n}")
                for n, line in enumerate(STUDIO_SET.read_text("utf-8").splitlines(), 1)
                if line.strip()]
    return InstructionSet("Studio's questions", tuple(examples))


def chat_model_folder(spec: str, need_config: bool = True) -> Path:
    """The folder of the chat model ``spec`` names (a folder, or its name as Chat lists it);
    :class:`InvalidParameter` with the reason when there is none. ``need_config``: a folder
    must hold a model's ``config.json`` (not only a tokenizer)."""
    from studio.core.jobs import UserFacingError

    path = Path(spec).expanduser()
    if path.is_dir():
        if need_config and not (path / "config.json").is_file():
            raise InvalidParameter(f"{spec} holds no config.json: choose a chat model's folder "
                                   "(a Hugging Face model) or its name as Chat lists it.")
        return path
    from studio.core.config import default_paths, load_settings
    from studio.library.resolve import resolve_named

    settings = load_settings().settings
    try:
        return Path(resolve_named(spec, "chat", settings,
                                  settings.resolved_paths(default_paths())).entry.path)
    except UserFacingError as exc:
        raise InvalidParameter(str(exc)) from None
