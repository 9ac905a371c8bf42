"""Training speed with live plots vs headless, and the window's frame time while it trains.

    python -m bench.train [--seconds 1.5] [--rounds 2] [--lessons optimizers gan-2d …]
                          [--session thread]

Every lesson by default (nine; about two minutes on two idle cores). For each lesson, rounds
alternate three measurements of the same trainer, so that a change in the machine's load hits
them alike:

- ``raw``: ``trainer.step()`` in a loop and nothing else, as ``studio train`` runs it.
- ``headless``: a TrainingSession with nobody drawing: the same thread, yield checks and 60 Hz
  snapshots as the window, each frame acknowledged at once. ``snap`` is the share of this run's
  time spent in ``snapshot()`` and ``prepare_snapshot()`` (which the window needs too, so it
  costs both sides alike).
- ``window``: the real Train workspace (offscreen) with its live plots, the trainer in a child
  process as users get it (``--session thread``: the older thread session, sharing one GIL).

``ratio`` = window / headless per round (target ≥ 0.9; ``min–max`` over the rounds), ``vs raw``
= window / raw. ``per cpu`` compares steps per CPU-second of the trainer (window / headless): it
is what the ratio would be if the trainer got a whole core in both, i.e. the cost of sending the
frames alone, without the machine's other load. While the window trains, a 60 Hz timer measures the event loop: the interval
between its ticks is the frame time a user feels (16.7 ms is perfect); ``frames/s`` is what the
lesson view drew. ``trainer cpu`` and ``gui cpu`` (Linux) are the share of one core the trainer
(the child process, or the session thread) and the GUI thread got while the window trained
(``window``: the window's whole process, with the thread that receives the frames): a
trainer that gets a whole core and still steps slower than headless is our overhead; one that
gets less is waiting for a core (two cores: the GUI takes one, other programs share the rest).
``load`` is the 1-minute load average when the lesson's rounds began: compare ratios, not rates,
between runs on a shared machine.

``--bare`` instead measures the image lessons' loop (``cnn``: through accelerate) against a bare
PyTorch loop of the same model, data, optimizer, metrics and test evaluation (every 25 steps), in
alternating rounds (``--lessons cyclegan ddpm``: their bare loops have the same networks,
optimizers, batch draw and losses, and no test accuracy to time): ``ratio`` = lesson steps/s / bare steps/s (target ≥ 0.95: the accelerate
wrapper must be free). It also times "what is normal": steps and seconds (one torch thread)
until the lesson's test accuracy on digits first passes 95 %, over three seeds.

``--normal`` instead times the ``distill`` and ``federated`` lessons' "what is normal" (one torch
thread, default settings, seeds 0–2): the accuracies the lesson text and the README quote, and the
CPU seconds their steps took (``--steps N``: 600 for distill, 100 rounds for federated).

``--controls`` instead measures the child-process session's controls (tests/
test_train_process_session.py and test_train_a_session.py check what they do, not how fast):
how long ``stop()`` takes after 50 steps of the optimizers lesson (the child saves its run and
exits), how long it takes once the child is dead, and the pace of slow mode (steps/s with a
0.05 s delay: at most 20).
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

WARMUP_S = 0.3


def raw_rate(lesson: str, seconds: float) -> float:
    """Steps/s of the bare trainer (no session, no snapshots), one torch thread as the CLI."""
    import torch

    from studio.pipelines.train.registry import lesson_class

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        trainer = lesson_class(lesson)({}, seed=0)
        end = time.perf_counter() + WARMUP_S
        while time.perf_counter() < end:
            trainer.step()
        steps, t0 = 0, time.perf_counter()
        while (elapsed := time.perf_counter() - t0) < seconds:
            trainer.step()
            steps += 1
        return steps / elapsed
    finally:
        torch.set_num_threads(before)


def headless_rate(lesson: str, seconds: float) -> tuple[float, float, float]:
    """Steps/s of a session whose frames are acknowledged at once (no drawing), the share of its
    time spent taking snapshots and the share of a core its thread got."""
    from studio.pipelines.train.session import TrainingSession

    holder: dict = {"snap_s": 0.0}

    def on_frame(frame) -> None:
        holder["s"].frame_done()

    session = TrainingSession(lesson, on_frame, lambda *_: None, runs_root=None)
    holder["s"] = session
    session.start()
    while session.trainer is None:
        time.sleep(0.01)
    trainer = session.trainer

    def timed(method):
        def call():
            t = time.perf_counter()
            try:
                return method()
            finally:
                holder["snap_s"] += time.perf_counter() - t
        return call

    trainer.snapshot = timed(trainer.snapshot)
    trainer.prepare_snapshot = timed(trainer.prepare_snapshot)
    session.play()
    time.sleep(WARMUP_S)
    stat = trainer_stat(session)
    start_steps, snap0, cpu0 = session.step_count, holder["snap_s"], cpu_seconds(stat)
    t0 = time.perf_counter()
    time.sleep(seconds)
    elapsed = time.perf_counter() - t0
    rate = (session.step_count - start_steps) / elapsed
    cpu = (cpu_seconds(stat) - cpu0) / elapsed
    snap_share = (holder["snap_s"] - snap0) / elapsed
    session.stop()
    return rate, snap_share, cpu


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


def open_lesson(app, panel, lesson: str) -> None:
    panel.open_lesson(lesson)
    end = time.perf_counter() + 60
    while panel.session.state == "starting" and time.perf_counter() < end:  # the child's imports
        pump(app, 0.05)
    pump(app, 0.3)


def window_rate(app, panel, seconds: float) -> dict:
    """Steps/s in the workspace (lesson already open), the event-loop tick intervals (ms), the
    frames drawn and the CPU share of the trainer and of the GUI thread."""
    import threading

    from PySide6.QtCore import QTimer

    ticks: list[float] = []
    timer = QTimer()
    timer.setInterval(16)
    timer.timeout.connect(lambda: ticks.append(time.perf_counter()))
    panel.controls.play_button.setChecked(True)
    pump(app, WARMUP_S)
    frames0 = panel.frames_drawn
    trainer, gui = trainer_stat(panel.session), f"/proc/self/task/{threading.get_native_id()}/stat"
    paths = (trainer, gui, "/proc/self/stat")
    cpu0 = [cpu_seconds(path) for path in paths]
    start_steps, t0 = panel.session.step_count, time.perf_counter()
    timer.start()
    pump(app, seconds)
    timer.stop()
    elapsed = time.perf_counter() - t0
    rate = (panel.session.step_count - start_steps) / elapsed
    frames = panel.frames_drawn - frames0
    cpu = [(cpu_seconds(path) - c) / elapsed for path, c in zip(paths, cpu0, strict=True)]
    panel.controls.play_button.setChecked(False)
    pump(app, 0.2)
    intervals = [(b - a) * 1000 for a, b in zip(ticks, ticks[1:], strict=False)]
    return {"rate": rate, "ticks": intervals, "fps": frames / elapsed,
            "trainer_cpu": cpu[0], "gui_cpu": cpu[1], "window_cpu": cpu[2]}


def pump(app, seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        app.processEvents()
        time.sleep(0.001)


def _wait(condition, timeout_s: float = 300) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError("timed out")
        time.sleep(0.002)


def measure_controls(rounds: int = 3) -> dict[str, float]:
    """Medians over ``rounds`` child processes: stop() after 50 steps, stop() of a dead child,
    slow mode's steps per second at a 0.05 s delay."""
    from studio.pipelines.train.process_session import ProcessTrainingSession

    stops, dead_stops, slow = [], [], []
    for _ in range(rounds):
        frames, states = [], []
        holder: list = []

        def on_frame(frame, frames=frames, holder=holder):
            frames.append(frame)
            holder[0].frame_done()

        runs = Path(tempfile.mkdtemp(prefix="studio-bench-train-runs-"))
        session = ProcessTrainingSession("optimizers", on_frame,
                                         lambda state, message, states=states:
                                         states.append(state), runs_root=runs)
        holder.append(session)
        session.start()
        session.play()
        _wait(lambda s=session: s.step_count > 50)
        session.pause()
        _wait(lambda st=states: st and st[-1] == "paused")
        session.set_speed(delay_s=0.05)
        first = session.step_count
        session.play()
        t0 = time.perf_counter()
        time.sleep(1.0)
        slow.append((session.step_count - first) / (time.perf_counter() - t0))
        session.set_speed(0.0)
        t0 = time.perf_counter()
        session.stop()
        stops.append(time.perf_counter() - t0)

        dead = ProcessTrainingSession("classifier-2d", lambda f, s=None: None,
                                      lambda *_: None, runs_root=runs)
        dead.start()
        _wait(lambda d=dead: d.alive)
        dead.process.kill()
        _wait(lambda d=dead: not d.alive)
        t0 = time.perf_counter()
        dead.stop()
        dead_stops.append(time.perf_counter() - t0)
    return {"stop_s": statistics.median(stops), "dead_stop_s": statistics.median(dead_stops),
            "slow_steps_s": statistics.median(slow)}


