"""Fetch a dataset's published files and unpack them into the layout its adapter reads.

Each adapter module lists its files in ``ARCHIVES``: dicts with ``url``, optional ``sha256`` /
``md5`` (only where the distributor publishes them), optional ``options`` (the adapter options the
file serves, e.g. ``{"subset": "dev-clean"}``; absent: every option), optional ``strip`` (a top
folder of the archive whose contents are moved up into the root) and optional ``into`` (a folder
of the root to unpack the archive into instead of the root itself).
"""

from __future__ import annotations

import hashlib
import inspect
import tarfile
import urllib.parse
import urllib.request
import zipfile
from pathlib import Path

from audioprobe.datasets import ADAPTERS, with_defaults
from audioprobe.errors import AudioprobeError

CHUNK = 1 << 20
ARCHIVE_SUFFIXES = (".zip", ".tar.gz", ".tgz", ".tar")


class DownloadError(AudioprobeError):
    """A download failed, or its checksum does not match the published one."""


def fetch(
    url: str, dest: Path, sha256: str | None = None, md5: str | None = None, timeout: float = 60
) -> Path:
    """Stream ``url`` to ``dest`` through ``dest.part``, checking the given checksums."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    expected = {name: value.lower() for name, value in (("sha256", sha256), ("md5", md5)) if value}
    hashes = {name: hashlib.new(name) for name in expected}
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
    return dest


def extract(archive: Path, into: Path) -> Path:
    """Unpack a .zip, .tar.gz, .tgz or .tar archive into ``into`` (no paths outside it)."""
    into.mkdir(parents=True, exist_ok=True)
    name = archive.name.lower()
    if name.endswith(".zip"):
        with zipfile.ZipFile(archive) as zf:
            zf.extractall(into)
    elif name.endswith(ARCHIVE_SUFFIXES):
        with tarfile.open(archive) as tf:
            tf.extractall(into, filter="data")
    else:
        raise DownloadError(f"{archive}: not an archive; expected one of {ARCHIVE_SUFFIXES}")
    return into


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
) -> Path:
    """Download and unpack ``adapter``'s files into ``root``, the folder the adapter then reads.

    ``url`` (with its own ``sha256`` / ``md5``) replaces the official address of a dataset
    published as a single file, e.g. to use a mirror.
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
    for entry in entries:
        _install(entry, root)
    return root


def _install(entry: dict, root: Path) -> None:
    name = Path(urllib.parse.urlsplit(entry["url"]).path).name
    path = fetch(entry["url"], root / name, entry.get("sha256"), entry.get("md5"))
    if not name.lower().endswith(ARCHIVE_SUFFIXES):
        return
    extract(path, root / entry.get("into", ""))
    path.unlink()
    if entry.get("strip") and (root / entry["strip"]).is_dir():
        top = root / entry["strip"]
        for child in top.iterdir():
            child.rename(root / child.name)
        top.rmdir()
