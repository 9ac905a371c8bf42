"""A live training session whose trainer runs in a child process, for the window.

:class:`~studio.pipelines.train.session.TrainingSession` steps on a thread of the window's own
process, so the trainer and the GUI share one GIL: pyqtgraph's painting is Python-heavy, every
handoff between the two threads costs up to Python's 5 ms switch interval, and the trainer stands
still while a frame draws. With live plots the trainer reached a third (or less) of its headless
speed. :class:`ProcessTrainingSession` has the same controls and callbacks, but runs a
``TrainingSession`` in a child process, so training and drawing run on separate cores.

- The child is started with the **spawn** method: forking a process that holds Qt's and torch's
  threads can leave locks held forever in the child.
- Commands (play, pause, set_param, ...) go to the child over a pipe; values are checked here
  first, so a bad value is refused at once, exactly as the thread session does.
- Frames and states come back over the same pipe. A listener thread here calls ``on_frame`` and
  ``on_state`` (the panel's Qt bridge re-emits them as signals). Frames are plain data (numpy
  arrays, floats, paths), pickled between our own two processes; parts of a snapshot that did
  not change since the last frame travel as a marker and arrive as the previous frame's object
  (frame_codec.py), so views that redraw only what changed keep doing so.
- The child owns the run folder (metrics.jsonl, checkpoints), as the thread session does.
- Yield to the job queue: the listener asks ``busy()`` every 50 ms (and every command asks it
  before it is sent) and writes the answer into a shared flag the child reads before every step.
- The step count is published in shared memory after every step, so :attr:`step_count` is exact.
- Errors are data: a lesson that fails to build, a crash, or a child that dies end in state
  ``error`` with a message, never a hang. :meth:`stop` saves the run and ends the child (join with
  a timeout, then terminate); the listener thread ends with it.

While the child imports torch (a few seconds) the state is ``starting``. No Qt here.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from studio.pipelines.train.base import InvalidParameter
from studio.pipelines.train.frame_codec import SnapshotDecoder, SnapshotEncoder
from studio.pipelines.train.session import (
    FRAME_INTERVAL_S,
    Frame,
    SessionFacts,
    TrainingSession,
)

log = logging.getLogger(__name__)

BUSY_POLL_S = 0.05  # how often the job queue's state reaches the child
STOP_TIMEOUT_S = 10.0  # the child saves its run before it exits; a wedged one is terminated
STARTING_MESSAGE = "Starting the trainer…"


class ProcessTrainingSession(SessionFacts):
    """Runs one lesson's :class:`TrainingSession` in a spawned child process; same API."""

    def __init__(self, lesson: str, on_frame: Callable[[Frame], None],
                 on_state: Callable[[str, str], None], *, runs_root: Path | None = None,
                 config: dict[str, Any] | None = None, seed: int = 0,
                 busy: Callable[[], bool] | None = None,
                 frame_interval: float = FRAME_INTERVAL_S) -> None:
        self._keep(lesson, on_frame, on_state, runs_root, config, seed, busy, frame_interval)
        self._state = "starting"
        self._stopping = False
        self._send_lock = threading.Lock()
        self._mp = multiprocessing.get_context("spawn")
        # Shared memory, lock-free: one writer each (the listener; the child's trainer thread).
        self._busy_flag = self._mp.RawValue("b", 0)
        self._steps = self._mp.RawValue("q", 0)
        self._conn: Any = None
        self.process: Any = None  # multiprocessing's SpawnProcess, once started
        self._listener = threading.Thread(target=self._listen, name="studio-train-listener",
                                          daemon=True)

    # -- controls (any thread) ------------------------------------------------------------------
    def start(self, resume: Path | None = None) -> None:
        """Start the child (it builds a fresh trainer, or ``resume``\\ s a saved run)."""
        parent_conn, child_conn = self._mp.Pipe(duplex=True)
        self._conn = parent_conn
        self._set_state("starting", STARTING_MESSAGE)
        self.process = self._mp.Process(
            target=_child_main, name=f"studio-train-{self.lesson}", daemon=True,
            args=(child_conn, self.lesson, self._config, self._seed, self._runs_root,
                  self.frame_interval, (self.delay_s, self.draw_every),
                  Path(resume) if resume is not None else None, self._busy_flag, self._steps))
        try:
            self.process.start()
        except Exception as exc:  # noqa: BLE001 - e.g. out of memory or processes: a state
            log.exception("could not start the training process")
            from studio.core.jobs import describe_error

            self.process = None
            child_conn.close()
            parent_conn.close()
            self._set_state("error", f"Could not start the trainer: {describe_error(exc)}")
            return
        # Only the child holds its end now, so its death reads as end-of-file here.
        child_conn.close()
        self._listener.start()

    def play(self) -> None:
        self._send("play")

    def pause(self) -> None:
        self._send("pause")

    def step_once(self, part: str | None = None) -> None:
        """One step (or one ``part`` of it, e.g. "D") and a fresh frame; pauses first."""
        if part is not None and part not in self.cls.step_parts:
            raise InvalidParameter(f"{self.cls.info.title} has no step part {part!r}.")
        self._send("step_once", part)

    def set_speed(self, delay_s: float = 0.0, draw_every: int = 1) -> None:
        self.delay_s = max(0.0, float(delay_s))
        self.draw_every = max(1, int(draw_every))
        if self.process is not None:  # before start, the values travel with the child's args
            self._send("set_speed", self.delay_s, self.draw_every)

    def set_param(self, name: str, value: Any) -> Any:
        """Change a live knob between steps; returns the checked value or raises InvalidParameter."""
        spec = self.cls.spec(name)
        if not spec.live:
            raise InvalidParameter(f"{spec.label or name} can only change with a reset.")
        value = spec.coerce(value)
        self._send("set_param", name, value)
        return value

    def reset(self, config: dict[str, Any] | None = None, seed: int | None = None) -> None:
        """Start over (a new run) with ``config`` overrides and ``seed``; values checked now."""
        new_config = self.cls.validate_config(config if config is not None else self._config)
        new_seed = self._seed if seed is None else int(seed)
        self._send("reset", new_config, new_seed)

    def save(self) -> None:
        """Write the run's metrics and a checkpoint now."""
        self._send("save")

    def frame_done(self) -> None:
        """The window has drawn the last frame; the next one may come."""
        self._send("frame_done")

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> None:
        """Stop stepping, save the run, end the child and the listener."""
        self._stopping = True
        process = self.process
        if process is None:
            return
        self._send("stop")
        process.join(timeout)
        if process.is_alive():
            log.warning("the %s training process did not stop; terminating it", self.lesson)
            process.terminate()
            process.join(2.0)
            if process.is_alive():
                process.kill()
                process.join(2.0)
        if self._listener.is_alive() and threading.current_thread() is not self._listener:
            self._listener.join(timeout)
        if self._conn is not None:
            self._conn.close()
        try:
            process.close()
        except ValueError:  # still running after kill: the OS reaps it with us
            log.error("the %s training process could not be ended", self.lesson)
        self.process = None

    @property
    def alive(self) -> bool:
        process = self.process
        return process is not None and process.is_alive() and self._listener.is_alive()

    @property
    def step_count(self) -> int:
        """Steps the child's current trainer has taken (0 until it is built)."""
        return int(self._steps.value)

    # -- plumbing -------------------------------------------------------------------------------
    def _send(self, name: str, *args: Any) -> None:
        if self._conn is None:
            raise RuntimeError("start() the session first")
        if self.process is None:
            return  # the child could not start or has stopped: nothing listens
        self._forward_busy()  # so "play" right after a job was queued does not take a step
        with self._send_lock:
            try:
                self._conn.send((name, args))
            except (OSError, EOFError, ValueError):
                # The child is gone (the listener reports it) or the session stopped: a click on
                # a control then does nothing rather than raise in a slot.
                log.debug("training process gone; %s dropped", name)

    def _set_state(self, state: str, message: str = "") -> None:
        self._state = state
        self._on_state(state, message)

    def _forward_busy(self) -> None:
        try:
            self._busy_flag.value = 1 if self._busy() else 0
        except Exception:  # noqa: BLE001 - a failing probe must not end the listener
            log.exception("busy() failed")

    def _listen(self) -> None:
        """Deliver what the child sends; forward the job queue's state; notice the child's end."""
        conn, process = self._conn, self.process
        decoder = SnapshotDecoder()
        try:
            while True:
                self._forward_busy()
                if not conn.poll(BUSY_POLL_S):
                    # Nothing to read: a child that died without a word (killed, crashed in C)
                    # still closes the pipe, but checking the process too costs nothing.
                    if process.is_alive() or conn.poll(0):
                        continue
                    raise EOFError
                kind, *rest = conn.recv()
                if kind == "frame":
                    frame, seed = rest
                    frame.snapshot = decoder.decode(frame.snapshot)
                    self._seed, self._config = seed, dict(frame.config)
                    self._on_frame(frame)
                elif kind == "state":
                    self._set_state(*rest)
                elif kind == "stopped":
                    return
        except (EOFError, OSError):
            if not self._stopping:
                process.join(1.0)
                self._set_state("error", _died_message(process.exitcode))
        except Exception as exc:  # noqa: BLE001 - errors are data (DESIGN rule 8)
            log.exception("training listener failed")
            from studio.core.jobs import describe_error

            self._set_state("error", describe_error(exc))


