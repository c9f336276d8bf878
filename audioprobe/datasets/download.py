"""Fetch a dataset's published files and unpack them into the layout its adapter reads.

Each adapter module lists its files in ``ARCHIVES``: dicts with ``url``, optional ``sha256`` /
``md5`` (the distributor's, or where it publishes none, those other loaders check the same file
against, the source named beside them), optional ``options`` (the adapter options the
file serves, e.g. ``{"subset": "dev-clean"}``; absent: every option), optional ``strip`` (a top
folder of the archive whose contents are moved up into the root) and optional ``into`` (a folder
of the root to unpack the archive into instead of the root itself).

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
import urllib.parse
import urllib.request
import zipfile
from pathlib import Path, PurePosixPath, PureWindowsPath

from audioprobe.datasets import ADAPTERS, with_defaults
from audioprobe.errors import AudioprobeError, UnsafeArchiveError

log = logging.getLogger(__name__)

CHUNK = 1 << 20
ARCHIVE_SUFFIXES = (".zip", ".tar.gz", ".tgz", ".tar")
UNIX = 3  # a zip member's create_system whose external attributes hold a Unix file mode


class DownloadError(AudioprobeError):
    """A download failed, or its checksum does not match the published one."""


def fetch(
    url: str, dest: Path, sha256: str | None = None, md5: str | None = None, timeout: float = 60
) -> Path:
    """Stream ``url`` to ``dest`` through ``dest.part``, checking the given checksums."""
    return _fetch(url, dest, sha256, md5, timeout)[0]


def _fetch(url: str, dest: Path, sha256: str | None, md5: str | None, timeout: float = 60
           ) -> tuple[Path, str]:
    """``fetch``, returning the file and its sha256 (computed while streaming)."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    expected = {name: value.lower() for name, value in (("sha256", sha256), ("md5", md5)) if value}
    hashes = {name: hashlib.new(name) for name in {"sha256", *expected}}
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, part.open("wb") as out:
            for chunk in iter(lambda: response.read(CHUNK), b""):
                out.write(chunk)
                for digest in hashes.values():
                    digest.update(chunk)
        for name, want in expected.items():
            got = hashes[name].hexdigest()
            if got != want:
                raise DownloadError(f"checksum mismatch for {url}: expected {name} {want}, "
                                    f"got {got}; the partial download was removed")
    except OSError as exc:  # urllib.error.URLError and HTTPError included
        part.unlink(missing_ok=True)
        raise DownloadError(f"could not download {url} to {dest}: {exc}") from exc
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    part.replace(dest)
    return dest, hashes["sha256"].hexdigest()


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
) -> list[dict]:
    """Download and unpack ``adapter``'s files into ``root``, the folder the adapter then reads;
    return one record per file fetched: its ``url``, ``sha256`` and ``checked`` (the checksums it
    was checked against; empty for a file that has none, which is also logged as a warning).

    ``url`` (with its own ``sha256`` / ``md5``) replaces the official address of a dataset
    published as a single file, e.g. to use a mirror. On any failure, a ``root`` this call made
    is removed again, and so is every file it fetched into a ``root`` that was there before.
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
    made = not root.exists()
    try:
        return [_install(entry, root) for entry in entries]
    except BaseException:
        if made:
            shutil.rmtree(root, ignore_errors=True)
        raise


def _install(entry: dict, root: Path) -> dict:
    name = Path(urllib.parse.urlsplit(entry["url"]).path).name
    path, sha256 = _fetch(entry["url"], root / name, entry.get("sha256"), entry.get("md5"))
    checked = [kind for kind in ("sha256", "md5") if entry.get(kind)]
    if not checked:
        log.warning("%s has no checksum to check; the file fetched has sha256 %s: pin it with "
                    "download: {url: %s, sha256: %s}", entry["url"], sha256, entry["url"], sha256)
    record = {"url": entry["url"], "sha256": sha256, "checked": checked}
    if not name.lower().endswith(ARCHIVE_SUFFIXES):
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
