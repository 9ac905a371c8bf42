"""What every panel is given: settings, folders and the job bridge. One instance per window."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QObject, Signal

from studio.core.config import Paths, Settings, default_paths, save_settings
from studio.core.jobs import UserFacingError
from studio.workers.job_bridge import JobBridge


class AppContext(QObject):
    """Shared state of the window. Panels read ``settings`` and listen to ``settingsChanged``."""

    settingsChanged = Signal(object)  # Settings
    #: A panel asks the window to show another workspace and load something into it,
    #: e.g. ("generate", Txt2ImgRequest) for "reuse parameters".
    openInWorkspace = Signal(str, object)
    #: A finished image or file the gallery should pick up (pathlib.Path).
    outputWritten = Signal(object)
    #: Models were added to the library by the app itself (a model exported from Train): the
    #: pickers scan again.
    libraryChanged = Signal()
    #: A sentence for the window's warning banner (e.g. the settings could not be saved).
    warned = Signal(str)

    def __init__(self, settings: Settings, bridge: JobBridge, base_paths: Paths | None = None,
                 parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.settings = settings
        self.bridge = bridge
        self._base_paths = base_paths or default_paths()

    @property
    def base_paths(self) -> Paths:
        """Folders before the user's overrides (what an empty folder field in Settings means)."""
        return self._base_paths

    @property
    def paths(self) -> Paths:
        """Folders in force, with the user's overrides from Settings applied."""
        return self.settings.resolved_paths(self._base_paths)

    def announce_output(self, path: str | Path | None) -> None:
        """Tell the gallery a job wrote ``path`` (nothing when it wrote no file)."""
        if path:
            self.outputWritten.emit(Path(path))

    def update_settings(self, settings: Settings) -> None:
        """Save new settings and tell every panel."""
        self.settings = settings.validated()
        try:
            save_settings(self.settings, self._base_paths.settings_file)
        except UserFacingError as exc:  # kept in force for this session; the banner says why
            self.warned.emit(str(exc))
        self.settingsChanged.emit(self.settings)
