"""Real-window screenshots of every workspace, Transform mode, Train lesson and dialog of Studio,
in both themes, at 1366×768 (a laptop; the CPU banner shows) and at 1920×1080.

    python tools/screens.py                      # everything into screenshots/
    python tools/screens.py --sizes 1366x768 --themes dark --only 'train*'
    python tools/screens.py --out /tmp/shots --no-audit

Each walk gets an Xvfb of its own (and openbox, when installed, for window frames and maximizing);
a walk is one theme × size through the scenes of tests/layout_scenes.py, in a process of its own on
Qt's real ``xcb`` platform. Without Xvfb the pictures come from the offscreen platform (the
window's own pixels: no frames, no dialogs over the window). Files are named
``WIDTHxHEIGHT-THEME-NN-scene.png``. The layout audit (tests/layout_audit.py) runs on the same
scenes and its findings go to ``problems.txt`` next to the pictures (``--no-audit`` skips it).

Tiny random-weight models (SD 1.5 layout, a Llama chat model, a CycleGAN generator, a LoRA) are
built once into ``OUT/.models`` (``--models`` elsewhere); nothing is downloaded. A run takes one to
three minutes, most of it spent importing torch and starting lessons.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests import layout_audit, layout_scenes  # noqa: E402


def parse_sizes(text: str) -> list[tuple[int, int]]:
    return [layout_scenes.parse_size(part) for part in text.split(",") if part.strip()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python tools/screens.py", description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n", 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=ROOT / "screenshots",
                        help="folder for the pictures (default: screenshots/)")
    parser.add_argument("--sizes", type=parse_sizes, default=[(1366, 768), (1920, 1080)],
                        help="screen sizes, comma-separated (default: 1366x768,1920x1080)")
    parser.add_argument("--themes", default="light,dark",
                        help="themes, comma-separated (default: light,dark)")
    parser.add_argument("--only", default="",
                        help="only scenes whose name matches this glob, e.g. 'train*'")
    parser.add_argument("--models", type=Path,
                        help="folder of the tiny models (default: OUT/.models; built when missing)")
    parser.add_argument("--platform", choices=("auto", "xcb", "offscreen"), default="auto",
                        help="auto: xcb under Xvfb when Xvfb is installed, else offscreen")
    parser.add_argument("--jobs", type=int, default=2, help="walks at once (default: 2)")
    parser.add_argument("--no-audit", action="store_true", help="pictures only")
    parser.add_argument("--keep", action="store_true",
                        help="keep the pictures already in OUT (default: remove *.png first)")
    parser.add_argument("--list", action="store_true", help="print the scene names and stop")
    args = parser.parse_args(argv)
    themes = [t.strip() for t in args.themes.split(",") if t.strip()]
    if bad := [t for t in themes if t not in ("light", "dark")]:
        parser.error(f"unknown theme {bad[0]!r}: use light and/or dark")
    if args.list:
        return layout_scenes.main(["--models", str(args.out), "--list"])
    xcb = args.platform == "xcb" or (args.platform == "auto"
                                     and layout_scenes.VirtualDisplay.available())
    if xcb and not layout_scenes.VirtualDisplay.available():
        parser.error("--platform xcb needs Xvfb (apt install xvfb; openbox for window frames)")

    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    if not args.keep:
        for old in out.glob("*.png"):
            old.unlink()
    models = args.models or out / ".models"
    started = time.monotonic()
    print(f"tiny models in {models} …", flush=True)
    layout_scenes.ensure_models(models)
    work = Path(tempfile.mkdtemp(prefix="screens-"))
    try:
        with ExitStack() as stack:
            # A display per walk: the pictures are grabs of the whole screen.
            walks = [(theme, size) for size in args.sizes for theme in themes]
            targets = {}
            for theme, size in walks:
                if xcb:
                    display = stack.enter_context(layout_scenes.VirtualDisplay(size)).display
                    if not layout_scenes.xcb_works(display):
                        parser.error("Qt's xcb platform does not start under Xvfb (missing "
                                     "libxcb-cursor0 or similar?); --platform offscreen works")
                    targets[theme, size] = ("xcb", display)
                else:
                    targets[theme, size] = (layout_scenes.offscreen_platform(size, work), "")

            def walk(theme: str, size: tuple[int, int]) -> tuple[str, list, str]:
                import subprocess

                platform, display = targets[theme, size]
                report = work / f"{size[0]}x{size[1]}-{theme}.json"
                cmd = layout_scenes.child_command(
                    theme, size, models, audit=None if args.no_audit else report,
                    shots=out, only=args.only)
                t0 = time.monotonic()
                done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True,
                                      env=layout_scenes.child_env(platform, display))
                label = f"{size[0]}x{size[1]} {theme}"
                print(f"{label}: {time.monotonic() - t0:.0f} s", flush=True)
                if done.returncode != 0:
                    return label, [], (done.stdout + done.stderr)[-3000:]
                found = layout_audit.load(report) if report.exists() else []
                return label, found, ""

            with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
                results = list(pool.map(lambda w: walk(*w), walks))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    failed = [(label, error) for label, _p, error in results if error]
    for label, error in failed:
        print(f"\n{label} failed:\n{error}", file=sys.stderr)
    problems = [p for _label, found, _e in results for p in found]
    if not args.no_audit:
        text = layout_audit.format_problems(problems) if problems else "No problems found."
        (out / "problems.txt").write_text(text + "\n", encoding="utf-8")
    pictures = sorted(out.glob("*.png"))
    print(f"{len(pictures)} screenshots in {out} ({'xcb under Xvfb' if xcb else 'offscreen'}, "
          f"{time.monotonic() - started:.0f} s)"
          + ("" if args.no_audit else f"; {len(problems)} layout problems in "
                                       f"{out / 'problems.txt'}"))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
