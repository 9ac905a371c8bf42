"""The layout audit: every workspace, Transform mode, Train lesson and dialog, in both themes, on a
1366×768 laptop screen (with the CPU banner) and on a 1920×1080 one — no input narrower than its
text, no clipped button or label, no overlapping widgets, nothing outside its parent or the
screen, no plot legend over the data (rules: tests/layout_audit.py; scenes:
tests/layout_scenes.py).

Offscreen rendering alone once hid a 1-px-wide seed field, so the walks run in child processes on
the real ``xcb`` platform under an Xvfb (and openbox) of their own where Xvfb is installed, and on
the offscreen platform with a screen of the same size otherwise (or with
STUDIO_AUDIT_PLATFORM=offscreen). A child per screen size walks both themes, one after the other
with a new window and home each (importing torch, Qt and Studio once, not once per theme); the
two sizes run at once (STUDIO_AUDIT_JOBS). Each size is walked by two children, one for the workspaces and dialogs and
one for the Train lessons (the longest part): on a busy machine the audit is the suite's last
test, and two halves finish sooner than one whole. One assertion lists every problem of every
walk.
"""

from __future__ import annotations

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path

import pytest

from tests import layout_audit, layout_scenes

# The walks take ~3 minutes on a quiet 2-core machine; at a load of 15 (eight other processes
# training and testing beside the suite) one took more than the suite's 600 s. Room for that:
pytestmark = [pytest.mark.gui, pytest.mark.slow, pytest.mark.timeout(1500)]

ROOT = Path(__file__).resolve().parents[1]
SIZES = ((1366, 768), (1920, 1080))
THEMES = ("light", "dark")
WALK_TIMEOUT_S = 1380
#: the walks of one size: (only, skip) globs of scene names — Train's lessons, everything else
PARTS = (("train*", ""), ("", "train*"))
#: children at once (each is mostly waiting: for torch to import, a lesson to start, a window to map)
JOBS = int(os.environ.get("STUDIO_AUDIT_JOBS", str(len(SIZES) * len(PARTS))))


@pytest.fixture(scope="module")
def audit_models(tmp_path_factory, tiny_sd15_dir, tiny_llama_dir):
    folder = tmp_path_factory.mktemp("layout-models")
    layout_scenes.ensure_models(folder, tiny_sd15_dir, tiny_llama_dir)
    return folder, tiny_sd15_dir, tiny_llama_dir


def _walk(themes, size, part, platform, display, models, out: Path) -> tuple[str, list, str]:
    folder, sd15, llama = models
    only, skip = part
    cmd = layout_scenes.child_command(themes, size, folder, sd15=sd15, llama=llama, audit=out,
                                      only=only, skip=skip)
    try:
        done = subprocess.run(cmd, cwd=ROOT, env=layout_scenes.child_env(platform, display),
                              capture_output=True, text=True, timeout=WALK_TIMEOUT_S)
        log, code = done.stdout + done.stderr, done.returncode
    except subprocess.TimeoutExpired as exc:
        log, code = f"{exc.stdout or ''}{exc.stderr or ''}\ntimed out", -1
    label = (f"{size[0]}x{size[1]} {' and '.join(themes)} {'train' if only else 'windows'} "
             f"({platform.split(':')[0]})")
    if code != 0 or not out.exists():
        return label, [], f"the walk exited {code}:\n{log[-3000:]}"
    return label, layout_audit.load(out), ""


def test_every_workspace_and_dialog_fits_at_laptop_and_desktop_sizes(audit_models, tmp_path):
    # STUDIO_AUDIT_PLATFORM=offscreen tries what CI without Xvfb does.
    xcb = (layout_scenes.VirtualDisplay.available()
           and os.environ.get("STUDIO_AUDIT_PLATFORM", "xcb") != "offscreen")
    with ExitStack() as stack:
        targets = {}
        for size in SIZES:  # a screen per child: windows of two children never meet
            for part in PARTS:
                if xcb:
                    display = stack.enter_context(layout_scenes.VirtualDisplay(size)).display
                    # Xvfb without the xcb libraries Qt needs: offscreen after all
                    xcb = layout_scenes.xcb_works(display)
                if xcb:
                    targets[size, part] = ("xcb", display)
                else:
                    targets[size, part] = (layout_scenes.offscreen_platform(size, tmp_path), "")
        with ThreadPoolExecutor(max_workers=max(1, JOBS)) as pool:
            futures = [pool.submit(_walk, THEMES, size, part, *targets[size, part], audit_models,
                                   tmp_path / f"{size[0]}x{size[1]}-{index}.json")
                       for size in SIZES for index, part in enumerate(PARTS)]
            results = [f.result() for f in futures]
    broken = [f"{label}: {error}" for label, _p, error in results if error]
    assert not broken, "\n\n".join(broken)
    problems = [p for _label, found, _e in results for p in found]
    print(f"platform: {'xcb under Xvfb' if xcb else 'offscreen'}; {len(problems)} problems",
          file=sys.stderr)
    assert not problems, (f"{len(problems)} layout problems (tests/layout_audit.py says what each "
                          "rule means; python tools/screens.py shows them):\n"
                          + layout_audit.format_problems(problems))