def bare_loop(trainer):
    """A plain PyTorch loop of ``trainer``'s model (a fresh copy of the same initial weights),
    data, optimizer and batch draw, with the same test-set evaluation every 25 steps: one call =
    one step."""
    import copy

    import torch
    import torch.nn.functional as F

    from studio.pipelines.train import cnn

    model = copy.deepcopy(trainer.net)
    opt = torch.optim.Adam(model.parameters(), lr=float(trainer.config["lr"]))
    x_train, y_train = trainer._x_train, trainer._y_train
    x_test, y_test = trainer._x_test, trainer._y_test
    g = torch.Generator().manual_seed(1)
    n = int(trainer.config["batch_size"])
    count = 0

    def step() -> None:
        nonlocal count
        idx = torch.randint(0, len(x_train), (n,), generator=g)
        model.train()
        opt.zero_grad(set_to_none=True)
        logits = model(x_train[idx])
        loss = F.cross_entropy(logits, y_train[idx])
        loss.backward()
        float(loss.detach())
        float((logits.argmax(1) == y_train[idx]).sum())  # the lesson's batch accuracy
        opt.step()
        count += 1
        if count == 1 or count % cnn.TEST_EVERY == 0:
            with torch.no_grad():
                model.eval()
                logits = model(x_test)
                float(F.cross_entropy(logits, y_test))
                float((logits.argmax(1) == y_test).float().mean())

    return step


