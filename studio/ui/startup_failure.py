"""When Qt cannot open a window at all, say so in a dialog the desktop can still show.

Qt stops the process (qFatal → abort) when no platform plugin loads — on Linux typically because
a system library the xcb plugin needs is missing (``libxcb-cursor0`` on a minimal install). It
prints why on stderr, which nobody sees after a double-click on the AppImage or the menu entry.
While the QApplication is made, a message handler collects Qt's platform-plugin messages and, on
the fatal one, shows them with what to install through a program that does not need Qt:
zenity (GNOME), kdialog (KDE), xmessage or notify-send; a message box on Windows, an alert on
macOS. Then Qt ends the process as before. Only the QApplication's construction is watched: the
previous message handler is back once it exists.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from PySide6.QtCore import QtMsgType, qInstallMessageHandler

TITLE = "Studio could not open its window"
LINUX_HINT = ("Qt needs some system libraries to open windows. On Debian or Ubuntu:\n"
              "    sudo apt install libxcb-cursor0 libxkbcommon-x11-0 libxcb-icccm4 "
              "libxcb-keysyms1 libegl1\n"
              "On Fedora: sudo dnf install xcb-util-cursor libxkbcommon-x11\n"
              "Then start Studio again.")
#: Programs that can show a message without Qt, tried in this order (Linux and BSD).
DIALOGS: tuple[tuple[str, Callable[[str], list[str]]], ...] = (
    ("zenity", lambda text: ["--error", "--no-markup", "--title=Studio", f"--text={text}"]),
    ("kdialog", lambda text: ["--title", "Studio", "--error", text]),
    ("xmessage", lambda text: ["-center", text]),
    ("notify-send", lambda text: ["--urgency=critical", "Studio", text]),
)


def failure_text(messages: list[str]) -> str:
    """What the dialog says: Qt's own reasons, then what to do about them (the libraries to
    install, when the reason is the xcb plugin, the one X11 desktops use)."""
    xcb = sys.platform.startswith(("linux", "freebsd")) and any(
        '"xcb"' in m or "libxcb" in m or "xcb-cursor" in m for m in messages)
    lines = []
    for message in messages:
        for line in message.strip().splitlines():
            # Qt's list of plugins means nothing to a user; its "reinstalling may fix this" is
            # wrong when a system library is missing.
            if line.startswith("Available platform plugins") or not line.strip():
                continue
            if xcb:
                line = line.replace(" Reinstalling the application may fix this problem.", "")
            lines.append(line)
    text = f"{TITLE}.\n\n" + "\n".join(dict.fromkeys(lines))
    return f"{text}\n\n{LINUX_HINT}" if xcb else text


def show_without_qt(text: str) -> str | None:
    """Show ``text`` with the first dialog program found; returns its name, or None."""
    if sys.platform == "win32":
        import ctypes

        ctypes.windll.user32.MessageBoxW(None, text, "Studio", 0x10)  # MB_ICONERROR
        return "MessageBoxW"
    if sys.platform == "darwin":
        quoted = text.replace("\\", "\\\\").replace('"', '\\"')
        subprocess.run(["osascript", "-e", f'display alert "Studio" message "{quoted}" as critical'],
                       check=False, timeout=3600)
        return "osascript"
    for program, arguments in DIALOGS:
        path = shutil.which(program)
        if path is None:
            continue
        try:
            # Blocks until the user closes it: Qt ends the process right after this returns.
            subprocess.run([path, *arguments(text)], check=False, timeout=3600,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        except (OSError, subprocess.SubprocessError):
            continue
        return program
    return None


@contextmanager
def reported_platform_failure() -> Iterator[None]:
    """Wrap the QApplication's construction: a fatal platform failure is shown in a dialog."""
    seen: list[str] = []

    def handler(mode: QtMsgType, context, message: str) -> None:
        # Replacing the handler replaces Qt's printing too: keep printing every message.
        category = getattr(context, "category", "") or ""
        prefix = f"{category}: " if category and category != "default" else ""
        print(f"{prefix}{message}", file=sys.stderr, flush=True)
        if category.startswith("qt.qpa") or "platform plugin" in message:
            seen.append(message)
        if mode == QtMsgType.QtFatalMsg:
            show_without_qt(failure_text(seen or [message]))

    previous = qInstallMessageHandler(handler)
    try:
        yield
    finally:
        qInstallMessageHandler(previous)
