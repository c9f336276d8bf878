"""fetch / extract / download_dataset against a loopback HTTP server serving fixture archives."""

from __future__ import annotations

import hashlib
import io
import shutil
import tarfile
from pathlib import Path

import pytest

from audioprobe.datasets import ADAPTERS, icbhi, speechcommands
from audioprobe.datasets.download import DownloadError, archives, download_dataset, extract, fetch
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
    root = download_dataset("esc50", tmp_path / "esc50", url=f"{base}/master.zip", md5=md5)
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
    root = download_dataset("icbhi", tmp_path / "icbhi", {"task": "recordings"})
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
    root = download_dataset("speechcommands", tmp_path / "sc", options)
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


def test_extract_refuses_paths_outside_the_target(tmp_path):
    archive = tmp_path / "evil.tar"
    with tarfile.open(archive, "w") as tf:
        member = tarfile.TarInfo("../escaped.txt")
        member.size = 3
        tf.addfile(member, io.BytesIO(b"bad"))
    with pytest.raises(tarfile.FilterError):
        extract(archive, tmp_path / "into")
    assert not (tmp_path / "escaped.txt").exists()


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
