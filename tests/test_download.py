"""fetch / extract / download_dataset against a loopback HTTP server serving fixture archives,
and crafted archives that try to write outside the dataset's root."""

from __future__ import annotations

import hashlib
import io
import logging
import os
import shutil
import stat
import subprocess
import sys
import tarfile
import threading
import time
import zipfile
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from audioprobe.datasets import ADAPTERS, download, esc50, icbhi, nsynth, speechcommands
from audioprobe.datasets.download import (
    DownloadError, archives, download_dataset, extract, fetch, unverified_notes,
)
from audioprobe.errors import UnsafeArchiveError
from tests.conftest import REPO
from tests.fixtures import layouts


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_fetch_and_extract_tar_gz(tmp_path, server):
    served, base = server
    layouts.make_urbansound8k(tmp_path / "src" / "UrbanSound8K")
    archive = Path(shutil.make_archive(str(served / "UrbanSound8K"), "gztar", tmp_path / "src"))
    got = fetch(f"{base}/{archive.name}", tmp_path / "dl" / archive.name, sha256=sha256_of(archive))
    assert got.read_bytes() == archive.read_bytes()
    assert not got.with_name(got.name + ".part").exists()
    extract(got, tmp_path / "data")
    df = ADAPTERS["urbansound8k"](tmp_path / "data" / "UrbanSound8K")
    assert len(df) == len(layouts.URBANSOUND8K_ROWS)


def test_download_dataset_zip_strips_the_top_folder(tmp_path, server):
    served, base = server
    layouts.make_esc50(tmp_path / "src" / "ESC-50-master")
    archive = Path(shutil.make_archive(str(served / "master"), "zip", tmp_path / "src"))
    md5 = hashlib.md5(archive.read_bytes()).hexdigest()
    root = tmp_path / "esc50"
    (record,) = download_dataset("esc50", root, url=f"{base}/master.zip", md5=md5)
    assert record == {"url": f"{base}/master.zip", "sha256": sha256_of(archive), "checked": ["md5"]}
    assert sorted(p.name for p in root.iterdir()) == ["audio", "meta"]  # archive removed
    assert len(ADAPTERS["esc50"](root)) == len(layouts.ESC50_ROWS)


def test_download_dataset_fetches_archives_and_plain_files(tmp_path, server, monkeypatch):
    served, base = server
    want = layouts.make_icbhi(tmp_path / "src")
    names = ["ICBHI_final_database.zip", "ICBHI_challenge_train_test.txt",
             "ICBHI_Challenge_diagnosis.txt"]
    shutil.make_archive(str(served / "ICBHI_final_database"), "zip", tmp_path / "src",
                        "ICBHI_final_database")
    for name in names[1:]:
        shutil.copy(tmp_path / "src" / name, served / name)
    monkeypatch.setattr(icbhi, "ARCHIVES", [{"url": f"{base}/{name}"} for name in names])
    root = tmp_path / "icbhi"
    download_dataset("icbhi", root, {"task": "recordings"})
    assert sorted(p.name for p in root.iterdir()) == sorted(["ICBHI_final_database", *names[1:]])
    assert len(ADAPTERS["icbhi"](root, task="recordings")) == want["recordings"]["n"]


def test_download_unpacks_the_speech_commands_test_set_into_its_folder(tmp_path, server,
                                                                       monkeypatch):
    served, base = server
    want = layouts.make_speechcommands(tmp_path / "src", test_set=True)["task12"]["test_set"]
    test_set = "speech_commands_test_set_v0.02"
    shutil.make_archive(str(served / test_set), "gztar", tmp_path / "src" / test_set)
    shutil.move(tmp_path / "src" / test_set, tmp_path / test_set)
    shutil.make_archive(str(served / "speech_commands_v0.02"), "gztar", tmp_path / "src")
    official = [a for a in speechcommands.ARCHIVES if a["options"]["version"] == 2]
    assert [a.get("into") for a in official] == [None, test_set]
    monkeypatch.setattr(speechcommands, "ARCHIVES", [
        a | {"url": f"{base}/{Path(a['url']).name}", "md5": None, "sha256": None}
        for a in official])
    options = {"task": "12", "official_test": True}
    root = tmp_path / "sc"
    download_dataset("speechcommands", root, options)
    assert (root / test_set / "_silence_").is_dir() and (root / "yes").is_dir()
    df = ADAPTERS["speechcommands"](root, **options)
    assert df["split"].value_counts().to_dict() == want["per_split"]


