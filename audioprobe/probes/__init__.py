"""Probes: the evaluation protocol (splits), the trainer, the metrics and the per-layer runs."""

ALL_LAYERS = -1  # the layer value of the weighted probe's rows (a learned mix of all layers)
