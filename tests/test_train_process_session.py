"""The child-process training session (no Qt): commands round trip, frames arrive, knobs change
live, divergence and a dead child become states, the metrics equal the thread session's, and
stop() leaves no process or thread behind. One child serves most tests (it takes seconds to
import torch); the tests that end a child start their own."""

from __future__ import annotations

import multiprocessing
import os
import pickle
import threading
import time

import pytest

from studio.pipelines.train.base import InvalidParameter
from studio.pipelines.train.process_session import ProcessTrainingSession
from studio.pipelines.train.runs import Run, load_metrics
from studio.pipelines.train.session import TrainingSession

START_TIMEOUT = 180.0  # a spawned child imports torch; the machine may be busy
PATIENCE_S = 120.0  # every wait ends as soon as its condition holds


class Recorder:
    """Collects frames and states from either session kind, acknowledging frames at once."""

    def __init__(self) -> None:
        self.frames, self.states = [], []
        self.session = None
        self.changed = threading.Condition()

    def on_frame(self, frame):
        with self.changed:
            self.frames.append(frame)
            self.changed.notify_all()
        self.session.frame_done()

    def on_state(self, state, message):
        with self.changed:
            self.states.append((state, message))
            self.changed.notify_all()

    def wait(self, predicate, timeout=PATIENCE_S):
        with self.changed:
            assert self.changed.wait_for(predicate, timeout), (self.states[-5:], len(self.frames))

    def clear(self):
        with self.changed:
            self.frames.clear()
            self.states.clear()

    def steps(self):
        return [int(m["step"]) for f in self.frames for m in f.metrics]

    def metrics(self):
        return [m for f in self.frames for m in f.metrics]


def children() -> list[int]:
    return [p.pid for p in multiprocessing.active_children()]


@pytest.fixture(scope="module")
def busy():
    return threading.Event()


@pytest.fixture(scope="module")
def child(tmp_path_factory, busy):
    """One process session for the module, started once, stopped (and checked) at the end."""
    rec = Recorder()
    session = ProcessTrainingSession("classifier-2d", rec.on_frame, rec.on_state,
                                     runs_root=tmp_path_factory.mktemp("runs"), busy=busy.is_set)
    rec.session = session
    session.start()
    assert rec.states[0][0] == "starting"  # said at once, before the child has imported torch
    rec.wait(lambda: rec.frames, START_TIMEOUT)
    yield session, rec
    pid, listener = session.process.pid, session._listener
    session.stop()
    assert session.process is None and not listener.is_alive() and not session.alive
    assert pid not in children()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


@pytest.fixture
def fresh(child):
    """The module's child with a fresh trainer (seed 0, default config) and empty records."""
    session, rec = child
    default = session.cls.validate_config()
    session.reset(default, seed=0)
    rec.wait(lambda: rec.frames[-1].new_run and rec.frames[-1].step == 0
             and rec.frames[-1].config == default)
    time.sleep(0.05)
    rec.clear()
    return session, rec


def test_commands_round_trip_and_frames_arrive(fresh):
    session, rec = fresh
    session.step_once()
    rec.wait(lambda: rec.steps() == [1])
    assert session.step_count == 1 and rec.frames[-1].step == 1
    session.play()
    rec.wait(lambda: rec.steps() and rec.steps()[-1] >= 300)
    session.pause()
    rec.wait(lambda: rec.states[-1][0] == "paused" and ("playing", "") in rec.states)
    rec.wait(lambda: rec.steps()[-1] == session.step_count)  # the frame after the pause
    got = rec.steps()
    assert got == list(range(1, got[-1] + 1))  # every step logged once, in order
    assert session.step_count == got[-1]
    assert len(rec.frames) < len(got)  # throttled: several steps per frame
    run = Run(rec.frames[-1].run_path)  # the child wrote the run folder
    assert run.has_checkpoint and len(load_metrics(run.path)) == len(got)
    session.save()
    # Slow mode reached the child: with an hour between steps it makes one step and waits, and a
    # command (Pause) still wakes it at once. (Its pace with short delays: bench/train.py.)
    session.set_speed(delay_s=3600)
    session.play()
    rec.wait(lambda: session.step_count == got[-1] + 1)
    session.pause()
    rec.wait(lambda: rec.states[-1][0] == "paused" and rec.states.count(("playing", "")) == 2)
    rec.wait(lambda: rec.steps()[-1] == session.step_count)
    assert session.step_count == got[-1] + 1
    session.set_speed(0.0, 1)


