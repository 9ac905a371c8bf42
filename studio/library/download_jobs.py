"""Downloads as jobs of the I/O lane: a Hub repository (the Models workspace's Download…) and a
single file (a catalog CycleGAN model). They show in the queue like any job, never wait for the
GPU, and a cancel keeps the partial files for a resume. No Qt here.

The transfer itself is blocking library code (:mod:`.hub_download`, :mod:`.download`), so the
service runs it in the I/O lane's executor (``asyncio.to_thread``) and it checks the job's cancel
token between chunks. Progress is reported in kibibytes (sizes past 2 GB fit a signal's int); the
third value of each report is the :class:`~.hub_download.TransferStatus` (speed, time left, which
file), for a view that shows it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from studio.core.config import Paths
from studio.core.jobs import CancelToken, ProgressSink, UserFacingError
from studio.library import hub_download as hd

if TYPE_CHECKING:
    from studio.library.download import DownloadResult


@dataclass(frozen=True)
class HubDownloadRequest:
    """Download a Hub repository as planned (``hub_download.plan_download``) into the models
    folder; the result is the model's folder."""

    plan: hd.DownloadPlan
    token: str | None = None

    def validate(self) -> None:
        if not self.plan.files:
            raise UserFacingError(f"{self.plan.repo_id} has no files Studio needs.")


@dataclass(frozen=True)
class FileDownloadRequest:
    """Download one file to ``target`` (resuming a ``.part`` an earlier attempt left), checking
    its sha256 when known; the result is a :class:`~.download.DownloadResult`."""

    url: str
    target: str
    sha256: str = ""

    def validate(self) -> None:
        if not self.url.startswith(("https://", "http://")):
            raise UserFacingError(f"{self.url!r} is not an http(s) address.")


class DownloadService:
    """Runs download requests on the I/O lane."""

    def __init__(self, paths: Callable[[], Paths]) -> None:
        self._paths = paths

    async def arun(self, request: HubDownloadRequest | FileDownloadRequest, progress: ProgressSink,
                   cancel: CancelToken) -> Path | DownloadResult:
        import asyncio  # here, not at import: the window starts without asyncio

        request.validate()
        if isinstance(request, HubDownloadRequest):
            progress.message(f"Downloading {request.plan.repo_id}…")

            def hub_status(s: hd.TransferStatus) -> None:
                progress(s.done // 1024, max(1, s.total // 1024), s)

            return await asyncio.to_thread(hd.download, request.plan, self._paths(),
                                           token=request.token, progress=hub_status,
                                           cancel=cancel)
        from studio.library.download import download_file

        progress.message(f"Downloading {Path(request.target).name}…")

        def file_status(done: int, total: int) -> None:
            progress(done // 1024, max(1, total // 1024), None)

        return await asyncio.to_thread(download_file, request.url, Path(request.target),
                                       expected_sha256=request.sha256, progress=file_status,
                                       cancel=cancel)
