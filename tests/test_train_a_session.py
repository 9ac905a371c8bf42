"""The training session (no Qt): controls between steps, throttled frames, yielding, divergence."""

from __future__ import annotations

import threading
import time

import pytest

from studio.pipelines.train.base import InvalidParameter
from studio.pipelines.train.runs import Run, load_metrics
from studio.pipelines.train.session import TrainingSession

PATIENCE_S = 120.0  # every wait ends as soon as its condition holds; the machine may be busy


def wait_until(condition, message: str) -> None:
    deadline = time.monotonic() + PATIENCE_S
    while not condition():
        assert time.monotonic() < deadline, message
        time.sleep(0.01)


class Recorder:
    def __init__(self, ack: bool = True) -> None:
        self.frames, self.states, self.ack = [], [], ack
        self.session: TrainingSession | None = None
        self.changed = threading.Condition()

    def on_frame(self, frame):
        with self.changed:
            self.frames.append(frame)
            self.changed.notify_all()
        if self.ack:
            self.session.frame_done()

    def on_state(self, state, message):
        with self.changed:
            self.states.append((state, message))
            self.changed.notify_all()

    def wait(self, predicate, timeout=PATIENCE_S):
        with self.changed:
            assert self.changed.wait_for(predicate, timeout), (self.states, len(self.frames))


@pytest.fixture
def make_session(tmp_path):
    sessions = []

    def make(lesson="classifier-2d", ack=True, **kw):
        rec = Recorder(ack)
        session = TrainingSession(lesson, rec.on_frame, rec.on_state, runs_root=tmp_path, **kw)
        rec.session = session
        sessions.append(session)
        session.start()
        rec.wait(lambda: rec.frames)  # the first frame shows the untrained model
        return session, rec

    yield make
    for s in sessions:
        s.stop()
        assert not s.alive


def steps(rec):
    return [int(m["step"]) for f in rec.frames for m in f.metrics]


def test_play_pause_frames_are_throttled_and_carry_every_metric(make_session):
    session, rec = make_session()
    assert rec.frames[0].new_run and rec.frames[0].step == 0
    session.play()
    rec.wait(lambda: steps(rec) and steps(rec)[-1] >= 200)
    session.pause()
    rec.wait(lambda: rec.states[-1][0] == "paused" and len(rec.states) >= 3)
    rec.wait(lambda: steps(rec)[-1] == session.trainer.step_count)  # the frame after the pause
    got = steps(rec)
    assert got == list(range(1, got[-1] + 1))  # every step logged once, in order
    frame_steps = [f.step for f in rec.frames]
    assert frame_steps == sorted(set(frame_steps))  # each frame newer than the last
    assert len(rec.frames) < len(got)  # several steps per frame, not one each
    run = Run(rec.frames[-1].run_path)
    assert run.has_checkpoint and len(load_metrics(run.path)) == len(got)


def test_ddpm_samples_its_chain_between_frames_while_playing(make_session):
    """The reverse chain is sampled a slice at a time after each frame (prepare_snapshot), so
    new samples keep arriving while the frames stay cheap."""
    session, rec = make_session("ddpm-2d", config={"sample_every": 20})
    trainer, prepared = session.trainer, []
    prepare = trainer.prepare_snapshot
    trainer.prepare_snapshot = lambda finish=False: (prepared.append(finish), prepare(finish))
    session.play()
    rec.wait(lambda: len({f.snapshot["samples_step"] for f in rec.frames}) >= 3)
    session.pause()
    rec.wait(lambda: rec.states[-1][0] == "paused")
    shown = [(f.step, f.snapshot["samples_step"]) for f in rec.frames]
    assert all(0 <= sampled <= step for step, sampled in shown)  # a past model's chain
    sampled = [s for _, s in shown]
    assert sampled == sorted(sampled) and sampled[-1] > 0
    assert prepared.count(False) >= len(rec.frames) - 2  # after each frame (but the first)
    # Paused, a single step shows the chain of the model it made (as when sampled in one go).
    session.set_param("sample_every", 1)
    for target in (session.step_count + 1, session.step_count + 2):
        session.step_once()
        rec.wait(lambda t=target: rec.frames[-1].step == t)
        assert rec.frames[-1].snapshot["samples_step"] == target


def test_step_once_live_param_and_reset(make_session):
    session, rec = make_session()
    session.step_once()
    session.set_param("lr", 0.2)
    session.step_once()
    rec.wait(lambda: len(steps(rec)) == 2)
    rec.wait(lambda: rec.frames[-1].config["lr"] == 0.2)
    assert session.trainer.step_count == 2
    with pytest.raises(InvalidParameter):
        session.set_param("lr", -1)
    with pytest.raises(InvalidParameter, match="reset"):
        session.set_param("dataset", "xor")
    assert Run(rec.frames[-1].run_path).meta["changes"] == [
        {"step": 1, "name": "lr", "value": 0.2}]
    session.reset({"dataset": "xor", "layers": 1}, seed=9)
    rec.wait(lambda: rec.frames[-1].new_run and rec.frames[-1].config["dataset"] == "xor")
    assert session.seed == 9 and session.trainer.step_count == 0