def test_set_param_live_and_bad_values_refused_here(fresh):
    session, rec = fresh
    session.step_once()
    assert session.set_param("lr", "0.2") == 0.2
    session.step_once()
    rec.wait(lambda: rec.steps() == [1, 2] and rec.frames[-1].config["lr"] == 0.2)
    assert session.config["lr"] == 0.2
    with pytest.raises(InvalidParameter):
        session.set_param("lr", -1)
    with pytest.raises(InvalidParameter, match="reset"):
        session.set_param("dataset", "xor")
    with pytest.raises(InvalidParameter):
        session.reset({"batch": 0})
    with pytest.raises(InvalidParameter):
        session.step_once("D")  # the classifier has no step parts
    assert Run(rec.frames[-1].run_path).meta["changes"] == [
        {"step": 1, "name": "lr", "value": 0.2}]
    session.reset({"dataset": "xor", "layers": 1}, seed=9)
    rec.wait(lambda: rec.frames[-1].new_run and rec.frames[-1].config["dataset"] == "xor")
    assert session.seed == 9 and session.step_count == 0


def test_divergence_pauses_with_the_message(fresh):
    session, rec = fresh
    session.reset({"lr": 1000.0, "optimizer": "sgd"}, seed=0)
    session.play()
    rec.wait(lambda: rec.states and rec.states[-1][0] == "diverged")
    assert "lower learning rate" in rec.states[-1][1]
    assert session.alive and session.state == "diverged"


def test_yields_while_the_job_queue_is_busy(fresh, busy):
    session, rec = fresh
    busy.set()
    try:
        session.play()
        rec.wait(lambda: rec.states and rec.states[-1][0] == "waiting")
        time.sleep(0.3)
        assert session.step_count == 0
    finally:
        busy.clear()
    rec.wait(lambda: rec.steps() and rec.steps()[-1] > 10)
    session.pause()
    rec.wait(lambda: rec.states[-1][0] == "paused")


def test_same_seed_and_commands_give_the_thread_sessions_metrics(fresh, tmp_path):
    config = {"dataset": "spirals", "optimizer": "adam"}
    n = 150

    def drive(session, rec):
        session.reset(config, seed=3)
        session.step_once()
        session.step_once()
        session.set_param("lr", 0.02)
        session.play()
        rec.wait(lambda: len(rec.metrics()) >= n)
        session.pause()
        rec.wait(lambda: rec.states and rec.states[-1][0] == "paused")
        return rec.metrics()[:n]

    session, rec = fresh
    in_child = drive(session, rec)
    rec2 = Recorder()
    threaded = TrainingSession("classifier-2d", rec2.on_frame, rec2.on_state, runs_root=tmp_path)
    rec2.session = threaded
    threaded.start()
    try:
        rec2.wait(lambda: rec2.frames)
        in_thread = drive(threaded, rec2)
    finally:
        threaded.stop()
    assert [m["step"] for m in in_child] == list(range(1, n + 1))
    assert in_child == in_thread  # bit for bit: same floats


def test_every_lessons_snapshot_travels_as_plain_data():
    """Frames are pickled to the window: no torch tensors (the window must not need torch to
    read them) and nothing that cannot be pickled."""
    import numpy as np

    from studio.pipelines.train.registry import lesson_class, lesson_keys

    def plain(value):
        if isinstance(value, dict):
            return all(plain(v) for v in value.values())
        if isinstance(value, (list, tuple)):
            return all(plain(v) for v in value)
        return isinstance(value, (np.ndarray, np.generic, float, int, str, bool, type(None)))

    for key in lesson_keys():
        trainer = lesson_class(key)(seed=0)
        trainer.step()
        snapshot = trainer.snapshot()
        assert plain(snapshot), key
        assert pickle.loads(pickle.dumps(snapshot)).keys() == snapshot.keys()


def test_a_child_that_fails_or_dies_becomes_an_error_state(tmp_path):
    rec = Recorder()
    session = ProcessTrainingSession("classifier-2d", rec.on_frame, rec.on_state,
                                     runs_root=tmp_path)
    rec.session = session
    session.start(resume=tmp_path / "no-such-run")
    rec.wait(lambda: rec.states[-1][0] == "error", START_TIMEOUT)
    assert "no-such-run" in rec.states[-1][1] or "No such" in rec.states[-1][1]
    assert session.alive  # the lesson failed, the child still answers (a reset can follow)
    session.process.kill()
    rec.wait(lambda: "killed by signal 9" in rec.states[-1][1])
    assert rec.states[-1][0] == "error" and session.state == "error"
    assert not session.alive
    session.play()  # a click after the child died does nothing, it does not raise
    pid, listener = session.process.pid, session._listener
    session.stop()
    assert not listener.is_alive() and pid not in children()


