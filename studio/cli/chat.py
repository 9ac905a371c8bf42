"""``studio chat``: talk to a local or remote language model without a window.

With ``--prompt`` the reply is printed on stdout as it arrives — only the reply text — and the
command exits. Without it, an interactive conversation: type a line, read the reply; ``/reset``
starts over, ``/exit`` or Ctrl+D leaves, Ctrl+C stops the reply being written. Warnings, dropped
turns and errors go to stderr. The reply runs on the same job runner and service as the GUI.
``--docs PATH…`` answers from files or folders (PDF, Word .docx, Markdown, text, HTML): the
passages found are numbered into the prompt and their references printed under the reply ("nothing relevant
found" goes to stderr, and then no passage is sent); ``--collection NAME`` keeps them as a
named collection. ``--complete`` continues the raw text instead (no chat template: the way to use a
base model such as GPT-2 or the ``gpt`` lesson's); ``--logprobs K`` prints each reply token's
probability and its K likeliest alternatives on stderr after the reply. ``--model`` takes a name as ``studio models list`` prints it, like every command. Exit status:
2 bad input, 1 a reply that failed, 130 Ctrl+C during a ``--prompt`` reply (see
:data:`EXIT_STATUS`).
"""

from __future__ import annotations

import argparse
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from studio.cli import Terminated, UsageError, fail
from studio.cli.common import (
    EXIT_CANCELLED,
    add_device_argument,
    add_model_argument,
    add_verbose_argument,
    hide_hub_bars,
    load_cli_settings,
    resolve_cli_model,
)

if TYPE_CHECKING:
    from studio.core.config import Paths, Settings
    from studio.core.engine import Engine
    from studio.core.jobs import JobHandle, JobSnapshot
    from studio.pipelines.chat.types import ChatChunk, ChatRequest, TokenLogprob

NAME = "chat"
HELP = "chat with a language model (library name, folder, HF cache repo id, or openai:URL#MODEL)"
EXIT_STATUS = ("Exit status: 0 done (the reply was written, or the conversation ended with "
               "/exit or Ctrl+D); 1 the reply failed (a model that does not load, a server "
               "that refuses; the message says why); 2 bad input (an invalid value, a model that "
               "does not exist or is not a language model); 130 Ctrl+C stopped a --prompt reply "
               "(in a conversation Ctrl+C only stops the reply being written); 143 SIGTERM (the "
               "reply is stopped and the command ends).")


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_model_argument(p, "chat")
    p.add_argument("--system", default="", metavar="TEXT", help="the system prompt")
    p.add_argument("--prompt", default=None, metavar="TEXT",
                   help="answer this one message and exit (default: an interactive "
                        "conversation)")
    p.add_argument("--image", action="append", default=[], type=Path, metavar="FILE",
                   help="show this image with --prompt (repeatable; needs a vision-language "
                        "model such as SmolVLM, Qwen2.5-VL or LLaVA, or a server's vision model)")
    p.add_argument("--temperature", type=float, default=0.7, metavar="T", help="0 = greedy")
    p.add_argument("--top-p", type=float, default=0.95, metavar="P", help="nucleus sampling")
    p.add_argument("--top-k", type=int, default=50, metavar="K", help="0 = off")
    p.add_argument("--repetition-penalty", type=float, default=1.0, metavar="X",
                   help="1 = off")
    p.add_argument("--max-new-tokens", type=int, default=512, metavar="N",
                   help="reply length limit, in tokens")
    p.add_argument("--seed", type=int, default=None, metavar="N",
                   help="makes sampling repeatable (default: random)")
    p.add_argument("--docs", nargs="+", default=None, metavar="PATH",
                   help="answer from these files or folders (PDF, .docx, Markdown, text, HTML), "
                        "citing them as [1], [2]; with --collection they are added to it and kept, "
                        "else indexed for this run only; --verbose also prints the passages "
                        "given to the model, with their scores")
    p.add_argument("--collection", default=None, metavar="NAME",
                   help="answer from a named document collection (made by --docs with "
                        "--collection, or in the Chat window)")
    p.add_argument("--complete", action="store_true",
                   help="Complete mode: continue the text as written, with no chat template "
                        "(base models: GPT-2, the gpt lesson's model); in a conversation each "
                        "line is added to the text as typed and the model goes on from there "
                        "(an empty line: it just goes on)")
    p.add_argument("--logprobs", type=int, default=None, metavar="K",
                   help="after the reply, print each token's probability and its K (0-20) "
                        "likeliest alternatives on stderr")
    add_device_argument(p)
    add_verbose_argument(p)


