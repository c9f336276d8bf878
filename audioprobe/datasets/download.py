"""Fetch a dataset's published files and unpack them into the layout its adapter reads.

Each adapter module lists its files in ``ARCHIVES``: dicts with ``url``, optional ``sha256`` /
``md5`` (the distributor's, or where it publishes none, those other loaders check the same file
against, the source named beside them), optional ``options`` (the adapter options the
file serves, e.g. ``{"subset": "dev-clean"}``; absent: every option), optional ``strip`` (a top
folder of the archive whose contents are moved up into the root) and optional ``into`` (a folder
of the root to unpack the archive into instead of the root itself).

Transfers go through pooch's ``HTTPDownloader`` (requests), driven by ``ResumingDownloader``, a
pooch downloader that continues a partial file ``<name>.part`` with an HTTP ``Range`` request
(and starts it over when the server answers with the whole file). ``fetch`` retries a dropped or
failed transfer ``ATTEMPTS`` times, each one resuming, and keeps the partial file when it gives
up, so that the same command resumes it later; only a checksum mismatch deletes it. pooch's own
retries (``retrieve``, ``Pooch.fetch``) stream each attempt into a fresh temporary file that they
delete on failure, which is what resuming must avoid; hence this loop around its downloader. The
progress bar is pooch's progress-bar protocol drawn by tqdm into the log, one line at most every
``PROGRESS_EVERY`` seconds, not a carriage-return stream. pooch rather than Snakemake's HTTP
storage plugin: the files a dataset needs depend on its adapter's options (``ARCHIVES``), and
the job that fetches them checks and unpacks them and deletes each archive once unpacked. With
the plugin (0.3.1), an archive would be a Snakemake input fetched into Snakemake's local storage
before the job, without a checksum, written anew on each attempt (no resume), by one more
package to install where Snakemake runs.

Archives are untrusted input: every member is checked before anything is written (``check_tar``,
``check_zip``), whatever the Python version's own ``tarfile`` filters do. A member is refused, with
its name, when its path is absolute or has a ``..`` component, when it would resolve outside the
folder it is unpacked into, when it is a symbolic link (no dataset archive needs one; a link is
what lets later members escape, as in CVE-2025-4517), a hard link to anything but a file earlier
in the same archive, or a device, FIFO or socket. A file fetched without a checksum is logged
with the sha256 it was found to have, so that it can be pinned.
"""

from __future__ import annotations

import hashlib
import inspect
import logging
import os
import shutil
import stat
import tarfile
import time
import urllib.parse
import zipfile
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

import pooch
import requests
from tqdm import tqdm

from audioprobe.datasets import ADAPTERS, with_defaults
from audioprobe.errors import AudioprobeError, UnsafeArchiveError

log = logging.getLogger(__name__)

CHUNK = 1 << 20
ARCHIVE_SUFFIXES = (".zip", ".tar.gz", ".tgz", ".tar")
UNIX = 3  # a zip member's create_system whose external attributes hold a Unix file mode
ATTEMPTS = 5  # transfers of one file before giving up; each one resumes the partial file
WAIT = 2.0  # seconds before the second attempt, doubled before each later one
PROGRESS_EVERY = 10.0  # seconds between two progress lines in the log
TRANSIENT_STATUS = (408, 416, 429)  # client errors worth another attempt (and every 5xx)


class DownloadError(AudioprobeError):
    """A download failed, or its checksum does not match the published one."""


class _LogLines:
    """A text stream for tqdm that logs each refreshed bar as one line (no carriage returns)."""

    def write(self, text: str) -> None:
        for line in text.replace("\r", "\n").split("\n"):
            if line.strip():
                log.info("%s", line.strip())

    def flush(self) -> None:
        pass


class _LogProgress:
    """pooch's progress-bar protocol (``total``, ``update``, ``reset``, ``close``) for a
    transfer that continues ``offset`` bytes already on disk: a tqdm bar of the whole file."""

    def __init__(self, name: str, offset: int) -> None:
        self.name, self.offset, self.bar = name, offset, None

    @property
    def total(self) -> int | None:
        return None if self.bar is None else self.bar.total

    @total.setter
    def total(self, remaining: int) -> None:  # pooch sets the response's content-length
        self.bar = tqdm(total=self.offset + remaining if remaining else None, initial=self.offset,
                        desc=self.name, unit="B", unit_scale=True, unit_divisor=1024, ascii=True,
                        ncols=100, mininterval=PROGRESS_EVERY, file=_LogLines())

    def update(self, n: int) -> None:
        self.bar.update(n)

    def reset(self) -> None:  # pooch resets the bar, then fills it to the total, when done
        self.bar.n = self.offset

    def close(self, size: int | None = None) -> None:
        if self.bar is not None:
            if size is not None:  # pooch counts whole chunks: show the bytes on disk
                self.bar.n = size
            self.bar.close()
            self.bar = None


