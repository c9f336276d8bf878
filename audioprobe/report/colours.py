"""Colours of models and classes: colour-blind safe, one colour per model in every figure.

Models take the Okabe-Ito palette in the run's model order (a model keeps its colour in every
figure of a report); past eight, colours repeat with another line style. Classes take the same
eight colours, each with its own marker shape, so that no two classes of a map look alike; maps
of more than ``MAX_CLASSES`` classes colour by outcome instead (see ``errors``).
"""

from __future__ import annotations

# Okabe & Ito (2008), "Color Universal Design": distinguishable with every common colour-vision
# deficiency.
OKABE_ITO = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442",
             "#000000"]
LINE_STYLES = ["-", "--", "-.", ":"]
MARKERS = ["o", "s", "^", "D", "v", "P", "X", "*"]
MAX_CLASSES = 30  # above this, a legend of classes is unreadable: maps colour by outcome


def model_styles(models: list[str]) -> dict[str, dict]:
    """Per model, in the run's order: its colour and line style (``color``, ``linestyle``)."""
    return {m: {"color": OKABE_ITO[i % len(OKABE_ITO)],
                "linestyle": LINE_STYLES[i // len(OKABE_ITO) % len(LINE_STYLES)]}
            for i, m in enumerate(models)}


def class_styles(classes: list[str]) -> dict[str, dict]:
    """Per class (sorted): a colour and a marker shape, no two classes the same pair."""
    return {c: {"color": OKABE_ITO[i % len(OKABE_ITO)],
                "marker": MARKERS[i // len(OKABE_ITO) % len(MARKERS)]}
            for i, c in enumerate(sorted(classes))}
