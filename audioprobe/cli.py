"""Command line: ``audioprobe label PROBE AUDIO...`` prints the top-k classes of each file.

The workflow has no command of its own here: Snakemake is its interface, as ``--help`` says.
"""

from __future__ import annotations

import argparse
import json
import sys

from audioprobe import __version__
from audioprobe.errors import AudioprobeError

DESCRIPTION = """\
Probe frozen audio representations layer by layer.

Snakemake is the interface to the workflow: run it from a checkout of audioprobe, e.g. the demo
(synthetic data, CREPE tiny, its random-weights control, log-mel):

  snakemake --cores 8 --resources gpu=1

then open results/report/report.html. Datasets, models and probes are set in config.yaml
(see the README). This command labels new audio with a probe the workflow trained."""

LABEL_EPILOG = """\
exit status: 0 when every file was labelled, 1 when any file was skipped (its reason is in the
'skipped' column), 2 when the probe cannot be used (not a probe file, or its model's weights
changed since it was trained) or an argument is wrong."""


def positive(text: str) -> int:
    """A whole number of at least 1, for ``--top``."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of at least 1")
    return value


def parser() -> argparse.ArgumentParser:
    """The ``audioprobe`` argument parser."""
    main_parser = argparse.ArgumentParser(
        prog="audioprobe", description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    main_parser.add_argument("--version", action="version", version=f"audioprobe {__version__}")
    commands = main_parser.add_subparsers(dest="command", required=True)
    labeller = commands.add_parser(
        "label", help="label audio files with a trained probe", epilog=LABEL_EPILOG,
        description="Print the top classes of each audio file with their probabilities.")
    labeller.add_argument("probe", help="results/probes/{dataset}/{model}/{probe}.pt")
    labeller.add_argument("audio", nargs="+", help="audio files")
    labeller.add_argument("--top", type=positive, default=5, help="classes per file (default 5)")
    output = labeller.add_mutually_exclusive_group()
    output.add_argument("--json", action="store_const", dest="format", const="json",
                        help="print a JSON list of rows (file, rank, class, probability, "
                             "skipped) instead of a table")
    output.add_argument("--csv", action="store_const", dest="format", const="csv",
                        help="print CSV with the same columns instead of a table")
    return main_parser


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    from audioprobe.probes.label import label

    try:
        table = label(args.audio, args.probe, args.top)
    except (AudioprobeError, FileNotFoundError) as exc:
        print(f"audioprobe: {exc}", file=sys.stderr)
        return 2
    if args.format == "json":
        # pandas' JSON (NaN as null), written again without its escaped slashes in paths
        print(json.dumps(json.loads(table.to_json(orient="records")), indent=2))
    elif args.format == "csv":
        table.to_csv(sys.stdout, index=False)
    else:
        print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    skipped = int((table["skipped"] != "").sum())  # one row per skipped file
    if skipped:
        print(f"audioprobe: {skipped} of {len(args.audio)} files skipped", file=sys.stderr)
    return 1 if skipped else 0


if __name__ == "__main__":
    sys.exit(main())