@pytest.mark.parametrize("kind", ["sha256", "md5"])
def test_wrong_checksum_is_refused_and_leaves_nothing(tmp_path, server, kind):
    served, base = server
    (served / "data.tar").write_bytes(b"not what was published")
    dest = tmp_path / "dl" / "data.tar"
    wrong = "0" * (64 if kind == "sha256" else 32)
    url = f"{base}/data.tar"
    with pytest.raises(DownloadError) as caught:
        fetch(url, dest, **{kind: wrong})
    message = str(caught.value)
    assert url in message and f"expected {kind} {wrong}" in message
    got = getattr(hashlib, kind)(b"not what was published").hexdigest()
    assert f"got {got}" in message
    assert list(dest.parent.iterdir()) == []


def test_missing_url_is_a_clear_error(tmp_path, server):
    _, base = server
    dest = tmp_path / "dl" / "nothing.zip"
    with pytest.raises(DownloadError, match="nothing.zip"):
        fetch(f"{base}/nothing.zip", dest)
    assert list(dest.parent.iterdir()) == []


def test_archives_follow_the_adapter_options():
    assert [a["options"] for a in archives("speechcommands")] == [{"version": 2}]
    assert [a["options"] for a in archives("speechcommands", {"version": 1})] == [{"version": 1}]
    test_set = archives("speechcommands", {"version": 1, "task": "12", "official_test": True})
    assert [a["url"].rsplit("/", 1)[1] for a in test_set] == [
        "speech_commands_v0.01.tar.gz", "speech_commands_test_set_v0.01.tar.gz"]
    assert len(archives("speechcommands", {"task": "12"})) == 1
    (dev,) = archives("librispeech", {"subset": "dev-clean"})
    assert dev["url"].endswith("/dev-clean.tar.gz") and len(dev["sha256"]) == 64
    assert archives("librispeech")[0]["options"] == {"subset": "train-clean-100"}
    assert len(archives("nsynth")) == 3 and len(archives("icbhi")) == 3
    with pytest.raises(DownloadError, match="custom"):
        archives("custom")
    with pytest.raises(DownloadError, match="needs 3 files"):
        download_dataset("nsynth", Path("unused"), url="http://127.0.0.1:9/x.tar.gz")


def test_official_archives_carry_checksums_and_use_https():
    """esc50 and nsynth carry the MD5s HEAR (and soundata) check them against; ICBHI publishes
    none (its files are fetched unchecked, each logged and noted with its sha256)."""
    assert [a["md5"] for a in esc50.ARCHIVES] == ["7771e4b9d86d0945acce719c7a59305a"]
    assert [a["md5"] for a in nsynth.ARCHIVES] == [
        "fde6665a93865503ba598b9fac388660", "87e94a00a19b6dbc99cf6d4c0c0cae87",
        "5e6f8719bf7e16ad0a00d518b78af77d"]
    assert not any(a.get("md5") or a.get("sha256") for a in icbhi.ARCHIVES)
    for adapter in ("esc50", "urbansound8k", "speechcommands", "nsynth", "librispeech", "icbhi"):
        for entry in archives(adapter):
            assert entry["url"].startswith("https://"), entry["url"]


