"""The "reproduce this" block: the commit, the config as run, the exact command, the package
versions and the manifests' digests."""

from __future__ import annotations

import hashlib
import platform
from pathlib import Path

import yaml

COMMAND = "snakemake --cores all --resources gpu=1 --configfile config.run.yaml"


def digest(path: Path) -> str:
    """The SHA-256 of a file, or "missing"."""
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except OSError:
        return "missing"


def block(config: dict, commit: str | None, manifests: dict[str, Path],
          packages: dict[str, str]) -> str:
    """A shell-style recipe that runs this report's workflow again on the same data."""
    lines = ["# 1. the workflow at the commit that made this report",
             f"git checkout {commit.split()[0] if commit else '<not a git checkout>'}"]
    if commit and "uncommitted" in commit:
        lines.append("# (the run had uncommitted changes: the commit alone is not the code)")
    lines += ["", f"# 2. the software (Python {platform.python_version()})",
              "pip install " + " ".join(f"'{name}=={version}'"
                                        for name, version in sorted(packages.items())
                                        if version and version[0].isdigit()),
              "", "# 3. the configuration as run",
              "cat > config.run.yaml <<'EOF'",
              yaml.safe_dump(config, sort_keys=False).rstrip(), "EOF",
              "", "# 4. the same data: each manifest's SHA-256 must match",
              *[f"# {name}: {digest(path)}  {path}" for name, path in sorted(manifests.items())],
              "", "# 5. run", COMMAND]
    return "\n".join(lines)
