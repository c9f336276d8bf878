"""Null simulations of audioprobe's intervals and paired tests, through its own functions.

Single split (one trained probe per model, uncertainty over test sampling): each draw holds
``--groups`` test groups (patients, speakers) of unequal, ICBHI-like sizes (log-normal, median
12 clips, a long tail), each with its own class mix over 4 imbalanced classes (normal, crackle,
wheeze, both: the ICBHI score is defined) and its own difficulty, so clips of a group agree.
Every model predicts each clip right with the same probability given its group and class: the
models are equal, exactly exchangeable within each group. Reported:

- the false-positive rate of the paired sign-flip test at nominal 5% (two equal models);
- the coverage of the bootstrap-t interval of one model's score (of the population value,
  computed from the generating model) and of the paired difference (of 0);
- the family-wise error with five equal models when every pair is compared with Holm over all
  of them (the tables' rule), and, for contrast, when the best on test is compared with the
  other four (the rule this replaced).

k-fold (``--rounds`` rounds, five equal models): per-round scores share a round effect (a fold
is hard or easy for every model) and vary per model and round; the family-wise error of the
Nadeau-Bengio corrected t over every pair with Holm, and of best-on-test against the others.

    python bench/null_simulation.py [--draws 1000] [--groups 50] [--resamples 2000]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from scipy.special import expit

from audioprobe import statistics
from audioprobe.tables import GroupCounts, interval_estimates

CLASSES = ["both", "crackle", "normal", "wheeze"]
SHARE = np.array([0.08, 0.27, 0.53, 0.12])  # ICBHI-like class shares
EASE = np.array([-0.8, 0.0, 1.0, -0.4])  # logit of a right prediction, per class
METRICS = ["icbhi_score", "balanced_accuracy", "accuracy"]


def draw_groups(rng, n_groups: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sizes (G,), class mixes (G, C) and difficulty (G,) of test groups."""
    sizes = np.maximum(2, np.round(np.exp(rng.normal(2.5, 1.0, n_groups)))).astype(int)
    mixes = rng.dirichlet(2 * SHARE * len(SHARE), n_groups)
    return sizes, mixes, rng.normal(0.5, 1.0, n_groups)


def population(rng, n: int = 400_000) -> dict[str, float]:
    """Each metric's population value: expected counts over groups of the generating model."""
    sizes, mixes, ease = draw_groups(rng, n)
    true = (sizes[:, None] * mixes).mean(0)
    hits = (sizes[:, None] * mixes * expit(ease[:, None] + EASE)).mean(0)
    normal = CLASSES.index("normal")
    abnormal = np.arange(len(CLASSES)) != normal
    sensitivity = hits[abnormal].sum() / true[abnormal].sum()
    return {"accuracy": hits.sum() / true.sum(), "balanced_accuracy": (hits / true).mean(),
            "icbhi_score": (sensitivity + hits[normal] / true[normal]) / 2}


def split_draw(rng, n_groups: int, n_models: int) -> list[GroupCounts]:
    """Test counts of equal models on one draw of test groups."""
    sizes, mixes, ease = draw_groups(rng, n_groups)
    group = np.repeat(np.arange(n_groups), sizes)
    label = (rng.random(len(group))[:, None] > np.cumsum(mixes[group], 1)).sum(1)
    label = np.minimum(label, len(CLASSES) - 1)
    p_right = expit(ease[group] + EASE[label])
    true = np.zeros((n_groups, len(CLASSES)))
    np.add.at(true, (group, label), 1)
    models = []
    for _ in range(n_models):
        right = rng.random(len(group)) < p_right
        wrong = (label + rng.integers(1, len(CLASSES), len(group))) % len(CLASSES)
        pred = np.where(right, label, wrong)
        predicted, hits = np.zeros_like(true), np.zeros_like(true)
        np.add.at(predicted, (group, pred), 1)
        np.add.at(hits, (group[right], label[right]), 1)
        models.append(GroupCounts(true[None], predicted[None], hits[None], None, CLASSES))
    return models