def build_request(args: argparse.Namespace, settings: Settings, paths: Paths) -> ChatRequest:
    """A validated request template (no messages yet); raises UsageError on bad input."""
    from studio.pipelines.chat.remote import is_remote_spec, parse_model_spec
    from studio.pipelines.chat.types import ChatRequest

    request = ChatRequest(model=args.model.strip(), temperature=args.temperature,
                          top_p=args.top_p, top_k=args.top_k,
                          repetition_penalty=args.repetition_penalty,
                          max_new_tokens=args.max_new_tokens, seed=args.seed,
                          complete=args.complete, logprobs=args.logprobs,
                          messages=[{"role": "user", "content": "-"}])
    try:
        request.validate()
        if is_remote_spec(request.model):
            parse_model_spec(request.model)
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    if not is_remote_spec(request.model):
        request.model = resolve_cli_model(request.model, "chat", settings, paths,
                                          "studio chat").spec
    if args.prompt is not None and not args.prompt.strip():
        raise UsageError("--prompt is empty")
    if args.collection is not None and not args.collection.strip():
        raise UsageError("--collection needs a name")
    if args.complete and (args.docs or args.collection is not None or args.system):
        raise UsageError("--complete continues a raw text: it takes no --system, --docs or "
                         "--collection (those need a chat)")
    if args.image and args.prompt is None:
        raise UsageError("--image goes with --prompt: the question about the image")
    for image in args.image:
        _check_image(image)
    request.messages = []
    return request


def _check_image(path: Path) -> None:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im.verify()
    except FileNotFoundError as exc:
        raise UsageError(f"{path} does not exist; --image takes an image file.") from exc
    except (OSError, UnidentifiedImageError, ValueError) as exc:
        raise UsageError(f"{path} is not an image Studio can read (PNG, JPEG, WebP…).") from exc


class _Printer:
    """JobListener: reply text to stdout as it arrives, notices to stderr (worker thread)."""

    def __init__(self) -> None:
        self.notices: set[str] = set()
        self.ended_with_newline = True
        self.logprobs: list[TokenLogprob] = []  # this reply's tokens with their probabilities
        self._lock = threading.Lock()

    def job_changed(self, job: JobSnapshot) -> None:
        pass

    def job_progress(self, job: JobSnapshot, step: int, total: int, preview: Any) -> None:
        pass

    def job_partial(self, job: JobSnapshot, chunk: ChatChunk) -> None:
        with self._lock:
            for warning in chunk.warnings:
                self._notice(f"studio: warning: {warning}")
            if chunk.dropped_messages:
                self._notice(f"studio: note: the {chunk.dropped_messages} oldest messages were "
                             "left out to fit the model's context")
            self.logprobs.extend(chunk.logprobs)
            if chunk.text:
                sys.stdout.write(chunk.text)
                sys.stdout.flush()
                self.ended_with_newline = chunk.text.endswith("\n")

    def print_logprobs(self) -> None:
        """The reply's tokens, one a line on stderr: probability, token, alternatives."""
        import math

        for t in self.logprobs:
            alternatives = ", ".join(f"{a!r} {math.exp(lp):.1%}" for a, lp in t.top)
            print(f"studio: {math.exp(t.logprob):6.1%} {t.token!r}"
                  + (f"  (top: {alternatives})" if alternatives else ""), file=sys.stderr)
        sys.stderr.flush()
        self.logprobs = []

    def _notice(self, text: str) -> None:
        if text not in self.notices:
            self.notices.add(text)
            print(text, file=sys.stderr, flush=True)


class _Documents:
    """The documents a ``--docs``/``--collection`` run answers from."""

    def __init__(self, args: argparse.Namespace, paths: Paths) -> None:
        from studio.core.jobs import UserFacingError
        from studio.pipelines.chat import documents as docs
        from studio.pipelines.chat.store import ConversationStore

        self.docs = docs
        self.verbose = args.verbose
        keep = args.collection is not None
        self.store = ConversationStore(paths.database if keep else ":memory:")
        self.index = docs.DocumentIndex(self.store, docs.find_embedder(paths.models_dir))
        try:
            if keep and not args.docs:
                try:
                    self.ids = [self.index.collection(args.collection, create=False)]
                except KeyError:
                    names = ", ".join(n for _, n in self.index.collections()) or "none yet"
                    raise UsageError(f"there is no collection named {args.collection!r} "
                                     f"(collections: {names}); make one with --docs PATH… "
                                     f"--collection {args.collection}") from None
            else:
                self.ids = [self.index.collection(args.collection or "command line")]
                report = self.index.add(self.ids[0], args.docs, self._progress)
                print(f"studio: {report.sentence()}", file=sys.stderr, flush=True)
        except UserFacingError as exc:
            self.store.close()
            raise UsageError(str(exc)) from exc
        if not self.index.passage_count(self.ids):
            self.store.close()
            raise UsageError("the documents hold no text to answer from")

    @staticmethod
    def _progress(done: int, total: int, name: str) -> None:
        if sys.stderr.isatty() and total > 1:
            print(f"\rstudio: indexing {done}/{total} {name[:40]:<40}", end="", file=sys.stderr,
                  flush=True)
            if done == total:
                print(file=sys.stderr)

    def ground(self, messages: list[dict[str, str]]) -> tuple[list[dict[str, str]], list]:
        grounded, passages = self.docs.ground(self.index, self.ids, messages)
        if not passages:
            print(f"studio: note: {self.docs.NOTHING_RELEVANT[0].lower()}"
                  f"{self.docs.NOTHING_RELEVANT[1:]}", file=sys.stderr, flush=True)
        elif self.verbose:
            print("studio: the model was given:\n" + self.docs.explain(passages),
                  file=sys.stderr, flush=True)
        return grounded, passages

    def cite(self, passages: list) -> None:
        if passages:
            sys.stdout.write("\nSources:\n" + self.docs.references(passages) + "\n")
            sys.stdout.flush()

    def close(self) -> None:
        self.store.close()


