"""The Qt-free job runner: order, cancel, failures as messages, partial results."""

from __future__ import annotations

import threading
import time

import pytest

from studio.core.jobs import CANCELLING, JobCancelled, JobState, UserFacingError, describe_error
from studio.core.lanes import JobRunner
from studio.core.progress import batch_position, batch_progress_text


class Recorder:
    def __init__(self):
        self.events = []
        self.lock = threading.Lock()

    def job_changed(self, job):
        with self.lock:
            self.events.append((job.id, job.state))

    def job_progress(self, job, step, total, preview):
        pass

    def job_partial(self, job, result):
        with self.lock:
            self.events.append((job.id, "partial", result))


PATIENCE_S = 120  # every wait ends as soon as its condition holds; the machine may be busy


def wait_until(condition, message: str = "the condition never held") -> None:
    deadline = time.monotonic() + PATIENCE_S
    while not condition():
        assert time.monotonic() < deadline, message
        time.sleep(0.005)


def stepper(n, delay=0.0):
    def handler(request, progress, cancel):
        done = []
        for i in range(n):
            cancel.raise_if_cancelled()
            time.sleep(delay)
            progress(i + 1, n)
            progress.partial(i)
            done.append(i)
        return done

    return handler


@pytest.fixture
def runner():
    rec = Recorder()
    # "slow" runs for minutes unless cancelled, however slowly the test thread gets to cancel it
    r = JobRunner({"steps": stepper(3), "slow": stepper(100_000, 0.005)}, rec)
    r.recorder = rec
    yield r
    r.shutdown(timeout=PATIENCE_S)
    assert not r.alive


def test_jobs_run_in_order_one_at_a_time(runner):
    jobs = [runner.submit("steps", i) for i in range(3)]
    for j in jobs:
        assert runner.wait(j, PATIENCE_S)
        assert j.state is JobState.DONE and j.result == [0, 1, 2]
    assert jobs[0].ended <= jobs[1].started <= jobs[1].ended <= jobs[2].started
    first = runner.recorder.events[:2]
    assert first[0] == (jobs[0].id, JobState.QUEUED)


def test_partials_arrive_in_order(runner):
    job = runner.submit("steps", None)
    runner.wait(job, PATIENCE_S)
    partials = [e[2] for e in runner.recorder.events if e[0] == job.id and e[1] == "partial"]
    assert partials == [0, 1, 2] == list(job.partials)


def test_cancel_running_job_stops_within_a_step(runner):
    job = runner.submit("slow", None)
    wait_until(lambda: job.step >= 3)
    runner.cancel(job)
    at_cancel = job.step  # the worker may finish the step it is in, no more
    assert runner.wait(job, PATIENCE_S)
    assert job.state is JobState.CANCELLED
    assert job.step <= at_cancel + 1
    assert job.partials  # what was done is kept


def test_cancel_queued_job_never_runs(runner):
    blocker = runner.submit("slow", None)
    queued = runner.submit("steps", None)
    runner.cancel(queued)
    assert queued.state is JobState.CANCELLED
    runner.cancel(blocker)
    runner.wait(blocker, PATIENCE_S)
    assert queued.started == 0.0


def test_failure_becomes_a_message_and_worker_lives_on(runner):
    def boom(request, progress, cancel):
        raise UserFacingError("The model file is truncated.")

    runner.register("boom", boom)
    bad = runner.submit("boom", None)
    good = runner.submit("steps", None)
    runner.wait(good, PATIENCE_S)
    assert bad.state is JobState.FAILED and bad.error == "The model file is truncated."
    assert good.state is JobState.DONE


def test_clear_finished_keeps_running_jobs(runner):
    done = runner.submit("steps", None)
    runner.wait(done, PATIENCE_S)
    running = runner.submit("slow", None)
    wait_until(lambda: running.state is JobState.RUNNING)
    cleared = runner.clear_finished()
    assert [j.id for j in cleared] == [done.id]
    assert running.id in [j.id for j in runner.jobs()]
    runner.cancel(running)