def bare_cyclegan(trainer):
    """A plain PyTorch loop of the cyclegan lesson: copies of its two generators and two
    discriminators, Adam (0.5, 0.999) at its learning rate, the same batch draw and the same
    LSGAN + cycle + identity losses; one call = one step."""
    import copy

    import torch
    import torch.nn.functional as F

    g_a, g_b, d_a, d_b = (copy.deepcopy(m) for m in (trainer.G_A, trainer.G_B, trainer.D_A,
                                                       trainer.D_B))
    lr = float(trainer.config["lr"])
    opt_g = torch.optim.Adam([*g_a.parameters(), *g_b.parameters()], lr=lr, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam([*d_a.parameters(), *d_b.parameters()], lr=lr, betas=(0.5, 0.999))
    lam_c = float(trainer.config["lambda_cycle"])
    lam_i = float(trainer.config["lambda_identity"]) * lam_c
    a, b = trainer._a, trainer._b
    n = int(trainer.config["batch_size"])
    g = torch.Generator().manual_seed(1)

    def gan(scores, real: bool):
        return F.mse_loss(scores, torch.full_like(scores, 1.0 if real else 0.0))

    def step() -> None:
        real_a = a[torch.randint(0, len(a), (n,), generator=g)]
        real_b = b[torch.randint(0, len(b), (n,), generator=g)]
        opt_g.zero_grad(set_to_none=True)
        fake_b, fake_a = g_a(real_a), g_b(real_b)
        loss_gan = gan(d_a(fake_b), True) + gan(d_b(fake_a), True)
        loss_cycle = F.l1_loss(g_b(fake_b), real_a) + F.l1_loss(g_a(fake_a), real_b)
        loss_idt = F.l1_loss(g_a(real_b), real_b) + F.l1_loss(g_b(real_a), real_a)
        (loss_gan + lam_c * loss_cycle + lam_i * loss_idt).backward()
        opt_g.step()
        opt_d.zero_grad(set_to_none=True)
        fake_b, fake_a = fake_b.detach(), fake_a.detach()
        loss_d = 0.5 * (gan(d_a(real_b), True) + gan(d_a(fake_b), False)
                        + gan(d_b(real_a), True) + gan(d_b(fake_a), False))
        loss_d.backward()
        opt_d.step()
        for value in (loss_gan, loss_d, loss_cycle, loss_idt):  # the lesson's metrics
            float(value.detach())

    return step


def bare_ddpm(trainer):
    """A plain PyTorch loop of the ddpm lesson: a copy of its UNet, Adam at its learning rate,
    the same batch, stratified timesteps, noising (its diffusers scheduler) and ε-MSE; one call
    = one step."""
    import copy

    import torch

    from studio.pipelines.train import ddpm

    model = copy.deepcopy(trainer.unet)
    opt = torch.optim.Adam(model.parameters(), lr=float(trainer.config["lr"]))
    x, y = trainer._x, trainer._y
    n = int(trainer.config["batch_size"])
    g = torch.Generator().manual_seed(1)
    steps = ddpm.TIMESTEPS

    def step() -> None:
        idx = torch.randint(0, len(x), (n,), generator=g)
        u = torch.rand(n, generator=g)
        t = ((torch.arange(n) + u) / n * steps).long().clamp(max=steps - 1)
        t = t[torch.randperm(n, generator=g)]
        eps = torch.randn((n, *x.shape[1:]), generator=g)
        extra = {"class_labels": y[idx]} if trainer.n_classes else {}
        model.train()
        opt.zero_grad(set_to_none=True)
        noisy = trainer.scheduler.add_noise(x[idx], eps, t)
        pred = model(noisy, t, **extra).sample.float()
        loss = (pred - eps).pow(2).flatten(1).mean(1).sum() / n
        loss.backward()
        float(loss.detach())
        opt.step()

    return step


BARE_LOOPS = {"cyclegan": bare_cyclegan, "ddpm": bare_ddpm}


def rate(step, seconds: float) -> float:
    end = time.perf_counter() + WARMUP_S
    while time.perf_counter() < end:
        step()
    steps, t0 = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - t0) < seconds:
        step()
        steps += 1
    return steps / elapsed