class ResumingDownloader:
    """A pooch downloader (``downloader(url, output_file, pooch)``) that continues the partial
    file ``output_file`` from its size with an HTTP ``Range`` request, through pooch's
    ``HTTPDownloader``; a server that ignores the range sends the whole file, which then
    replaces the partial one."""

    def __init__(self, timeout: float = 60) -> None:
        self.timeout = timeout

    def __call__(self, url: str, output_file: str | Path, pooch_: Any = None,
                 check_only: bool = False) -> bool | None:
        if check_only:
            return pooch.HTTPDownloader(timeout=self.timeout)(url, output_file, pooch_, True)
        with open(output_file, "ab") as out:  # every write lands at the end
            offset = out.tell()
            progress = _LogProgress(Path(output_file).name.removesuffix(".part"), offset)
            complete = False

            def started(response: requests.Response, *args: Any, **kwargs: Any) -> None:
                nonlocal complete
                if response.status_code == 200 and offset:
                    log.info("%s does not resume downloads; fetching the whole file again", url)
                    out.seek(0)
                    out.truncate()
                    progress.offset = 0
                elif response.status_code == 206 and not response.headers.get(
                        "Content-Range", "").startswith(f"bytes {offset}-"):
                    raise requests.exceptions.ContentDecodingError(
                        f"the server resumed at {response.headers.get('Content-Range')!r}, "
                        f"not at byte {offset}")
                elif response.status_code == 416:  # nothing left after ``offset``, or less
                    complete = response.headers.get("Content-Range") == f"bytes */{offset}"
                    if not complete:
                        out.seek(0)
                        out.truncate()

            headers = {"Accept-Encoding": "identity"}
            if offset:
                headers["Range"] = f"bytes={offset}-"
                log.info("resuming %s at byte %d", url, offset)
            transfer = pooch.HTTPDownloader(progressbar=progress, chunk_size=CHUNK,
                                            timeout=self.timeout, headers=headers,
                                            hooks={"response": started})
            try:
                transfer(url, out, pooch_)
            except requests.HTTPError:
                if not complete:
                    raise
            finally:
                out.flush()
                progress.close(out.tell())
        return None


def _transient(error: requests.RequestException) -> bool:
    """Whether another attempt may succeed: a dropped connection, a timeout, a server error."""
    if isinstance(error, requests.HTTPError):
        status = error.response.status_code if error.response is not None else 500
        return status >= 500 or status in TRANSIENT_STATUS
    return isinstance(error, (requests.ConnectionError, requests.Timeout,
                              requests.exceptions.ChunkedEncodingError,
                              requests.exceptions.ContentDecodingError))


def fetch(url: str, dest: Path, sha256: str | None = None, md5: str | None = None,
          timeout: float = 60, attempts: int | None = None, wait: float | None = None) -> Path:
    """Download ``url`` to ``dest`` through ``dest.part``, resuming, retrying and checking the
    given checksums (see the module docstring); ``attempts`` and ``wait`` default to
    ``ATTEMPTS`` and ``WAIT``."""
    return _fetch(url, dest, sha256, md5, timeout, attempts, wait)[0]


def _fetch(url: str, dest: Path, sha256: str | None, md5: str | None, timeout: float = 60,
           attempts: int | None = None, wait: float | None = None) -> tuple[Path, str]:
    """``fetch``, returning the file and its sha256."""
    attempts, wait = attempts or ATTEMPTS, WAIT if wait is None else wait
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    if dest.exists() and not part.exists():  # fetched by an earlier run that failed later on:
        dest.replace(part)  # checked again (the server has nothing left to send)
    download = ResumingDownloader(timeout)
    for attempt in range(1, attempts + 1):
        try:
            download(url, part)
            break
        except requests.RequestException as exc:
            reason = " ".join(str(exc).split())
            if not _transient(exc) or attempt == attempts:
                tries = f" after {attempt} attempts" if attempt > 1 else ""
                raise DownloadError(f"could not download {url} to {dest}{tries}: {reason}"
                                    f"{_kept(part)}") from exc
            pause = wait * 2 ** (attempt - 1)
            log.warning("download of %s failed (attempt %d of %d: %s); resuming in %g s",
                        url, attempt, attempts, reason, pause)
            time.sleep(pause)
        except OSError as exc:  # the local disk: full, or not writable
            raise DownloadError(f"could not write {part}: {exc}{_kept(part)}") from exc
    expected = {name: value.lower() for name, value in (("sha256", sha256), ("md5", md5)) if value}
    digests = _digests(part, {"sha256", *expected})
    for name, want in expected.items():
        if digests[name] != want:
            part.unlink()
            raise DownloadError(f"checksum mismatch for {url}: expected {name} {want}, "
                                f"got {digests[name]}; the download was removed")
    part.replace(dest)
    return dest, digests["sha256"]