def _died_message(exitcode: int | None) -> str:
    how = (f"was killed by signal {-exitcode}" if exitcode is not None and exitcode < 0
           else f"exited with code {exitcode}" if exitcode is not None else "stopped answering")
    return (f"The training process {how}. Choose the lesson again (or Reset) to start over; "
            "the run saved so far is in the Runs tab.")


# -- the child process ---------------------------------------------------------------------------
def _child_main(conn: Any, lesson: str, config: dict[str, Any], seed: int,
                runs_root: Path | None, frame_interval: float, speed: tuple[float, int],
                resume: Path | None, busy_flag: Any, steps: Any) -> None:
    """Run a TrainingSession until the parent says stop or goes away."""
    # Ctrl+C in the terminal reaches the whole process group; the window stops us cleanly.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    send_lock = threading.Lock()

    def send(*message: Any) -> None:
        with send_lock:
            try:
                conn.send(message)
            except (OSError, EOFError):
                pass  # the parent is gone: the command loop below sees it and stops

    session: TrainingSession | None = None
    encoder = SnapshotEncoder()

    def on_frame(frame: Frame) -> None:
        frame.snapshot = encoder.encode(frame.snapshot)
        # frames come only from a started session, so it exists here
        send("frame", frame, session.seed if session is not None else seed)

    def on_step(count: int) -> None:
        steps.value = count

    try:
        session = TrainingSession(
            lesson, on_frame, lambda state, message: send("state", state, message),
            runs_root=runs_root, config=config, seed=seed, frame_interval=frame_interval,
            busy=lambda: bool(busy_flag.value), on_step=on_step, share_gil=False)
        session.set_speed(*speed)
        session.start(resume=resume)
    except Exception as exc:  # noqa: BLE001 - errors are data (DESIGN rule 8)
        from studio.core.jobs import describe_error

        send("state", "error", describe_error(exc))
        send("stopped")
        conn.close()
        return
    try:
        while True:
            try:
                name, args = conn.recv()
            except (EOFError, OSError):
                break  # the window went away without a word: save and end
            if name == "stop":
                break
            try:
                getattr(session, name)(*args)
            except InvalidParameter as exc:  # checked in the parent already; kept for safety
                send("state", session.state, str(exc))
    finally:
        session.stop()
        send("stopped")
        conn.close()
    # The run is saved and the parent told. Tearing down an interpreter that loaded torch takes
    # ~0.7 s, which the window would wait for on every lesson switch: skip it.
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)