def single_split(args, rng) -> dict[str, float]:
    truth = population(np.random.default_rng(12345))
    rejected, covered, covered_diff, fwer_all, fwer_best = 0, dict.fromkeys(METRICS, 0), 0, 0, 0
    for draw in range(args.draws):
        a, b = split_draw(rng, args.groups, 2)
        one = interval_estimates(a, METRICS, n_resamples=args.resamples)
        for m in METRICS:
            covered[m] += one[m].low <= truth[m] <= one[m].high
        pair = interval_estimates(a, ["icbhi_score"], b, n_resamples=args.resamples)
        pair = pair["icbhi_score"]
        rejected += pair.p_value < 0.05
        covered_diff += pair.low <= 0 <= pair.high
        if draw < args.family_draws:
            five = split_draw(rng, args.groups, 5)
            p = {(i, j): interval_estimates(five[i], ["icbhi_score"], five[j],
                                            n_resamples=args.resamples)["icbhi_score"].p_value
                 for i in range(5) for j in range(i + 1, 5)}
            fwer_all += (statistics.holm(np.array(list(p.values()))) < 0.05).any()
            observed = [float(c.scores(np.ones((1, args.groups)))["icbhi_score"][0][0])
                        for c in five]
            best = int(np.argmax(observed))
            against = [p[min(best, j), max(best, j)] for j in range(5) if j != best]
            fwer_best += (statistics.holm(np.array(against)) < 0.05).any()
    n, k = args.draws, min(args.draws, args.family_draws)
    return {"false positives, sign-flip test": rejected / n,
            **{f"coverage, {m} interval": covered[m] / n for m in METRICS},
            "coverage, paired difference interval": covered_diff / n,
            "FWER, all pairs + Holm (5 models)": fwer_all / k,
            "FWER, best on test vs others + Holm (5 models)": fwer_best / k}


def kfold(args, rng) -> dict[str, float]:
    """Five equal models over k rounds: round effect shared by all models, model x round noise,
    test/train ratio of k-fold (1 / (k - 1))."""
    ratio = 1 / (args.rounds - 1)
    fwer_all = fwer_best = 0
    for _ in range(args.draws):
        scores = (0.8 + rng.normal(0, 0.05, (1, args.rounds))
                  + rng.normal(0, 0.02, (5, args.rounds)))
        p = {(i, j): statistics.corrected_t(scores[i] - scores[j], ratio).p_value
             for i in range(5) for j in range(i + 1, 5)}
        fwer_all += (statistics.holm(np.array(list(p.values()))) < 0.05).any()
        best = int(np.argmax(scores.mean(1)))
        plain = [statistics.corrected_t(scores[best] - scores[j], 0.0).p_value
                 for j in range(5) if j != best]
        fwer_best += (statistics.holm(np.array(plain)) < 0.05).any()
    return {"FWER, all pairs, corrected t + Holm (5 models)": fwer_all / args.draws,
            "FWER, best on test vs others, plain t + Holm (5 models)": fwer_best / args.draws}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--draws", type=int, default=1000)
    parser.add_argument("--family-draws", type=int, default=1000,
                        help="draws of the five-model simulation (10 pairs each)")
    parser.add_argument("--groups", type=int, default=50)
    parser.add_argument("--resamples", type=int, default=statistics.RESAMPLES)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if min(args.draws, args.family_draws, args.resamples) < 1:
        parser.error("--draws, --family-draws and --resamples must be at least 1")
    rng = np.random.default_rng(args.seed)
    start = time.perf_counter()
    results = single_split(args, rng) | kfold(args, rng)
    print(f"{args.draws} null draws, {args.groups} unequal groups, {args.resamples} resamples "
          f"and flips, {args.rounds} rounds ({time.perf_counter() - start:.0f} s):")
    for name, value in results.items():
        print(f"  {name}: {100 * value:.1f}%")


if __name__ == "__main__":
    main()
