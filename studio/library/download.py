"""Downloading one file over HTTP(S) with resume, progress, cancel and a sha256. No Qt, no torch.

Plain ``urllib`` (no huggingface_hub: catalog files live on ordinary web servers). Bytes stream to
``<target>.part``; a later call resumes it with a ``Range`` request (a server that ignores the range
answers 200 and the file starts over); the finished file gets its final name by an atomic rename,
so a half-downloaded model never looks complete. The sha256 is computed while streaming (and over
the resumed prefix first) and checked when the catalog knows it.
"""

from __future__ import annotations

import hashlib
import os
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from studio.core.jobs import CancelToken, JobCancelled, UserFacingError

CHUNK = 1 << 16
USER_AGENT = "Studio-downloader/1"


class _NoCredentialsElsewhere(urllib.request.HTTPRedirectHandler):
    """Follow redirects, but never send an Authorization header to another host (the Hugging
    Face Hub redirects large files to a CDN with a signed URL that refuses a second credential)."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):  # noqa: ANN001 - urllib API
        new = super().redirect_request(req, fp, code, msg, headers, newurl)
        if new is not None and urllib.parse.urlsplit(newurl).netloc != \
                urllib.parse.urlsplit(req.full_url).netloc:
            new.remove_header("Authorization")
        return new


_opener = urllib.request.build_opener(_NoCredentialsElsewhere)


@dataclass
class DownloadResult:
    path: Path
    sha256: str
    size: int
    resumed_from: int = 0


def _hash_prefix(part: Path) -> tuple[hashlib._Hash, int]:
    digest = hashlib.sha256()
    size = 0
    with open(part, "rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
            size += len(chunk)
    return digest, size


def download_file(url: str, target: Path, *, expected_sha256: str = "",
                  progress: Callable[[int, int], None] | None = None,
                  cancel: CancelToken | None = None, timeout: float = 30.0,
                  headers: dict[str, str] | None = None) -> DownloadResult:
    """Fetch ``url`` into ``target``; ``progress(done_bytes, total_bytes or 0)``.

    ``headers`` are added to the request (e.g. an access token); an Authorization header is not
    passed on when the server redirects to another host.

    A cancel leaves the ``.part`` file for a later resume and raises :class:`JobCancelled`.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    part = target.with_name(target.name + ".part")
    offset = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT, **(headers or {})})
    if offset:
        request.add_header("Range", f"bytes={offset}-")
    try:
        response = _opener.open(request, timeout=timeout)  # noqa: S310 - http(s) only
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and offset:  # the part file is already complete
            digest, size = _hash_prefix(part)
            return _finish(part, target, digest.hexdigest(), size, expected_sha256, offset)
        raise UserFacingError(f"Download failed: {url} answered {exc.code} {exc.reason}.") \
            from exc
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise UserFacingError(f"Download failed: cannot reach {url} ({reason}). Check the "
                              "internet connection.") from exc
    with response:
        resumed = offset if response.status == 206 else 0
        if resumed:
            digest, done = _hash_prefix(part)
        else:
            digest, done = hashlib.sha256(), 0
        length = int(response.headers.get("Content-Length") or 0)
        total = resumed + length if length else 0
        if progress:
            progress(done, total)
        with open(part, "ab" if resumed else "wb") as out:
            while True:
                if cancel is not None and cancel.cancelled:
                    raise JobCancelled()
                try:
                    chunk = response.read(CHUNK)
                except OSError as exc:
                    raise UserFacingError(f"Download interrupted after {done} bytes ({exc}); "
                                          "start it again to resume.") from exc
                if not chunk:
                    break
                out.write(chunk)
                digest.update(chunk)
                done += len(chunk)
                if progress:
                    progress(done, total)
            out.flush()
            os.fsync(out.fileno())
    if total and done < total:
        raise UserFacingError(f"Download incomplete ({done} of {total} bytes); start it again "
                              "to resume.")
    return _finish(part, target, digest.hexdigest(), done, expected_sha256, resumed)


def _finish(part: Path, target: Path, sha: str, size: int, expected: str,
            resumed: int) -> DownloadResult:
    if expected and sha.lower() != expected.lower():
        part.unlink(missing_ok=True)
        raise UserFacingError(f"The downloaded file's sha256 is {sha}, not the expected "
                              f"{expected}; it was deleted. Try again.")
    os.replace(part, target)
    return DownloadResult(target, sha, size, resumed)