def test_stop_is_obeyed_and_leaves_nothing_behind(tmp_path, caplog):
    """The child ends by itself on Stop (saving its run), not by being terminated when the wait
    runs out; how long that takes is measured by bench/train.py."""
    rec = Recorder()
    session = ProcessTrainingSession("optimizers", rec.on_frame, rec.on_state, runs_root=tmp_path)
    rec.session = session
    session.start()
    session.play()  # queued while the child starts; applied once the trainer is built
    rec.wait(lambda: rec.steps() and rec.steps()[-1] > 50, START_TIMEOUT)
    # The surface never changes: it crossed the pipe once and stays the same object (codec).
    assert rec.frames[-1].snapshot["grid"] is rec.frames[0].snapshot["grid"]
    assert rec.frames[-1].snapshot["paths"]["adam"].shape[0] > 50
    pid, listener = session.process.pid, session._listener
    session.stop(timeout=PATIENCE_S)  # a passing child is gone long before
    assert "did not stop" not in caplog.text
    assert not listener.is_alive() and pid not in children()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    run = Run(rec.frames[-1].run_path)  # stopping saved the run
    assert run.has_checkpoint and len(load_metrics(run.path)) >= 50


def test_snapshot_codec_sends_only_changes_and_keeps_unchanged_objects():
    import numpy as np

    from studio.pipelines.train.frame_codec import SnapshotDecoder, SnapshotEncoder, Unchanged

    enc, dec = SnapshotEncoder(), SnapshotDecoder()
    grid = {"x": np.arange(4.0), "z": np.array([[1.0, np.nan]])}
    live = np.zeros(3)
    first = dec.decode(pickle.loads(pickle.dumps(enc.encode(
        {"grid": grid, "live": live, "pair": (np.ones(2), 5), "step": 1}))))
    assert np.array_equal(first["grid"]["x"], grid["x"])
    live[1] = 7.0  # a trainer updating the array it handed out, in place
    sent = enc.encode({"grid": {"x": np.arange(4.0), "z": np.array([[1.0, np.nan]])},
                       "live": live, "pair": (np.ones(2), 6), "step": 2})
    assert isinstance(sent["grid"], Unchanged)  # equal content (NaN included): not resent
    assert isinstance(sent["pair"][0], Unchanged) and sent["pair"][1] == 6
    second = dec.decode(pickle.loads(pickle.dumps(sent)))
    assert second["grid"] is first["grid"]  # the window's views see the same object
    assert second["pair"][0] is first["pair"][0] and second["pair"][1] == 6
    assert second["live"].tolist() == [0.0, 7.0, 0.0] and second["step"] == 2
    third = dec.decode(pickle.loads(pickle.dumps(enc.encode({"grid": {"x": np.arange(5.0)}}))))
    assert third == {"grid": {"x": third["grid"]["x"]}} and len(third["grid"]["x"]) == 5


def test_snapshot_codec_takes_a_read_only_array_handed_out_again_as_unchanged():
    import numpy as np

    from studio.pipelines.train.frame_codec import SnapshotEncoder, Unchanged, frozen

    base = np.arange(6.0)
    view = frozen(base[:3])  # views memory the trainer may write: copied, then read-only
    assert not np.shares_memory(view, base) and not view.flags.writeable
    chain = frozen(np.arange(12.0).reshape(3, 4))
    assert frozen(chain) is chain and frozen(chain[0]).base is chain  # no copy needed
    enc = SnapshotEncoder()
    enc.encode({"chain": chain, "first": chain[0], "live": base, "step": 1})
    sent = enc.encode({"chain": chain, "first": chain[0], "live": base, "step": 2})
    assert isinstance(sent["chain"], Unchanged) and isinstance(sent["first"], Unchanged)
    assert isinstance(sent["live"], Unchanged)
    base[0] = 9.0  # a writeable array is still compared by content
    assert enc.encode({"chain": chain, "first": chain[0], "live": base, "step": 3})["live"][0] == 9
    # A new read-only array with other content is sent.
    other = frozen(np.zeros((3, 4)))
    assert enc.encode({"chain": other, "first": other[0], "live": base, "step": 4})["chain"] is other
