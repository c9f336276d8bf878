"""Fetch a dataset's published files into its root, then write the flag the manifest rule needs.

The files are unpacked into a hidden sibling of the root (``.<root>.<dataset>.part``) that is
renamed to the root only once every file is fetched, checked and unpacked, so a root that exists is
complete: an interrupted or failed download leaves no root behind, and the flag is written last.
Archives are fetched into another hidden sibling, ``.<root>.<dataset>.downloads``, which keeps a
partial archive when the download fails, for the next run of the job to resume (HTTP ``Range``).
A root that already holds files (put in place by hand, or by an earlier run) is kept as it is.
The flag lists the files fetched with their sha256; the manifest rule turns those fetched without
a checksum to check into notes.
"""

import json
import logging
import os
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))

from audioprobe.datasets.download import download_dataset
from audioprobe.joblog import to_file

to_file(snakemake.log[0])
log = logging.getLogger("download_dataset")

spec = snakemake.params.spec
download = spec.get("download") or {}
root = Path(spec["root"])
flag = Path(snakemake.output.flag)


def present(path: Path) -> bool:
    """A file, or a folder with something in it."""
    return path.is_file() or (path.is_dir() and any(path.iterdir()))


if present(root):
    log.info("%s already holds the dataset; nothing downloaded", root)
    fetched, files = False, []
else:
    # Named after the dataset too: two datasets may read one root (e.g. ICBHI cycles and
    # recordings), and their download jobs may run at the same time.
    partial = root.with_name(f".{root.name}.{snakemake.wildcards.dataset}.part")
    downloads = root.with_name(f".{root.name}.{snakemake.wildcards.dataset}.downloads")
    shutil.rmtree(partial, ignore_errors=True)  # left by an interrupted earlier run
    log.info("downloading dataset %s (%s) into %s", snakemake.wildcards.dataset,
             spec["adapter"], root)
    try:
        files = download_dataset(spec["adapter"], partial, spec.get("options", {}),
                                 url=download.get("url"), sha256=download.get("sha256"),
                                 md5=download.get("md5"), downloads=downloads)
        if present(root):
            log.info("%s was filled by another job meanwhile; this download is discarded", root)
            shutil.rmtree(partial)
            fetched, files = False, []
        else:
            if root.is_dir():
                root.rmdir()  # an empty folder made beforehand
            root.parent.mkdir(parents=True, exist_ok=True)
            os.replace(partial, root)
            fetched = True
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    log.info("dataset %s ready in %s", snakemake.wildcards.dataset, root)

flag.parent.mkdir(parents=True, exist_ok=True)
flag.write_text(json.dumps({
    "dataset": snakemake.wildcards.dataset,
    "adapter": spec["adapter"],
    "root": str(root),
    "url": download.get("url"),
    "fetched": fetched,
    "files": files,
}, indent=2) + "\n")