def test_shutdown_cancels_running_job():
    r = JobRunner({"slow": stepper(100000, 0.001)})
    job = r.submit("slow", None)
    wait_until(lambda: job.step >= 2)
    r.shutdown(timeout=PATIENCE_S)
    assert not r.alive
    assert job.state is JobState.CANCELLED


def test_unknown_kind_is_refused(runner):
    with pytest.raises(KeyError):
        runner.submit("nope", None)


@pytest.mark.parametrize(
    "exc, expected",
    [
        (RuntimeError("CUDA out of memory. Tried to allocate 2 GiB"), "Out of memory"),
        (FileNotFoundError(2, "No such file", "/x/model.safetensors"), "/x/model.safetensors"),
        (ValueError("bad width"), "ValueError: bad width"),
        (UserFacingError("Exactly this."), "Exactly this."),
    ],
)
def test_describe_error(exc, expected):
    assert expected in describe_error(exc)


def test_job_cancelled_is_not_a_failure(runner):
    def stops(request, progress, cancel):
        raise JobCancelled()

    runner.register("stops", stops)
    job = runner.submit("stops", None)
    runner.wait(job, PATIENCE_S)
    assert job.state is JobState.CANCELLED and job.error == ""


def test_cancel_says_cancelling_at_once_until_the_job_stops():
    """A step (or a model still loading) can take many seconds: the cancel must show at once."""
    gate = threading.Event()
    seen = []

    def slow_step(request, progress, cancel):
        progress.message("Loading model…")
        progress(1, 2)
        gate.wait(10)  # one long step that ignores the token meanwhile
        progress.message("Saving…")  # must not hide that a cancel is pending
        cancel.raise_if_cancelled()
        return "never"

    class Listener(Recorder):
        def job_changed(self, job):
            seen.append((job.state, job.message, threading.current_thread().name))

    r = JobRunner({"slow": slow_step}, Listener())
    try:
        job = r.submit("slow", None)
        deadline = time.monotonic() + 10
        while job.step < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        r.cancel(job)
        # Told at once, on the caller's thread, while the worker is still inside its step.
        assert job.state is JobState.RUNNING and job.cancelling
        assert job.message == CANCELLING
        assert seen[-1] == (JobState.RUNNING, CANCELLING, threading.current_thread().name)
        r.cancel(job)  # asking again says nothing new
        assert [s for s in seen if s[1] == CANCELLING] == [seen[-1]]
        gate.set()
        assert r.wait(job, 10)
        assert job.state is JobState.CANCELLED and job.message == "Cancelled"
        assert not job.cancelling
        assert "Saving…" not in [message for _state, message, _thread in seen]
    finally:
        gate.set()
        r.shutdown()


def test_batch_position_reads_batch_steps_as_image_and_step():
    # 4 images of 8 steps report 1..32.
    assert batch_position(12, 32, 4) == (2, 4, 8, 4)
    assert batch_position(8, 32, 4) == (1, 8, 8, 4)
    assert batch_position(9, 32, 4) == (2, 1, 8, 4)
    assert batch_position(32, 32, 4) == (4, 8, 8, 4)
    assert batch_position(0, 32, 4) == (1, 0, 8, 4)
    assert batch_progress_text(12, 32, 4) == "image 2/4 · step 4/8"
    assert batch_progress_text(3, 8, 1) == "step 3/8"
    # A scheduler that makes 9 model calls for 8 steps (PNDM) still reads on the asked scale.
    assert batch_position(18, 36, 4, steps=8) == (2, 8, 8, 4)
    assert batch_progress_text(14, 36, 4, steps=8) == "image 2/4 · step 4/8"
    # A total that does not split into the images is one run.
    assert batch_position(5, 7, 2) == (1, 5, 7, 1)