def _kept(part: Path) -> str:
    """Where the bytes fetched so far wait for the next attempt; an empty part is removed."""
    if part.exists() and part.stat().st_size:
        return (f"; the {part.stat().st_size} bytes fetched are kept in {part}, and the same "
                "command resumes from there")
    part.unlink(missing_ok=True)
    return ""


def _digests(path: Path, names: set[str]) -> dict[str, str]:
    """The hex digests ``names`` (hashlib algorithms) of the file, in one pass over it."""
    hashes = {name: hashlib.new(name) for name in names}
    with path.open("rb") as stream:
        for chunk in iter(lambda: stream.read(CHUNK), b""):
            for digest in hashes.values():
                digest.update(chunk)
    return {name: digest.hexdigest() for name, digest in hashes.items()}


def extract(archive: Path, into: Path) -> Path:
    """Unpack a .zip, .tar.gz, .tgz or .tar archive into ``into``, every member checked first:
    an unsafe member (see the module docstring) refuses the whole archive before anything is
    written (``into`` is not even created)."""
    name = archive.name.lower()
    if name.endswith(".zip"):
        with zipfile.ZipFile(archive) as zf:
            check_zip(zf, into)
            into.mkdir(parents=True, exist_ok=True)
            zf.extractall(into)
    elif name.endswith(ARCHIVE_SUFFIXES):
        with tarfile.open(archive) as tf:
            members = check_tar(tf, into)
            into.mkdir(parents=True, exist_ok=True)
            # the checks above are what protects; the data filter stays as a second line
            tf.extractall(into, members=members, filter="data")
    else:
        raise DownloadError(f"{archive}: not an archive; expected one of {ARCHIVE_SUFFIXES}")
    return into


def _refuse(archive: str, member: str, why: str) -> UnsafeArchiveError:
    return UnsafeArchiveError(f"refusing to unpack {archive}: member {member!r} {why}; "
                              "nothing was unpacked")


def _relative_parts(archive: str, name: str, link: str | None = None) -> tuple[str, ...]:
    """The components of member ``name``'s path (or of its hard ``link``'s target), refused if
    absolute or climbing with ``..``. Backslashes count as separators."""
    path = name if link is None else link
    what = "has" if link is None else f"links to {link!r}, which has"
    if "\0" in path:
        raise _refuse(archive, name, f"{what} a NUL byte in its name")
    posix = path.replace("\\", "/")
    if PurePosixPath(posix).is_absolute() or PureWindowsPath(path).drive:
        raise _refuse(archive, name, f"{what} an absolute path")
    parts = tuple(p for p in posix.split("/") if p not in ("", "."))
    if ".." in parts:
        raise _refuse(archive, name, f"{what} a '..' component")
    return parts


def _inside(archive: str, name: str, base: str, parts: tuple[str, ...]) -> None:
    """Refuse a member whose path resolves outside ``base`` (the real path of the folder it is
    unpacked into) through what is already on disk there."""
    if os.path.commonpath([base, os.path.realpath(os.path.join(base, *parts))]) != base:
        raise _refuse(archive, name, "resolves outside the folder it is unpacked into")


def check_tar(tf: tarfile.TarFile, into: Path) -> list[tarfile.TarInfo]:
    """Every member of ``tf`` if all are safe to unpack into ``into``; else UnsafeArchiveError."""
    archive, base = Path(tf.name or "archive").name, os.path.realpath(into)
    files: set[tuple[str, ...]] = set()
    members = tf.getmembers()
    for member in members:
        parts = _relative_parts(archive, member.name)
        if member.issym():
            raise _refuse(archive, member.name, f"is a symbolic link (to {member.linkname!r}), "
                          "which is never unpacked")
        if member.islnk():
            target = _relative_parts(archive, member.name, member.linkname)
            if target not in files:
                raise _refuse(archive, member.name, f"is a hard link to {member.linkname!r}, "
                              "not to a file earlier in the archive")
        elif not (member.isreg() or member.isdir()):
            raise _refuse(archive, member.name, "is a device, FIFO or other special file")
        _inside(archive, member.name, base, parts)
        if member.isreg():
            files.add(parts)
    return members