def test_a_file_without_a_checksum_is_logged_with_its_sha256(tmp_path, server, caplog):
    served, base = server
    layouts.make_esc50(tmp_path / "src" / "ESC-50-master")
    archive = Path(shutil.make_archive(str(served / "master"), "zip", tmp_path / "src"))
    url = f"{base}/master.zip"
    with caplog.at_level(logging.WARNING, logger="audioprobe.datasets.download"):
        records = download_dataset("esc50", tmp_path / "esc50", url=url)
    digest = sha256_of(archive)
    assert records == [{"url": url, "sha256": digest, "checked": []}]
    (warning,) = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert url in warning and digest in warning and "sha256" in warning
    (note,) = unverified_notes(records)
    assert url in note and digest in note
    assert unverified_notes([{**records[0], "checked": ["md5"]}]) == []


# --- a throttled server that drops connections: retries, resume, progress ----------------------

STEP = 64 << 10  # bytes the throttled server sends at a time


class Throttled(BaseHTTPRequestHandler):
    """Serves ``server.data`` at any path, ``STEP`` bytes every ``server.delay`` seconds,
    honouring ``Range: bytes=N-``; the i-th response stops (the connection dropped) after
    ``server.drop(i)`` bytes of its body (None: never). Records each request's Range header and
    every body byte sent."""

    def do_GET(self) -> None:
        server = self.server
        asked = self.headers.get("Range")
        server.ranges.append(asked)
        start = int(asked.removeprefix("bytes=").rstrip("-")) if asked else 0
        if start >= len(server.data):
            self.send_response(416)
            self.send_header("Content-Range", f"bytes */{len(server.data)}")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(206 if asked else 200)
        if asked:
            self.send_header("Content-Range", f"bytes {start}-{len(server.data) - 1}/"
                                              f"{len(server.data)}")
        self.send_header("Content-Length", str(len(server.data) - start))
        self.end_headers()
        limit = server.drop(len(server.ranges) - 1)
        body = server.data[start:start + limit] if limit is not None else server.data[start:]
        for i in range(0, len(body), STEP):
            self.wfile.write(body[i:i + STEP])
            server.sent += len(body[i:i + STEP])
            time.sleep(server.delay)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def throttled(monkeypatch) -> Iterator[Callable[..., tuple[ThreadingHTTPServer, str]]]:
    """Start throttled servers on 127.0.0.1: ``serve(data, drop)`` gives (server, url)."""
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    servers = []

    def serve(data: bytes, drop: Callable[[int], int | None], delay: float = 0.005
              ) -> tuple[ThreadingHTTPServer, str]:
        httpd = ThreadingHTTPServer(("127.0.0.1", 0), Throttled)
        httpd.data, httpd.drop, httpd.delay, httpd.ranges, httpd.sent = data, drop, delay, [], 0
        threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05},
                         daemon=True).start()
        servers.append(httpd)
        return httpd, f"http://127.0.0.1:{httpd.server_address[1]}/archive.tar.gz"

    yield serve
    for httpd in servers:
        httpd.shutdown()
        httpd.server_close()


PAYLOAD = os.urandom(4 << 20)

JOB = """
import sys
from audioprobe.datasets import download
from audioprobe.joblog import to_file
download.PROGRESS_EVERY, download.CHUNK = 0.05, 1 << 16
to_file(sys.argv[1])
download.fetch(sys.argv[2], sys.argv[3], sha256=sys.argv[4], wait=0)
"""


def test_a_dropped_download_resumes_and_the_job_log_shows_progress(tmp_path, throttled):
    """As a download job runs it (its log through joblog.to_file): the connection drops after
    1 MiB, the next attempt asks for the rest with a Range request, and no byte is sent twice;
    the log holds a readable progress bar (lines, no carriage returns)."""
    httpd, url = throttled(PAYLOAD, lambda i: 1 << 20 if i == 0 else None)
    log, dest = tmp_path / "job.log", tmp_path / "dl" / "archive.tar.gz"
    digest = hashlib.sha256(PAYLOAD).hexdigest()
    subprocess.run([sys.executable, "-c", JOB, str(log), url, str(dest), digest], check=True,
                   env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=120)
    assert dest.read_bytes() == PAYLOAD and not dest.with_name(dest.name + ".part").exists()
    assert httpd.ranges == [None, f"bytes={1 << 20}-"]
    assert httpd.sent == len(PAYLOAD)
    text = log.read_text()
    assert "\r" not in text
    assert "failed (attempt 1 of 5" in text and f"resuming {url} at byte {1 << 20}" in text
    bars = [line for line in text.splitlines() if "archive.tar.gz:" in line]
    assert bars[-1].split("archive.tar.gz: ")[1].startswith("100%"), bars[-1]
    assert "4.00M/4.00M" in bars[-1]
    assert 3 <= len(bars) < 200, len(bars)  # refreshed at most every PROGRESS_EVERY seconds
    assert any(" 25%|" in line for line in bars)  # where the first attempt stopped