def _ask(engine: Engine, request: ChatRequest, printer: _Printer,
         documents: _Documents | None = None) -> tuple[JobHandle, bool]:
    """Run one reply (grounded in the documents, whose references follow it); returns (job,
    interrupted)."""
    import dataclasses

    passages: list = []
    if documents is not None:
        messages, passages = documents.ground(request.messages)
        request = dataclasses.replace(request, messages=messages)
    printer.ended_with_newline = True
    printer.logprobs = []
    job = engine.submit(request, title="chat")
    interrupted = False
    try:
        while not job.wait(timeout=0.1):
            pass
    except KeyboardInterrupt as exc:
        interrupted = True
        job.cancel()
        job.wait(timeout=30)
        if isinstance(exc, Terminated):  # not just this reply: the whole command stops
            sys.stdout.write("" if printer.ended_with_newline else "\n")
            sys.stdout.flush()
            raise
    if not printer.ended_with_newline:
        sys.stdout.write("\n")
        sys.stdout.flush()
    if documents is not None and job.result is not None:
        documents.cite(passages)
    if request.logprobs is not None:
        printer.print_logprobs()
    return job, interrupted


def _repl(engine: Engine, template: ChatRequest, system: str, printer: _Printer,
          documents: _Documents | None = None) -> int:
    import dataclasses

    history: list[dict[str, str]] = []
    tty = sys.stdin.isatty()
    if tty:
        what = "Continuing text with " if template.complete else "Chatting with "
        print(what + template.model + ". /reset starts over, /exit (or Ctrl+D) "
              "leaves, Ctrl+C stops a reply.", file=sys.stderr)
    while True:
        try:
            line = input("you> " if tty else "")
        except EOFError:
            return 0
        except KeyboardInterrupt as exc:
            if isinstance(exc, Terminated):
                raise
            print(file=sys.stderr)
            continue
        text = line.strip()
        if not text and not (template.complete and history):
            continue
        if text in ("/exit", "/quit"):
            return 0
        if text == "/reset":
            history.clear()
            print("studio: conversation cleared", file=sys.stderr, flush=True)
            continue
        if text or not template.complete:  # Complete mode: an empty line lets the model go on
            history.append({"role": "user", "content": line})
        messages = ([{"role": "system", "content": system}] if system else []) + history
        job, _stopped = _ask(engine, dataclasses.replace(template, messages=messages), printer,
                             documents)
        if job.result is not None:
            history.append({"role": "assistant", "content": job.result.text})
        elif job.error:
            if text or not template.complete:
                history.pop()
            fail(job.error)


def run(args: argparse.Namespace) -> int:
    import dataclasses
    import os

    settings, paths = load_cli_settings(args, previews=True, device_check=False)
    template = build_request(args, settings, paths)
    if not args.verbose:  # transformers' own log lines and bars stay off the terminal
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
        hide_hub_bars()

    from studio.cli.common import cli_engine
    from studio.core.jobs import JobState

    documents = _Documents(args, paths) if args.docs or args.collection is not None else None
    printer = _Printer()
    engine = cli_engine(settings, paths, listener=printer)
    try:
        if args.prompt is None:
            return _repl(engine, template, args.system, printer, documents)
        images = {"images": [str(p.resolve()) for p in args.image]} if args.image else {}
        messages = ([{"role": "system", "content": args.system}] if args.system else []) + [
            {"role": "user", "content": args.prompt, **images}]
        job, interrupted = _ask(engine, dataclasses.replace(template, messages=messages),
                                printer, documents)
        if interrupted:
            return EXIT_CANCELLED
        if job.state is JobState.FAILED:
            return fail(job.error or "the reply failed")
        return 0
    finally:
        engine.shutdown(wait=True, timeout=10)
        if documents is not None:
            documents.close()
