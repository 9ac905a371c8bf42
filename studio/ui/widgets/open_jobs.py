"""A panel's own jobs that have not ended: one record each, kept in submission order.

Generate and Transform both show the jobs they submitted: each record holds the job's handle (to
cancel it), the latest snapshot that handle delivered (what the panel shows — never ahead of the
events it has handled), the step clock of its progress line and whether a preview frame of its
current image has been drawn. A record is made when the job is submitted and dropped when its
handle says it ended, with any preview frame of the job still waiting to be drawn; nothing else
about a job is kept by the panel.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from studio.core.jobs import JobSnapshot, JobState
from studio.ui.widgets.preview import FrameThrottle, StepClock
from studio.workers.job_bridge import QtJobHandle


@dataclass
class OpenJob:
    handle: QtJobHandle
    snapshot: JobSnapshot
    clock: StepClock = field(default_factory=StepClock)
    #: a preview frame of the image being made has been drawn (the next image starts afresh)
    framed: bool = False


class OpenJobs:
    """The records of a panel's jobs not ended yet, in submission order."""

    def __init__(self, frames: FrameThrottle | None = None) -> None:
        self._jobs: dict[int, OpenJob] = {}
        self._frames = frames  # the panel's preview frames, keyed by job id

    def add(self, handle: QtJobHandle, snapshot: JobSnapshot) -> OpenJob:
        record = self._jobs[snapshot.id] = OpenJob(handle, snapshot)
        return record

    def get(self, job_id: int) -> OpenJob | None:
        return self._jobs.get(job_id)

    def update(self, snapshot: JobSnapshot) -> OpenJob | None:
        """Note ``snapshot`` as its job's latest; None when the job is not one of these."""
        record = self._jobs.get(snapshot.id)
        if record is not None:
            record.snapshot = snapshot
        return record

    def remove(self, job_id: int) -> None:
        """Forget the job, and any preview frame of it still waiting to be drawn."""
        self._jobs.pop(job_id, None)
        if self._frames is not None:
            self._frames.drop(job_id)

    def snapshots(self) -> list[JobSnapshot]:
        return [r.snapshot for r in self._jobs.values()]

    def cancel_all(self) -> None:
        for record in list(self._jobs.values()):
            record.handle.cancel()

    def running(self) -> list[JobSnapshot]:
        return [s for s in self.snapshots() if s.state is JobState.RUNNING]

    def __contains__(self, job_id: object) -> bool:
        return job_id in self._jobs

    def __len__(self) -> int:
        return len(self._jobs)
