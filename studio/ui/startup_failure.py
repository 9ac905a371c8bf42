"""When Qt cannot open a window at all, say so in a dialog the desktop can still show.

Qt stops the process (qFatal → abort) when no platform plugin loads — on Linux typically because
a system library the xcb plugin needs is missing (``libxcb-cursor0`` on a minimal install). It
prints why on stderr, which nobody sees after a double-click on the AppImage or the menu entry.
While the QApplication is made, a message handler collects Qt's platform-plugin messages and, on
the fatal one, shows them with what to install through a program that does not need Qt:
zenity (GNOME), kdialog (KDE), xmessage or notify-send; a message box on Windows, an alert on
macOS. Then Qt ends the process as before. Only the QApplication's construction is watched: the
previous message handler is back once it exists.

No display at all is another matter: started from a terminal or over ssh without X or Wayland,
there is nobody to show a dialog to and no library to install. :func:`display_problem` sees that
before the QApplication is made (Linux: no ``DISPLAY`` nor ``WAYLAND_DISPLAY``, and Qt would use
xcb), and Qt's own "could not connect to display" (a ``DISPLAY`` that does not answer) is
recognised too; either way the process prints ``studio: error: cannot connect to a display (…)``
on stderr and exits with status 1, without blaming the xcb libraries.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

TITLE = "Studio could not open its window"
LINUX_HINT = ("Qt needs some system libraries to open windows. On Debian or Ubuntu:\n"
              "    sudo apt install libxcb-cursor0 libxkbcommon-x11-0 libxcb-icccm4 "
              "libxcb-keysyms1 libegl1\n"
              "On Fedora: sudo dnf install xcb-util-cursor libxkbcommon-x11\n"
              "Then start Studio again.")
NO_DISPLAY_EXIT = 1
NO_DISPLAY_HINT = ("the window needs a graphical session. Start Studio from your desktop, or "
                   "over ssh with X forwarding (ssh -X), or use the command line without a "
                   "window: 'studio --help' lists the commands.")
_QT_NO_DISPLAY = "could not connect to display"
#: Programs that can show a message without Qt, tried in this order (Linux and BSD).
DIALOGS: tuple[tuple[str, Callable[[str], list[str]]], ...] = (
    ("zenity", lambda text: ["--error", "--no-markup", "--title=Studio", f"--text={text}"]),
    ("kdialog", lambda text: ["--title", "Studio", "--error", text]),
    ("xmessage", lambda text: ["-center", text]),
    ("notify-send", lambda text: ["--urgency=critical", "Studio", text]),
)


def _platform_override() -> str:
    """The platform Qt was told to use (QT_QPA_PLATFORM or -platform), '' when none."""
    argv = sys.argv
    for i, arg in enumerate(argv[:-1]):
        if arg in ("-platform", "--platform"):
            return argv[i + 1]
    return os.environ.get("QT_QPA_PLATFORM", "")


def display_problem() -> str:
    """Why no window can open here, found before Qt is asked, or '' when a display may exist.

    On Linux (and the BSDs) Qt's default platform needs X (``DISPLAY``) or Wayland
    (``WAYLAND_DISPLAY``); with neither set and no other platform chosen (``offscreen``,
    ``wayland``, ``eglfs``…), there is no display."""
    if not sys.platform.startswith(("linux", "freebsd", "openbsd", "netbsd")):
        return ""
    platform = _platform_override().split(":")[0].strip()
    if platform not in ("", "xcb"):
        return ""
    if os.environ.get("DISPLAY") or (not platform and os.environ.get("WAYLAND_DISPLAY")):
        return ""
    return no_display_message("DISPLAY is not set")


def no_display_message(reason: str) -> str:
    """The one line saying that no display answers, and what to do instead."""
    return f"studio: error: cannot connect to a display ({reason}): {NO_DISPLAY_HINT}"


def _qt_display_reason(messages: list[str]) -> str:
    """'DISPLAY=:5 does not answer' when Qt said it could not connect to a display, else ''."""
    if not any(_QT_NO_DISPLAY in m for m in messages):
        return ""
    display = os.environ.get("DISPLAY", "")
    return f"DISPLAY={display} does not answer" if display else "DISPLAY is not set"


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
    """Wrap the QApplication's construction: a fatal platform failure is shown in a dialog;
    no display at all ends the process with one line on stderr (exit status 1)."""
    from PySide6.QtCore import QtMsgType, qInstallMessageHandler

    seen: list[str] = []  # the platform plugin's messages, printed once it is clear why
    held: list[str] = []

    def handler(mode: QtMsgType, context, message: str) -> None:
        category = getattr(context, "category", "") or ""
        prefix = f"{category}: " if category and category != "default" else ""
        line = f"{prefix}{message}"
        platform = category.startswith("qt.qpa") or "platform plugin" in message
        if platform:
            seen.append(message)
        if mode == QtMsgType.QtFatalMsg:
            reason = _qt_display_reason(seen)
            if reason:
                # No display: nothing to install and no desktop to show a dialog on. Qt's lines
                # about xcb-cursor0 would send the user after a library that is there.
                print(no_display_message(reason), file=sys.stderr, flush=True)
                os._exit(NO_DISPLAY_EXIT)  # Qt would abort() right after this handler
            _print(held + [line])
            held.clear()
            show_without_qt(failure_text(seen or [message]))
        elif platform:
            held.append(line)
        else:
            # Replacing the handler replaces Qt's printing too: keep printing every message.
            _print([line])

    previous = qInstallMessageHandler(handler)
    try:
        yield
    finally:
        qInstallMessageHandler(previous)
        _print(held)  # warnings of a platform that did start


def _print(lines: list[str]) -> None:
    for line in lines:
        print(line, file=sys.stderr, flush=True)