def measure_bare(lesson: str, seconds: float, rounds: int) -> None:
    import torch

    from studio.pipelines.train.registry import lesson_class

    torch.set_num_threads(1)
    trainer = lesson_class(lesson)({}, seed=0)
    bare = BARE_LOOPS.get(lesson, bare_loop)(trainer)
    ours_r, bare_r = [], []
    for _ in range(rounds):
        ours_r.append(rate(trainer.step, seconds))
        bare_r.append(rate(bare, seconds))
    ratios = [a / b for a, b in zip(ours_r, bare_r, strict=True)]
    print(f"{lesson}: lesson loop {statistics.median(ours_r):.0f} steps/s, bare PyTorch "
          f"{statistics.median(bare_r):.0f} steps/s, ratio {statistics.median(ratios):.2f} "
          f"({min(ratios):.2f}–{max(ratios):.2f} over {rounds} rounds; one torch thread)")
    if lesson in BARE_LOOPS:  # no test accuracy to reach: the ratio is the measurement
        return
    for seed in range(3):
        trainer = lesson_class(lesson)({}, seed=seed)
        t0 = time.perf_counter()
        while True:
            metrics = trainer.step()
            if metrics.get("test_acc", 0.0) > 0.95 or trainer.step_count >= 5000:
                break
        print(f"{lesson} seed {seed}: test accuracy {metrics.get('test_acc', 0):.1%} at step "
              f"{trainer.step_count}, {time.perf_counter() - t0:.1f} s")


#: lesson → (steps, the metrics "what is normal" quotes)
NORMAL = {"distill": (600, ("teacher_acc", "student_acc", "twin_acc")),
          "federated": (100, ("global_acc", "client_acc", "drift"))}


def measure_normal(lesson: str, steps: int = 0) -> None:
    """Default settings, seeds 0–2, one torch thread: the quoted metrics after ``steps`` and
    the CPU seconds the steps took (the data set loaded before the clock starts)."""
    import torch

    from studio.pipelines.train.registry import lesson_class

    torch.set_num_threads(1)
    n, names = NORMAL[lesson]
    n = steps or n
    lesson_class(lesson)(seed=0)  # the data set's first load (cached) is not the lesson's
    for seed in range(3):
        trainer = lesson_class(lesson)(seed=seed)
        t0 = time.process_time()
        for _ in range(n):
            metrics = trainer.step()
        got = ", ".join(f"{k} {metrics[k]:.3f}" for k in names)
        print(f"{lesson} seed {seed}: after {n} steps {got}; "
              f"{time.process_time() - t0:.1f} CPU-s")


