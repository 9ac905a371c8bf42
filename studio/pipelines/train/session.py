"""A live training session: one trainer stepping on its own thread, driven from the window.

The session owns the trainer; only its thread touches it. Every command from outside (play, pause,
one step, a knob change, reset, save) is queued and applied *between* steps, so a change never
lands in the middle of one. What the window sees arrives through two callbacks, called on the
session thread (the Qt bridge turns them into signals):

- ``on_frame(Frame)``: a snapshot plus the metrics logged since the previous frame. Frames are
  throttled: at most one per ``frame_interval`` (1/60 s) and never a new one before the window has
  drawn the last (:meth:`TrainingSession.frame_done`), so a slow window never queues up frames and
  never holds the trainer back: it just gets fewer, fresher pictures.
- ``on_state(state, message)``: ``playing``, ``paused``, ``waiting`` (yielding to the job queue),
  ``diverged`` (with the message), ``finished`` (a lesson with a goal reached it: the message
  says what it wrote) or ``error``.

Yield policy: training shares the machine with Generate and Chat. Before every step the session
asks ``busy()`` (in the window: "does the GPU job runner have a job waiting or running?"); while
it answers yes the session does not step at all and re-checks every 0.1 s, showing ``waiting``.
A lesson's step takes milliseconds, so pausing it costs the student nothing, while a generation
sharing the device (and the CPU) with a trainer would slow down for as long as both run.

Threads: the lessons' models are tiny, and torch's intra-op thread pool makes them *slower* (on a
busy machine, 100× slower: the pool's threads wait for each other on every small op). While it
works (builds a trainer, steps, takes a snapshot), the session sets torch to one thread and gives
the old count back whenever it goes idle (pause, yield to the job queue, stop), so a Generate job
never runs with one thread. (A lesson's first snapshot can be its costliest: DDPM samples its
whole reverse chain. With the default pool on a loaded two-core machine that took seconds.)

The window runs this session inside a child process (process_session.py), so that training and
painting do not share one GIL; the command line and some tests use it directly, on a thread.

No Qt here.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from studio.pipelines.train.base import (
    InvalidParameter,
    Trainer,
    TrainingDiverged,
    TrainingFinished,
)
from studio.pipelines.train.registry import lesson_class
from studio.pipelines.train.runs import Run

log = logging.getLogger(__name__)

FRAME_INTERVAL_S = 1 / 60
FLUSH_INTERVAL_S = 0.5  # metrics reach metrics.jsonl at least this often while training
YIELD_POLL_S = 0.1


@dataclass
class Frame:
    """What the window draws: the trainer's snapshot and the metrics logged since last time."""

    step: int
    snapshot: dict[str, Any]
    metrics: list[dict[str, float]] = field(default_factory=list)
    run_path: Path | None = None
    config: dict[str, Any] = field(default_factory=dict)
    new_run: bool = False  # the trainer was (re)built: forget the old curves and trails


class SessionFacts:
    """What both kinds of session say of themselves (a thread's, :class:`TrainingSession`, and a
    child process's): a copy of the lesson's parameters, the seed and the state."""

    _config: dict[str, Any]
    _seed: int
    _state: str

    @property
    def config(self) -> dict[str, Any]:
        return dict(self._config)

    @property
    def seed(self) -> int:
        return self._seed

    @property
    def state(self) -> str:
        return self._state

    def _keep(self, lesson: str, on_frame: Callable[[Frame], None],
              on_state: Callable[[str, str], None], runs_root: Path | None,
              config: dict[str, Any] | None, seed: int, busy: Callable[[], bool] | None,
              frame_interval: float) -> None:
        """Keep what both sessions are made with; bad parameters are refused here, before a
        thread or a child process starts."""
        self.lesson = lesson
        self.cls = lesson_class(lesson)
        self._config = self.cls.validate_config(config)
        self._seed = int(seed)
        self._on_frame = on_frame
        self._on_state = on_state
        self._busy = busy or (lambda: False)
        self._runs_root = Path(runs_root) if runs_root is not None else None
        self.frame_interval = frame_interval
        self.delay_s = 0.0  # slow mode: a pause after every step
        self.draw_every = 1  # fast mode: a frame at most every N steps