def check_zip(zf: zipfile.ZipFile, into: Path) -> None:
    """Refuse (UnsafeArchiveError) a zip with a member that is unsafe to unpack into ``into``:
    zipfile itself would rewrite a bad path silently rather than refuse it."""
    archive, base = Path(zf.filename or "archive").name, os.path.realpath(into)
    for info in zf.infolist():
        parts = _relative_parts(archive, info.filename)
        mode = info.external_attr >> 16 if info.create_system == UNIX else 0
        if stat.S_ISLNK(mode):
            raise _refuse(archive, info.filename, "is a symbolic link, which is never unpacked")
        if stat.S_IFMT(mode) not in (0, stat.S_IFREG, stat.S_IFDIR):
            raise _refuse(archive, info.filename, "is a device, FIFO or other special file")
        _inside(archive, info.filename, base, parts)


def archives(adapter: str, options: dict | None = None) -> list[dict]:
    """The published files the adapter needs for ``options`` (its defaults filled in)."""
    if adapter not in ADAPTERS:
        raise KeyError(f"unknown dataset adapter {adapter!r}; known: {sorted(ADAPTERS)}")
    build = ADAPTERS[adapter]
    entries = getattr(inspect.getmodule(build), "ARCHIVES", [])
    if not entries:
        raise DownloadError(f"dataset adapter {adapter!r} has no download; put its files in place")
    chosen = with_defaults(adapter, options)
    matching = [
        entry
        for entry in entries
        if all(str(chosen.get(k)) == str(v) for k, v in entry.get("options", {}).items())
    ]
    if not matching:
        raise DownloadError(
            f"dataset adapter {adapter!r}: no published files for options {options}"
        )
    return matching


def download_dataset(
    adapter: str,
    root: Path,
    options: dict | None = None,
    url: str | None = None,
    sha256: str | None = None,
    md5: str | None = None,
    downloads: Path | None = None,
) -> list[dict]:
    """Download and unpack ``adapter``'s files into ``root``, the folder the adapter then reads;
    return one record per file fetched: its ``url``, ``sha256`` and ``checked`` (the checksums it
    was checked against; empty for a file that has none, which is also logged as a warning).

    ``url`` (with its own ``sha256`` / ``md5``) replaces the official address of a dataset
    published as a single file, e.g. to use a mirror. Archives are fetched into ``downloads``
    (default: ``.<root>.downloads`` beside the root) and deleted once unpacked (or refused).
    On any failure, a ``root`` this call made is removed again; ``downloads`` keeps a partial
    archive for the next call to resume, and is removed when it holds nothing.
    """
    entries = archives(adapter, options)
    if url is not None:
        if len(entries) != 1:
            raise DownloadError(f"dataset adapter {adapter!r} needs {len(entries)} files; "
                                "a single url cannot replace them")
        entries = [{**entries[0], "url": url, "sha256": sha256, "md5": md5}]
    elif sha256 or md5:
        raise ValueError("sha256/md5 check a url given with them; the official files carry theirs")
    root = Path(root)
    downloads = Path(downloads) if downloads else root.with_name(f".{root.name}.downloads")
    made = not root.exists()
    try:
        records = [_install(entry, root, downloads) for entry in entries]
    except BaseException:
        if made:
            shutil.rmtree(root, ignore_errors=True)
        if downloads.is_dir() and not any(downloads.iterdir()):
            downloads.rmdir()
        raise
    shutil.rmtree(downloads, ignore_errors=True)
    return records


def _install(entry: dict, root: Path, downloads: Path) -> dict:
    name = Path(urllib.parse.urlsplit(entry["url"]).path).name
    target = root if not name.lower().endswith(ARCHIVE_SUFFIXES) else downloads
    path, sha256 = _fetch(entry["url"], target / name, entry.get("sha256"), entry.get("md5"))
    checked = [kind for kind in ("sha256", "md5") if entry.get(kind)]
    if not checked:
        log.warning("%s has no checksum to check; the file fetched has sha256 %s: pin it with "
                    "download: {url: %s, sha256: %s}", entry["url"], sha256, entry["url"], sha256)
    record = {"url": entry["url"], "sha256": sha256, "checked": checked}
    if target == root:
        return record
    try:
        extract(path, root / entry.get("into", ""))
    finally:
        path.unlink()
    if entry.get("strip") and (root / entry["strip"]).is_dir():
        top = root / entry["strip"]
        for child in top.iterdir():
            child.rename(root / child.name)
        top.rmdir()
    return record


def unverified_notes(records: list[dict]) -> list[str]:
    """Manifest notes for the fetched files that had no checksum to check, with their sha256."""
    return [f"{r['url']} was downloaded without a checksum to check; its sha256 is {r['sha256']} "
            f"(pin it with download: {{url: {r['url']}, sha256: {r['sha256']}}})"
            for r in records if not r.get("checked")]