def test_a_server_that_keeps_failing_gives_one_line_and_keeps_the_partial_file(
        tmp_path, throttled, monkeypatch):
    monkeypatch.setattr(download, "CHUNK", STEP)
    httpd, url = throttled(PAYLOAD, lambda i: 2 * STEP)
    dest = tmp_path / "dl" / "archive.tar.gz"
    part = dest.with_name(dest.name + ".part")
    digest = hashlib.sha256(PAYLOAD).hexdigest()
    with pytest.raises(DownloadError) as caught:
        fetch(url, dest, sha256=digest, attempts=3, wait=0)
    message = str(caught.value)
    assert "\n" not in message and "after 3 attempts" in message and str(part) in message
    assert httpd.ranges == [None, f"bytes={2 * STEP}-", f"bytes={4 * STEP}-"]
    assert part.read_bytes() == PAYLOAD[:6 * STEP] and not dest.exists()
    # the next run resumes where the last attempt stopped
    healthy, url = throttled(PAYLOAD, lambda i: None, delay=0)
    assert fetch(url, dest, sha256=digest, wait=0).read_bytes() == PAYLOAD
    assert healthy.ranges == [f"bytes={6 * STEP}-"] and healthy.sent == len(PAYLOAD) - 6 * STEP


def test_a_server_without_range_support_restarts_and_a_finished_file_is_checked_again(
        tmp_path, server):
    """A partial file the server cannot resume is fetched whole; a whole file left by an
    earlier run that failed later is checked again (the test server ignores Range)."""
    served, base = server
    (served / "data.tar").write_bytes(PAYLOAD)
    dest = tmp_path / "dl" / "data.tar"
    dest.parent.mkdir()
    dest.with_name("data.tar.part").write_bytes(b"stale partial bytes")
    digest = hashlib.sha256(PAYLOAD).hexdigest()
    assert fetch(f"{base}/data.tar", dest, sha256=digest).read_bytes() == PAYLOAD
    assert fetch(f"{base}/data.tar", dest, sha256=digest).read_bytes() == PAYLOAD
    with pytest.raises(DownloadError, match="checksum mismatch"):
        fetch(f"{base}/data.tar", dest, sha256="0" * 64)
    assert list(dest.parent.iterdir()) == []


def test_a_failed_dataset_download_keeps_its_partial_archive_for_the_next_call(
        tmp_path, throttled, monkeypatch):
    monkeypatch.setattr(download, "CHUNK", STEP)
    monkeypatch.setattr(download, "ATTEMPTS", 1)
    layouts.make_esc50(tmp_path / "src" / "ESC-50-master")
    archive = Path(shutil.make_archive(str(tmp_path / "master"), "zip", tmp_path / "src"))
    data = archive.read_bytes()
    root, downloads = tmp_path / "esc50", tmp_path / "dl"
    _, url = throttled(data, lambda i: STEP)
    with pytest.raises(DownloadError, match="resumes from there"):
        download_dataset("esc50", root, url=url.replace(".tar.gz", ".zip"), downloads=downloads)
    assert not root.exists() and (downloads / "archive.zip.part").stat().st_size == STEP
    healthy, url = throttled(data, lambda i: None, delay=0)
    download_dataset("esc50", root, url=url.replace(".tar.gz", ".zip"), downloads=downloads)
    assert healthy.ranges == [f"bytes={STEP}-"] and not downloads.exists()
    assert len(ADAPTERS["esc50"](root)) == len(layouts.ESC50_ROWS)