class TrainingSession(SessionFacts):
    """Runs one lesson's trainer on a thread; thread-safe controls, throttled frames."""

    def __init__(self, lesson: str, on_frame: Callable[[Frame], None],
                 on_state: Callable[[str, str], None], *, runs_root: Path | None = None,
                 config: dict[str, Any] | None = None, seed: int = 0,
                 busy: Callable[[], bool] | None = None,
                 frame_interval: float = FRAME_INTERVAL_S,
                 on_step: Callable[[int], None] | None = None,
                 share_gil: bool = True) -> None:
        self._keep(lesson, on_frame, on_state, runs_root, config, seed, busy, frame_interval)
        # Told the step count after every step and (re)build; the process session publishes it.
        self._on_step = on_step or (lambda _n: None)
        # The window draws in this process: while a frame is out, hand it the GIL after every
        # step. False in the child process of process_session.py, where nobody else draws.
        self._share_gil = share_gil

        self._cond = threading.Condition()
        self._commands: deque[Callable[[], None]] = deque()
        self._playing = False
        self._stopping = False
        self._frame_pending = False  # a frame is out and not drawn yet
        self._dirty = True  # something changed that the window has not seen
        self._stepped = False  # steps taken one at a time since the last save
        self._next_frame = 0.0  # when the next frame is due (time.monotonic)
        self._pending_metrics: list[dict[str, float]] = []
        self._unflushed: list[dict[str, float]] = []
        self._last_flush = time.monotonic()
        self._state = "paused"
        self._new_run = True
        self.trainer: Trainer | None = None  # session thread only
        self.run: Run | None = None
        self._resume_from: Path | None = None
        self._saved_threads: int | None = None
        self._thread = threading.Thread(target=self._loop, name="studio-train-session",
                                         daemon=True)

    # -- controls (any thread) ------------------------------------------------------------------
    def start(self, resume: Path | None = None) -> None:
        """Build the trainer on the session thread (a fresh one, or ``resume`` a saved run)."""
        self._resume_from = Path(resume) if resume is not None else None
        self._thread.start()

    def play(self) -> None:
        self._post(lambda: self._set_playing(True))

    def pause(self) -> None:
        self._post(lambda: self._set_playing(False))

    def step_once(self, part: str | None = None) -> None:
        """One step (or one ``part`` of it, e.g. "D") and a fresh frame; pauses first."""
        if part is not None and part not in self.cls.step_parts:
            raise InvalidParameter(f"{self.cls.info.title} has no step part {part!r}.")

        def do() -> None:
            self._set_playing(False)
            self._train_step(part)
            self._dirty = True
            self._stepped = True  # saved once the queued steps are done (the loop below)

        self._post(do)

    def set_speed(self, delay_s: float = 0.0, draw_every: int = 1) -> None:
        with self._cond:
            self.delay_s = max(0.0, float(delay_s))
            self.draw_every = max(1, int(draw_every))
            self._cond.notify_all()

    def set_param(self, name: str, value: Any) -> Any:
        """Change a live knob between steps; returns the checked value or raises InvalidParameter."""
        spec = self.cls.spec(name)
        if not spec.live:
            raise InvalidParameter(f"{spec.label or name} can only change with a reset.")
        value = spec.coerce(value)

        def do() -> None:
            trainer = self._active()
            trainer.set_param(name, value)
            self._config = dict(trainer.config)
            if self.run is not None:
                self.run.record_change(trainer.step_count, name, value)
            self._dirty = True

        self._post(do)
        return value

    def reset(self, config: dict[str, Any] | None = None, seed: int | None = None) -> None:
        """Start over (a new run) with ``config`` overrides and ``seed``; values checked now."""
        new_config = self.cls.validate_config(config if config is not None else self._config)
        new_seed = self._seed if seed is None else int(seed)

        def do() -> None:
            self._set_playing(False)
            self._close_run()
            before = self._config, self._seed
            self._config, self._seed = new_config, new_seed
            try:
                self._build()
            except Exception:
                # the new config could not be built (e.g. a data folder with one class): the
                # trainer and run so far stay, and so does the config the frames report
                self._config, self._seed = before
                self._dirty = True
                raise

        self._post(do)

    def save(self) -> None:
        """Write the run's metrics and a checkpoint now."""
        self._post(self._checkpoint)

    def frame_done(self) -> None:
        """The window has drawn the last frame; the next one may come."""
        with self._cond:
            self._frame_pending = False
            self._cond.notify_all()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop stepping, save the run and end the thread."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread.is_alive():
            self._thread.join(timeout)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    @property
    def step_count(self) -> int:
        """Steps the current trainer has taken (0 before it is built)."""
        trainer = self.trainer
        return trainer.step_count if trainer is not None else 0

    # -- session thread --------------------------------------------------------------------------
    def _post(self, command: Callable[[], None]) -> None:
        with self._cond:
            self._commands.append(command)
            self._cond.notify_all()

    def _set_state(self, state: str, message: str = "") -> None:
        self._state = state
        self._on_state(state, message)

    def _set_playing(self, playing: bool) -> None:
        was = self._playing
        self._playing = playing
        if playing and not was:
            self._set_state("playing")
        elif was and not playing:
            self._checkpoint()
            self._set_state("paused")

    def _build(self) -> None:
        trainer = self.cls(dict(self._config), seed=self._seed)
        self.trainer = trainer
        self._config = dict(trainer.config)
        self.run = None  # created with the first step, so resets that never train leave no folder
        self._pending_metrics.clear()
        self._new_run = True
        self._dirty = True
        self._on_step(trainer.step_count)

    def _resume(self, path: Path) -> None:
        run = Run(path)
        self.trainer = run.resume()
        self.run = run
        resumed = self._active()
        self._config, self._seed = dict(resumed.config), resumed.seed
        self._pending_metrics = run.metrics()  # the window redraws the curve so far
        self._new_run = True
        self._dirty = True
        self._on_step(resumed.step_count)

    def _single_thread(self, on: bool) -> None:
        """One torch thread while stepping; the previous count back otherwise (see above)."""
        import torch

        if on and self._saved_threads is None:
            self._saved_threads = torch.get_num_threads()
            torch.set_num_threads(1)
        elif not on and self._saved_threads is not None:
            torch.set_num_threads(self._saved_threads)
            self._saved_threads = None

    def _active(self) -> Trainer:
        """The lesson's trainer (built on the session thread before any step or frame)."""
        trainer = self.trainer
        if trainer is None:
            raise RuntimeError("this training session has no lesson loaded yet")
        return trainer

    def _train_step(self, part: str | None) -> None:
        trainer = self._active()
        self._single_thread(True)
        if self.run is None and self._runs_root is not None:
            self.run = Run.create(self._runs_root, self.lesson, self._seed, trainer.config)
        try:
            metrics = trainer.step(part)
        except TrainingDiverged as exc:
            self._playing = False
            self._flush()
            self._dirty = True
            self._set_state("diverged", str(exc))
            return
        except TrainingFinished as exc:  # the lesson reached its goal: saved, paused, said
            self._playing = False
            self._checkpoint()
            self._dirty = True
            self._set_state("finished", str(exc))
            return
        self._on_step(trainer.step_count)
        every = max(1, trainer.info.log_every)
        if part is None and trainer.step_count % every == 0 or part is not None:
            self._pending_metrics.append(metrics)
            self._unflushed.append(metrics)
        if time.monotonic() - self._last_flush > FLUSH_INTERVAL_S:
            self._flush()

    def _flush(self) -> None:
        self._last_flush = time.monotonic()
        if self.run is not None and self._unflushed:
            self.run.append_metrics(self._unflushed)
        self._unflushed = []

    def _checkpoint(self) -> None:
        self._stepped = False
        self._flush()
        if self.run is not None and self.trainer is not None:
            self.run.save_checkpoint(self.trainer)

    def _close_run(self) -> None:
        try:
            self._checkpoint()
        except Exception:  # noqa: BLE001 - a failed save must not stop the session
            log.exception("could not save the training run")

    def _maybe_frame(self, force: bool = False) -> None:
        now = time.monotonic()
        with self._cond:
            if self._frame_pending or (not force and now < self._next_frame):
                return
            self._frame_pending = True
        # Frames are due on a fixed beat, not an interval after the last one: a frame can only
        # go out between steps and after the window acknowledged the last, so each frame came
        # a little late and 60 Hz became 41-50 frames/s (WGAN-GP's steps take ~12 ms). A late
        # frame makes the next one due sooner, by at most one interval.
        self._next_frame = max(self._next_frame, now - self.frame_interval) + self.frame_interval
        self._single_thread(True)
        trainer = self._active()
        if force:  # paused, one step, slow mode: nobody waits for a 60 Hz frame
            trainer.prepare_snapshot(finish=True)
        frame = Frame(step=trainer.step_count, snapshot=trainer.snapshot(),
                      metrics=self._pending_metrics, config=dict(self._config),
                      run_path=self.run.path if self.run else None, new_run=self._new_run)
        self._pending_metrics, self._new_run, self._dirty = [], False, False
        self._on_frame(frame)
        if not force:
            trainer.prepare_snapshot()  # while the window draws

    def _loop(self) -> None:
        try:
            self._single_thread(True)
            if self._resume_from is not None:
                self._resume(self._resume_from)
            else:
                self._build()
            self._set_state("paused")
        except Exception as exc:  # noqa: BLE001 - errors are data (DESIGN rule 8)
            log.exception("could not start the %s lesson", self.lesson)
            from studio.core.jobs import describe_error

            self._single_thread(False)
            self._set_state("error", describe_error(exc))
            return
        while True:
            with self._cond:
                if self._stopping:
                    break
                command = self._commands.popleft() if self._commands else None
                idle = (command is None and not self._playing
                        and not (self._dirty and not self._frame_pending))
                if idle:
                    self._cond.wait(0.25)
                    continue
            try:
                if command is not None:
                    self._single_thread(True)
                    command()
                elif self._playing:
                    self._play_once()
                if self._dirty:
                    self._maybe_frame(force=not self._playing)
                if self._stepped and not self._playing and not self._commands:
                    # Steps taken with Step are saved like a pause, once a run of queued steps
                    # is done: the Runs list shows the step reached and an export is that model.
                    self._checkpoint()
                    self._set_state("paused")
                if not self._playing:
                    self._single_thread(False)
            except InvalidParameter as exc:
                self._set_playing(False)
                self._set_state("paused", str(exc))
            except Exception as exc:  # noqa: BLE001 - a lesson bug pauses, never kills the app
                log.exception("training step failed")
                from studio.core.jobs import describe_error
                from studio.pipelines.train.base import is_out_of_memory, out_of_memory_advice

                self._playing = False
                trainer = self.trainer
                advice = (trainer.out_of_memory() if trainer is not None
                          else out_of_memory_advice(self.cls, self._config))
                self._set_state("error", advice if is_out_of_memory(exc)
                                else describe_error(exc))
        self._single_thread(False)
        self._close_run()

    def _play_once(self) -> None:
        if self._busy():
            self._single_thread(False)
            if self._state != "waiting":
                self._set_state("waiting", "Waiting for the job queue")
            with self._cond:
                self._cond.wait(YIELD_POLL_S)
            return
        if self._state == "waiting":
            self._set_state("playing")
        self._train_step(None)
        if self._frame_pending and self._share_gil:
            # The window is drawing: hand it the GIL now rather than after Python's 5 ms switch
            # interval, so its frame is not stretched by the trainer (a step is ~0.5 ms).
            time.sleep(0)
        if not self._playing:
            return
        if self._active().step_count % self.draw_every == 0 or self.delay_s > 0:
            self._dirty = True
        if self.delay_s > 0:
            self._maybe_frame(force=True)
            with self._cond:  # slow mode: wait, but wake at once for a command or stop
                self._cond.wait_for(lambda: self._commands or self._stopping, self.delay_s)