def main(argv: list[str] | None = None) -> int:
    from studio.pipelines.train.registry import lesson_keys

    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], epilog=__doc__.split("\n\n", 2)[2],
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=1.5,
                        help="seconds per measurement (default 1.5; raw gets half)")
    parser.add_argument("--rounds", type=int, default=2,
                        help="raw/headless/window rounds per lesson (default 2)")
    parser.add_argument("--lessons", nargs="+", default=lesson_keys(), metavar="LESSON",
                        help="lessons to measure (default: all of them)")
    parser.add_argument("--session", choices=["process", "thread"], default="process",
                        help="where the window's trainer runs (default: a child process)")
    parser.add_argument("--controls", action="store_true",
                        help="measure stop() and slow mode of the child-process session instead")
    parser.add_argument("--bare", action="store_true",
                        help="the image lessons' loop vs a bare PyTorch loop, and the time to "
                             "'what is normal' (default lessons: cnn)")
    parser.add_argument("--normal", action="store_true",
                        help="distill and federated: the accuracies 'what is normal' quotes and "
                             "their CPU time, seeds 0–2")
    parser.add_argument("--steps", type=int, default=0,
                        help="with --normal: steps per seed (default 600 distill, 100 federated)")
    args = parser.parse_args(argv)
    if args.normal:
        for lesson in (args.lessons if args.lessons != lesson_keys() else list(NORMAL)):
            measure_normal(lesson, args.steps)
        return 0
    if args.bare:
        for lesson in (args.lessons if args.lessons != lesson_keys() else ["cnn"]):
            measure_bare(lesson, args.seconds, max(args.rounds, 3))
        return 0
    if args.controls:
        got = measure_controls()
        print(f"process session: stop() after 50 steps {got['stop_s'] * 1e3:.0f} ms (the child "
              f"saves its run and exits), stop() of a killed child {got['dead_stop_s'] * 1e3:.0f}"
              f" ms; slow mode at 0.05 s: {got['slow_steps_s']:.1f} steps/s (at most 20; "
              f"medians of 3)")
        return 0

    from PySide6.QtWidgets import QApplication

    app = QApplication.instance() or QApplication([])
    from studio.app import build_main_window

    window = build_main_window()
    window.resize(1480, 920)
    window.show()
    from studio.ui.panels.train.panel import TrainPanel

    TrainPanel.session_in_process = args.session == "process"
    panel = window.show_workspace("train")
    print(f"{args.session} session; {os.cpu_count()} CPUs; {args.rounds} rounds of "
          f"{args.seconds:g} s per lesson")
    print(f"{'lesson':<22}{'load':>5}{'raw':>7}{'headless':>9}{'snap':>6}{'window':>8}"
          f"{'ratio':>6}{'min–max':>11}{'per cpu':>8}{'vs raw':>7}{'frames/s':>9}"
          f"{'tick p50':>9}{'p95 ms':>7}{'trainer':>8}{'gui cpu':>8}{'window':>7}")
    started = time.perf_counter()
    try:
        for lesson in args.lessons:
            load = os.getloadavg()[0]
            open_lesson(app, panel, lesson)
            raws, heads, snaps, wins, ratios, ticks, fps, tcpu, gcpu, wcpu, per_cpu = (
                [] for _ in range(11))
            for _ in range(args.rounds):
                raws.append(raw_rate(lesson, args.seconds / 2))
                head, snap, head_cpu = headless_rate(lesson, args.seconds)
                heads.append(head)
                snaps.append(snap)
                got = window_rate(app, panel, args.seconds)
                wins.append(got["rate"])
                ratios.append(got["rate"] / head if head else float("nan"))
                ticks += got["ticks"]
                fps.append(got["fps"])
                tcpu.append(got["trainer_cpu"])
                gcpu.append(got["gui_cpu"])
                wcpu.append(got["window_cpu"])
                per_cpu.append((got["rate"] / got["trainer_cpu"]) / (head / head_cpu)
                               if head and head_cpu and got["trainer_cpu"] else float("nan"))
            raw, head, win = (statistics.median(v) for v in (raws, heads, wins))
            ticks.sort()
            p50 = ticks[len(ticks) // 2] if ticks else float("nan")
            p95 = ticks[int(len(ticks) * 0.95)] if ticks else float("nan")
            spread = f"{min(ratios):.2f}–{max(ratios):.2f}"
            print(f"{lesson:<22}{load:>5.1f}{raw:>7.0f}{head:>9.0f}"
                  f"{statistics.median(snaps):>6.0%}{win:>8.0f}{statistics.median(ratios):>6.2f}"
                  f"{spread:>11}{statistics.median(per_cpu):>8.2f}{win / raw:>7.2f}"
                  f"{statistics.median(fps):>9.1f}{p50:>9.1f}"
                  f"{p95:>7.1f}{statistics.median(tcpu):>8.2f}{statistics.median(gcpu):>8.2f}"
                  f"{statistics.median(wcpu):>7.2f}",
                  flush=True)
    finally:
        window.shutdown()
    print(f"{time.perf_counter() - started:.0f} s; load average now {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
