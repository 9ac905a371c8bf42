"""Training speed with live plots vs headless, and the window's frame time while it trains.

    python -m bench.train [--seconds 3] [--lessons optimizers classifier-2d] [--session thread]

For each lesson: steps/s of the trainer alone, stepping in a TrainingSession with nobody drawing
(headless, the same thread and yield checks as the window, as ``studio train`` runs it), and
steps/s in the real Train workspace (offscreen) with its live plots; the ratio window/headless
(target ≥ 0.9). The window trains in a child process, as it does for users; ``--session thread``
measures the older thread session (trainer and painting sharing one GIL) for comparison. While
the window trains, a 60 Hz timer measures the event loop: the interval between its ticks is the
frame time a user would feel (16.7 ms is perfect). Rounds alternate headless and window.

``trainer cpu`` and ``gui cpu`` (Linux) are the share of one core the trainer (the child process,
or the session thread) and the GUI thread got while the window trained. A trainer that gets a
whole core and still steps slower than headless is our overhead; one that gets less is waiting
for a core (on a machine with two, the GUI thread takes one, other programs share the rest).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("STUDIO_HOME", tempfile.mkdtemp(prefix="studio-bench-train-"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def headless_rate(lesson: str, seconds: float) -> float:
    """Steps/s of a session whose frames are acknowledged at once (no drawing)."""
    from studio.pipelines.train.session import TrainingSession

    holder: dict = {}

    def on_frame(frame) -> None:
        holder["s"].frame_done()

    session = TrainingSession(lesson, on_frame, lambda *_: None, runs_root=None)
    holder["s"] = session
    session.start()
    while session.trainer is None:
        time.sleep(0.01)
    session.play()
    time.sleep(0.3)  # warm-up
    start_steps, t0 = session.step_count, time.perf_counter()
    time.sleep(seconds)
    rate = (session.step_count - start_steps) / (time.perf_counter() - t0)
    session.stop()
    return rate


def cpu_seconds(stat: str) -> float:
    """User + system CPU seconds of a /proc stat file (NaN where there is none)."""
    try:
        fields = Path(stat).read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def trainer_stat(session) -> str:
    process = getattr(session, "process", None)
    if process is not None:
        return f"/proc/{process.pid}/stat"
    return f"/proc/self/task/{session._thread.native_id}/stat"


def window_rate(app, panel, lesson: str, seconds: float) -> dict:
    """Steps/s in the workspace, the event-loop tick intervals (ms), the frames drawn and the CPU
    share of the trainer and of the GUI thread."""
    import threading

    from PySide6.QtCore import QTimer

    panel.open_lesson(lesson)
    end = time.perf_counter() + 60
    while panel.session.state == "starting" and time.perf_counter() < end:  # the child's imports
        pump(app, 0.05)
    pump(app, 0.5)
    ticks: list[float] = []
    timer = QTimer()
    timer.setInterval(16)
    timer.timeout.connect(lambda: ticks.append(time.perf_counter()))
    panel.controls.play_button.setChecked(True)
    pump(app, 0.3)
    frames0 = panel.frames_drawn
    trainer, gui = trainer_stat(panel.session), f"/proc/self/task/{threading.get_native_id()}/stat"
    cpu0 = cpu_seconds(trainer), cpu_seconds(gui)
    start_steps, t0 = panel.session.step_count, time.perf_counter()
    timer.start()
    pump(app, seconds)
    timer.stop()
    elapsed = time.perf_counter() - t0
    rate = (panel.session.step_count - start_steps) / elapsed
    cpu = [(cpu_seconds(path) - c) / elapsed for path, c in zip((trainer, gui), cpu0, strict=True)]
    panel.controls.play_button.setChecked(False)
    pump(app, 0.2)
    intervals = [(b - a) * 1000 for a, b in zip(ticks, ticks[1:], strict=False)]
    return {"rate": rate, "ticks": intervals, "frames": panel.frames_drawn - frames0,
            "trainer_cpu": cpu[0], "gui_cpu": cpu[1]}


def pump(app, seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        app.processEvents()
        time.sleep(0.001)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--lessons", nargs="+", default=["optimizers", "classifier-2d"])
    parser.add_argument("--session", choices=["process", "thread"], default="process",
                        help="where the window's trainer runs (default: a child process)")
    args = parser.parse_args(argv)

    from PySide6.QtWidgets import QApplication

    app = QApplication.instance() or QApplication([])
    from studio.app import build_main_window

    window = build_main_window()
    window.resize(1480, 920)
    window.show()
    from studio.ui.panels.train.panel import TrainPanel

    TrainPanel.session_in_process = args.session == "process"
    panel = window.show_workspace("train")
    print(f"{args.session} session; load average {os.getloadavg()[0]:.2f} on "
          f"{os.cpu_count()} CPUs")
    print(f"{'lesson':<16}{'headless st/s':>14}{'window st/s':>13}{'ratio':>8}"
          f"{'frames/s':>10}{'tick p50 ms':>13}{'tick p95 ms':>13}{'trainer cpu':>13}"
          f"{'gui cpu':>9}")
    try:
        for lesson in args.lessons:
            heads, wins, ticks, fps, tcpu, gcpu = [], [], [], [], [], []
            for _ in range(args.rounds):
                heads.append(headless_rate(lesson, args.seconds))
                got = window_rate(app, panel, lesson, args.seconds)
                wins.append(got["rate"])
                ticks += got["ticks"]
                fps.append(got["frames"] / args.seconds)
                tcpu.append(got["trainer_cpu"])
                gcpu.append(got["gui_cpu"])
            head, win = statistics.median(heads), statistics.median(wins)
            ticks.sort()
            p50 = ticks[len(ticks) // 2] if ticks else float("nan")
            p95 = ticks[int(len(ticks) * 0.95)] if ticks else float("nan")
            print(f"{lesson:<16}{head:>14.0f}{win:>13.0f}{win / head:>8.2f}"
                  f"{statistics.median(fps):>10.1f}{p50:>13.1f}{p95:>13.1f}"
                  f"{statistics.median(tcpu):>13.2f}{statistics.median(gcpu):>9.2f}", flush=True)
    finally:
        window.shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