def test_steps_taken_one_at_a_time_are_saved_once_they_are_done(make_session):
    """Step ×N while paused: the run is saved like a pause when the queued steps are done, so
    the Runs list shows the step reached and an export is the model on screen."""
    from studio.pipelines.train.runs import list_runs

    session, rec = make_session()
    for _ in range(7):
        session.step_once()
    rec.wait(lambda: any(m["step"] == 7 for f in rec.frames for m in f.metrics))
    rec.wait(lambda: rec.states and rec.states[-1][0] == "paused")
    run = Run(rec.frames[-1].run_path)
    wait_until(lambda: run.has_checkpoint and list_runs(run.path.parent)[0].last_step == 7,
               "the stepped run to be saved")
    assert run.load_trainer().step_count == 7


def test_divergence_pauses_with_the_message(make_session):
    session, rec = make_session(config={"lr": 1000.0, "optimizer": "sgd"})
    session.play()
    rec.wait(lambda: rec.states[-1][0] == "diverged")
    assert "lower learning rate" in rec.states[-1][1]
    assert session.alive  # paused, not crashed: a lower lr and a reset go on
    session.reset({"lr": 0.01}, seed=1)
    session.step_once()
    rec.wait(lambda: steps(rec) and steps(rec)[-1] == 1)


def test_yields_while_the_job_queue_is_busy(make_session):
    busy = threading.Event()
    busy.set()
    asked = []
    session, rec = make_session(busy=lambda: asked.append(1) or busy.is_set())
    session.play()
    rec.wait(lambda: rec.states[-1][0] == "waiting")
    seen = len(asked)
    wait_until(lambda: len(asked) >= seen + 3, "the session stopped asking whether it may train")
    assert session.trainer.step_count == 0  # asked again and again, and waited each time
    busy.clear()
    rec.wait(lambda: steps(rec) and steps(rec)[-1] > 10)
    assert ("playing", "") in rec.states[rec.states.index(("waiting", "Waiting for the job "
                                                           "queue")):]


def test_a_window_that_does_not_draw_gets_no_backlog(make_session):
    session, rec = make_session(ack=False)
    session.play()
    wait_until(lambda: session.trainer.step_count > 20, "training did not go on")
    assert len(rec.frames) == 1  # the first frame was never acknowledged, so no other came
    session.frame_done()
    rec.wait(lambda: len(rec.frames) == 2)
    assert steps(rec)[0] == 1  # the metrics piled up meanwhile arrive together


def test_slow_mode_and_resume_a_saved_run(make_session):
    session, rec = make_session()
    for target in (1, 2, 3):
        session.step_once()
        rec.wait(lambda t=target: steps(rec) and steps(rec)[-1] == t)
    # Slow mode: with an hour between steps it makes one step and waits, and Pause still wakes
    # it at once. (Its pace with short delays is measured by bench/train.py.)
    session.set_speed(delay_s=3600)
    session.play()
    wait_until(lambda: session.trainer.step_count == 4, "slow mode made no step")
    session.pause()
    rec.wait(lambda: rec.states[-1][0] == "paused" and ("playing", "") in rec.states)
    rec.wait(lambda: steps(rec)[-1] == session.trainer.step_count)
    assert session.trainer.step_count == 4
    path, done = rec.frames[-1].run_path, session.trainer.step_count
    session.stop()
    rec2 = Recorder()
    resumed = TrainingSession("classifier-2d", rec2.on_frame, rec2.on_state)
    rec2.session = resumed
    resumed.start(resume=path)
    try:
        rec2.wait(lambda: rec2.frames)
        assert rec2.frames[0].step == done and len(rec2.frames[0].metrics) == done
    finally:
        resumed.stop()


def test_building_and_snapshots_use_one_torch_thread_and_idle_gives_them_back(tmp_path):
    """A tiny model on torch's whole thread pool is slow (on a loaded machine, seconds for the
    first snapshot of DDPM); a Generate job in the same process must get the pool back."""
    import torch

    before = torch.get_num_threads()
    seen = []

    def on_frame(frame):
        seen.append((frame.step, torch.get_num_threads()))
        session.frame_done()

    torch.set_num_threads(max(2, before))
    pool = torch.get_num_threads()
    try:
        session = TrainingSession("ddpm-2d", on_frame, lambda *_: None, runs_root=tmp_path,
                                  config={"timesteps": 20})
        session.start()
        deadline = time.monotonic() + PATIENCE_S
        while not seen and time.monotonic() < deadline:
            time.sleep(0.01)
        session.step_once()
        while len(seen) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert [n for _, n in seen[:2]] == [1, 1]  # the build's first frame and a step's
        while torch.get_num_threads() != pool and time.monotonic() < deadline:
            time.sleep(0.01)
        assert torch.get_num_threads() == pool  # idle again: the pool is back
        session.stop()
    finally:
        torch.set_num_threads(before)


def test_a_lesson_out_of_memory_says_so_and_offers_smaller_settings(make_session):
    session, rec = make_session("cnn", config={"image_size": "32", "batch_size": 64})

    def too_big(*_a, **_k):
        raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")

    session.trainer.step = too_big
    session.step_once()
    rec.wait(lambda: rec.states and rec.states[-1][0] == "error")
    message = rec.states[-1][1]
    assert "ran out of memory" in message
    assert "image size 24 (now 32)" in message and "batch size 32 (now 64)" in message
