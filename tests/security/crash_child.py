"""The child of tests/security/test_crash_kills.py: a zygote that imports only what one operation
needs, then forks a worker on each ``go`` line read from stdin; the worker repeats the operation
in a tight loop (so a SIGKILL lands mid-write) and appends one line to ``<dir>/done.log`` after
each operation has returned. The zygote prints the worker's pid, then ``dead <status>`` when it
is gone. Run as ``python tests/security/crash_child.py <op> <dir> <json args>``.
"""

from __future__ import annotations

import json
import os
import sys
import traceback
from pathlib import Path


def _log(work: Path, line: str) -> None:
    with open(work / "done.log", "a", encoding="utf-8") as fh:
        fh.write(line + "\n")
        fh.flush()
        os.fsync(fh.fileno())


def _done(work: Path) -> list[str]:
    try:
        return (work / "done.log").read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return []


def _prepare(op: str, work: Path, args: dict):
    """Imports and setup in the zygote (paid once); returns the worker's loop body."""
    if op == "png":
        import random

        from PIL import Image

        from studio.media.outputs import save_image_with_metadata

        rnd = random.Random(0)
        noise = Image.frombytes("RGB", (384, 384), rnd.randbytes(384 * 384 * 3))

        def png(i: int) -> str:
            path = save_image_with_metadata(noise, work / "outputs", i, f"image {i}", {"i": i},
                                            dated=False)
            return path.name
        return png
    if op == "chat":
        from studio.pipelines.chat.store import ConversationStore, StreamingSaver

        def chat(i: int) -> str:
            store = chat.store  # type: ignore[attr-defined]
            user = store.add_message(chat.conv, "user", f"question {i}")  # type: ignore[attr-defined]
            reply = store.add_message(chat.conv, "assistant", "", complete=False)  # type: ignore[attr-defined]
            saver = StreamingSaver(store, reply.id, every_tokens=1)
            for t in range(12):
                saver.add(f"word{t} ", t + 1)
            if not saver.finish({"finish_reason": "stop"}):
                raise RuntimeError(saver.failure)
            return json.dumps([user.id, reply.id, saver.text])

        def open_store() -> None:
            chat.store = ConversationStore(work / "chat.db")  # type: ignore[attr-defined]
            convs = chat.store.conversations()  # type: ignore[attr-defined]
            chat.conv = convs[0].id if convs else chat.store.create_conversation("c").id  # type: ignore[attr-defined]
        chat.open = open_store  # type: ignore[attr-defined]
        return chat
    if op == "checkpoint":
        import torch

        from studio.pipelines.train.checkpoint import save_folder

        torch.set_num_threads(1)

        def checkpoint(i: int) -> str:
            save_folder({"w": torch.full((256, 256), float(i)), "i": i}, work / "checkpoint",
                        extra={"step": i})
            return str(i)
        return checkpoint
    if op == "import":
        from studio.core.config import Settings, default_paths
        from studio.library.manage import import_model

        source = Path(args["source"])
        paths = default_paths()

        def do_import(i: int) -> str:
            link = source.with_name(f"ink{i}.safetensors")
            if not link.exists():
                os.link(source, link)
            # killed after the copy was moved in but before the log line: it is imported
            if not (paths.models_dir / "loras" / link.name).exists():
                import_model(link, Settings(), paths, copy=True)
            return link.name
        return do_import
    if op == "download":
        from studio.core.config import default_paths
        from studio.library.download import download_file

        models = default_paths().models_dir

        def download(i: int) -> str:
            target = models / f"dl{i}.safetensors"
            download_file(args["url"], target, expected_sha256=args["sha256"])
            return target.name
        return download
    raise SystemExit(f"unknown operation {op}")


def _worker(body, work: Path) -> None:
    try:
        if hasattr(body, "open"):
            body.open()
        i = len(_done(work))
        while True:
            _log(work, body(i))
            i += 1
    except BaseException:
        with open(work / "worker-error.txt", "a", encoding="utf-8") as fh:
            fh.write(traceback.format_exc())
        os._exit(3)


def main() -> None:
    op, work, args = sys.argv[1], Path(sys.argv[2]), json.loads(sys.argv[3])
    work.mkdir(parents=True, exist_ok=True)
    body = _prepare(op, work, args)
    print("ready", flush=True)
    for line in sys.stdin:
        if line.strip() != "go":
            break
        pid = os.fork()
        if pid == 0:
            _worker(body, work)
        print(pid, flush=True)
        _, status = os.waitpid(pid, 0)
        print(f"dead {status}", flush=True)


if __name__ == "__main__":
    main()