# --- crafted archives: nothing may land outside the root ---------------------------------------

def tar_bytes(*members: tuple[tarfile.TarInfo, bytes | None]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tf:
        for info, data in members:
            if data is not None:
                info.size = len(data)
            tf.addfile(info, io.BytesIO(data) if data is not None else None)
    return buffer.getvalue()


def member(name: str, kind: bytes = tarfile.REGTYPE, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, link
    return info


def cve_2025_4517_tar(root: Path, escape: str) -> bytes:
    """The published proof of concept of CVE-2025-4517, sized for ``root``: sixteen symbolic
    links each to a directory with a long name, so that ``os.path.realpath`` of a link at the end
    of the chain passes PATH_MAX and is left unresolved; that link points back to ``root``, so a
    symbolic link ``escape`` through it, which the data filter of Python < 3.11.13 takes to stay
    inside, reaches ``root/../escape``; then a hard link to an existing file out there, that file
    overwritten, and a new file written out there."""
    steps = "abcdefghijklmnop"
    component = "d" * ((4095 - len(str(root))) // len(steps) - 1)
    members, path = [], ""
    for step in steps:
        members.append((member(os.path.join(path, component), tarfile.DIRTYPE), None))
        members.append((member(os.path.join(path, step), tarfile.SYMTYPE, component), None))
        path = os.path.join(path, component)
    linkpath = os.path.join(*steps, "l" * 254)
    members.append((member(linkpath, tarfile.SYMTYPE, "../" * len(steps)), None))
    members.append((member("escape", tarfile.SYMTYPE, f"{linkpath}/../{escape}"), None))
    members.append((member("flaglink", tarfile.LNKTYPE, "escape/victim"), None))
    members.append((member("flaglink"), b"overwritten\n"))
    members.append((member("escape/newfile"), b"new\n"))
    return tar_bytes(*members)


def zip_bytes(name: str, data: bytes = b"x", mode: int = stat.S_IFREG | 0o644) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        info = zipfile.ZipInfo(name)
        info.external_attr = mode << 16
        zf.writestr(info, data)
    return buffer.getvalue()


@pytest.fixture
def victim(tmp_path) -> Path:
    """A file outside the dataset root that an archive tries to overwrite."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "victim").write_text("original\n")
    return outside / "victim"


def refused(tmp_path: Path, server, victim: Path, name: str, data: bytes) -> str:
    """Serve ``data`` as ``name`` and download it as ESC-50 from that url, into
    ``tmp_path/data/esc50``; check the download is refused and leaves nothing behind, inside the
    root or out; return the one-line message."""
    served, base = server
    (served / name).write_bytes(data)
    root = tmp_path / "data" / "esc50"
    with pytest.raises(UnsafeArchiveError) as caught:
        download_dataset("esc50", root, url=f"{base}/{name}")
    message = str(caught.value)
    assert "\n" not in message and name in message and "nothing was unpacked" in message
    assert not root.exists() and list((tmp_path / "data").iterdir()) == []
    assert victim.read_text() == "original\n"
    assert sorted(p.name for p in victim.parent.iterdir()) == ["victim"]
    assert not (tmp_path / "escaped.txt").exists() and not (tmp_path / "data/escaped.txt").exists()
    return message


def test_cve_2025_4517_archive_is_refused(tmp_path, server, victim):
    root = tmp_path / "data" / "esc50"
    data = cve_2025_4517_tar(root, "../outside")  # root/.. is tmp_path/data
    message = refused(tmp_path, server, victim, "poc.tar", data)
    assert "symbolic link" in message


@pytest.mark.parametrize("attack, members, why", [
    ("dotdot", [(member("ESC-50-master/../../escaped.txt"), b"bad")], "'..' component"),
    ("absolute", [(member("/ABS/outside/new"), b"bad")], "absolute path"),
    ("symlink", [(member("link", tarfile.SYMTYPE, "../../outside"), None),
                 (member("link/new"), b"bad")], "symbolic link"),
    ("absolute-symlink", [(member("link", tarfile.SYMTYPE, "/ABS/outside"), None),
                          (member("link/new"), b"bad")], "symbolic link"),
    ("hardlink", [(member("hard", tarfile.LNKTYPE, "../../outside/victim"), None),
                  (member("hard"), b"overwritten\n")], "'..' component"),
    ("hardlink-absolute", [(member("hard", tarfile.LNKTYPE, "/ABS/outside/victim"), None),
                           (member("hard"), b"overwritten\n")], "absolute path"),
    ("device", [(member("null", tarfile.CHRTYPE), None)], "device"),
    ("fifo", [(member("pipe", tarfile.FIFOTYPE), None)], "device, FIFO"),
])
def test_tar_attack_is_refused_naming_the_member(tmp_path, server, victim, attack, members, why):
    for info, _ in members:
        info.name = info.name.replace("/ABS", str(tmp_path))
        info.linkname = info.linkname.replace("/ABS", str(tmp_path))
    data = tar_bytes(*members)
    message = refused(tmp_path, server, victim, f"{attack}.tar.gz" if attack == "dotdot"
                      else f"{attack}.tar", data if attack != "dotdot" else _gzip(data))
    assert why in message and repr(members[0][0].name) in message


def _gzip(data: bytes) -> bytes:
    import gzip

    return gzip.compress(data)


@pytest.mark.parametrize("attack, name, data, mode, why", [
    ("dotdot", "ESC-50-master/../../escaped.txt", b"x", stat.S_IFREG, "'..' component"),
    ("absolute", "/ABS/outside/new", b"x", stat.S_IFREG, "absolute path"),
    ("backslash", "..\\..\\escaped.txt", b"x", stat.S_IFREG, "'..' component"),
    ("symlink", "link", b"../../outside", stat.S_IFLNK, "symbolic link"),
    ("fifo", "pipe", b"", stat.S_IFIFO, "device, FIFO"),
])
def test_zip_attack_is_refused_naming_the_member(tmp_path, server, victim, attack, name, data,
                                                  mode, why):
    name = name.replace("/ABS", str(tmp_path))
    message = refused(tmp_path, server, victim, f"{attack}.zip", zip_bytes(name, data, mode | 0o644))
    assert why in message and repr(name) in message


def test_an_existing_symlink_in_the_target_is_not_followed(tmp_path, victim):
    """Members are checked against what is on disk too: a link already in the folder an archive
    is unpacked into does not carry a member out of it."""
    into = tmp_path / "into"
    into.mkdir()
    (into / "link").symlink_to(victim.parent)
    archive = tmp_path / "a.tar"
    archive.write_bytes(tar_bytes((member("link/new"), b"bad")))
    with pytest.raises(UnsafeArchiveError, match="resolves outside"):
        extract(archive, into)
    assert sorted(p.name for p in victim.parent.iterdir()) == ["victim"]


def test_plain_archives_with_a_hard_link_to_an_earlier_file_unpack(tmp_path):
    archive = tmp_path / "ok.tar"
    archive.write_bytes(tar_bytes((member("./d", tarfile.DIRTYPE), None),
                                  (member("./d/a.txt"), b"a\n"),
                                  (member("./d/b.txt", tarfile.LNKTYPE, "./d/a.txt"), None)))
    extract(archive, tmp_path / "into")
    assert (tmp_path / "into/d/b.txt").read_text() == "a\n"
    later = tmp_path / "later.tar"
    later.write_bytes(tar_bytes((member("b.txt", tarfile.LNKTYPE, "a.txt"), None),
                                (member("a.txt"), b"a\n")))
    with pytest.raises(UnsafeArchiveError, match="not to a file earlier"):
        extract(later, tmp_path / "later")
    assert not (tmp_path / "later").exists()
