"""Files for a paper's supplement: the models x datasets matrix as CSV and as a LaTeX table
(booktabs), and BibTeX for every reference the report cites."""

from __future__ import annotations

import re

import pandas as pd

from audioprobe.tables import CASE, unbeaten

# The methods the report names, beyond the published numbers of report/reference_results.csv.
METHOD_REFERENCES = {
    "kornblith2019": ("inproceedings", {
        "author": "Kornblith, Simon and Norouzi, Mohammad and Lee, Honglak and Hinton, Geoffrey",
        "title": "Similarity of Neural Network Representations Revisited",
        "booktitle": "Proceedings of the 36th International Conference on Machine Learning",
        "series": "PMLR", "volume": "97", "pages": "3519--3529", "year": "2019"}),
    "song2012": ("article", {
        "author": "Song, Le and Smola, Alex and Gretton, Arthur and Bedo, Justin and "
                  "Borgwardt, Karsten",
        "title": "Feature Selection via Dependence Maximization",
        "journal": "Journal of Machine Learning Research", "volume": "13",
        "pages": "1393--1434", "year": "2012"}),
    "nadeau2003": ("article", {
        "author": "Nadeau, Claude and Bengio, Yoshua",
        "title": "Inference for the Generalization Error", "journal": "Machine Learning",
        "volume": "52", "number": "3", "pages": "239--281", "year": "2003"}),
    "holm1979": ("article", {
        "author": "Holm, Sture",
        "title": "A Simple Sequentially Rejective Multiple Test Procedure",
        "journal": "Scandinavian Journal of Statistics", "volume": "6", "number": "2",
        "pages": "65--70", "year": "1979"}),
    "kim2018crepe": ("inproceedings", {
        "author": "Kim, Jong Wook and Salamon, Justin and Li, Peter and Bello, Juan Pablo",
        "title": "{CREPE}: A Convolutional Representation for Pitch Estimation",
        "booktitle": "IEEE International Conference on Acoustics, Speech and Signal "
                     "Processing (ICASSP)", "pages": "161--165", "year": "2018"}),
}


def matrix(summary: pd.DataFrame, datasets: list[str]) -> pd.DataFrame:
    """One row per model and probe, per dataset the headline metric's mean and 95% interval
    (``<dataset>_mean``, ``_ci_low``, ``_ci_high``) and the metric's name (``<dataset>_metric``)."""
    rows = {}
    for _, row in summary.iterrows():
        metric = row["headline_metric"]
        cells = rows.setdefault((row["model"], row["probe"]), {"model": row["model"],
                                                                "probe": row["probe"]})
        cells |= {f"{row['dataset']}_metric": metric,
                  f"{row['dataset']}_mean": row[f"{metric}_mean"],
                  f"{row['dataset']}_ci_low": row[f"{metric}_ci_low"],
                  f"{row['dataset']}_ci_high": row[f"{metric}_ci_high"]}
    columns = ["model", "probe"] + [f"{d}_{part}" for d in datasets
                                    for part in ("metric", "mean", "ci_low", "ci_high")]
    return pd.DataFrame(list(rows.values())).reindex(columns=columns)


def latex_escape(text: str) -> str:
    return re.sub(r"([&%$#_{}])", r"\\\1", str(text)).replace("~", r"\textasciitilde{}")


def latex_matrix(frame: pd.DataFrame, datasets: list[str], comparisons: pd.DataFrame) -> str:
    """The matrix as a booktabs table: mean and [95% interval] per dataset; in bold, as in the
    report, the models no other model with the same probe beats (:func:`tables.unbeaten`), not
    the highest mean."""
    bold = {(d, p): unbeaten(comparisons, d, p) for d in datasets for p in frame["probe"].unique()}
    metrics = [str(frame[f"{d}_metric"].dropna().iloc[0]).replace("_", " ")
               if frame[f"{d}_metric"].notna().any() else "" for d in datasets]
    lines = [r"\begin{tabular}{ll" + "c" * len(datasets) + "}", r"\toprule",
             " & ".join(["Model", "Probe", *map(latex_escape, datasets)]) + r" \\",
             " & ".join(["", "", *[latex_escape(m) for m in metrics]]) + r" \\", r"\midrule"]
    for _, row in frame.iterrows():
        cells = []
        for d in datasets:
            mean, low, high = row[f"{d}_mean"], row[f"{d}_ci_low"], row[f"{d}_ci_high"]
            if pd.isna(mean):
                cells.append("--")
                continue
            text = f"{mean:.3f}"
            if row["model"] in bold[d, row["probe"]]:
                text = rf"\textbf{{{text}}}"
            if pd.notna(low) and pd.notna(high):
                text += rf" {{\scriptsize [{low:.3f}, {high:.3f}]}}"
            cells.append(text)
        lines.append(" & ".join([latex_escape(row["model"]), latex_escape(row["probe"]),
                                 *cells]) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}",
              "% bold: no other model with the same probe beats it (Holm-adjusted p < 0.05 over",
              "% the dataset's comparisons, results/tables/comparisons.csv); intervals: 95%", ""]
    return "\n".join(lines)


# Full records of the sources of report/reference_results.csv, by its ``source`` column: the
# paper each published number comes from, or for a repository's README its maintainers. A
# source not listed here gets a @misc entry (source, year, link) and fails the supplement test.
SOURCE_REFERENCES = {
    "ESC-50 dataset README": ("piczak2021esc50readme", "misc", {
        "author": "Piczak, Karol J.",
        "title": "{ESC-50}: Dataset for Environmental Sound Classification "
                 "(repository README, results table)",
        "howpublished": r"\url{https://github.com/karolpiczak/ESC-50}", "year": "2021"}),
    "ESC-50 dataset README (piczak2015a)": ("piczak2015esc", "inproceedings", {
        "author": "Piczak, Karol J.",
        "title": "{ESC}: Dataset for Environmental Sound Classification",
        "booktitle": "Proceedings of the 23rd ACM International Conference on Multimedia",
        "pages": "1015--1018", "year": "2015", "doi": "10.1145/2733373.2806390"}),
    "ESC-50 dataset README (piczak2015b)": ("piczak2015cnn", "inproceedings", {
        "author": "Piczak, Karol J.",
        "title": "Environmental Sound Classification with Convolutional Neural Networks",
        "booktitle": "IEEE 25th International Workshop on Machine Learning for Signal "
                     "Processing (MLSP)", "year": "2015", "doi": "10.1109/MLSP.2015.7324337"}),
    "EVAR (nttcslab/eval-audio-repr README, linear evaluation)": ("niizumi2025evar", "misc", {
        "author": "Niizumi, Daisuke",
        "title": "{EVAR}: Evaluation Package for Audio Representations (repository README, "
                 "linear evaluation results)",
        "howpublished": r"\url{https://github.com/nttcslab/eval-audio-repr}", "year": "2025"}),
    "HEAR 2021 (hear-leaderboard)": ("turian2022hear", "inproceedings", {
        "author": "Turian, Joseph and Shier, Jordie and Khan, Humair Raj and Raj, Bhiksha "
                  "and others",
        "title": "{HEAR}: Holistic Evaluation of Audio Representations",
        "booktitle": "Proceedings of the NeurIPS 2021 Competitions and Demonstrations Track",
        "series": "PMLR", "volume": "176", "pages": "125--145", "year": "2022",
        "note": r"Leaderboard: \url{https://hearbenchmark.com}"}),
    "SUPERB (Interspeech 2021 paper, superbbenchmark.org)": ("yang2021superb", "inproceedings", {
        "author": "Yang, Shu-wen and Chi, Po-Han and Chuang, Yung-Sung and others",
        "title": "{SUPERB}: Speech Processing Universal {PERformance} Benchmark",
        "booktitle": "Proceedings of Interspeech 2021", "pages": "1194--1198", "year": "2021",
        "note": r"Leaderboard: \url{https://superbbenchmark.org}"}),
    "X-ARES (2025, README table)": ("zhang2025xares", "inproceedings", {
        "author": "Zhang, Junbo and Dinkel, Heinrich and Niu, Yadong and Liu, Chenyu and "
                  "Cheng, Si and Zhao, Anbei and Luan, Jian",
        "title": "{X-ARES}: A Comprehensive Framework for Assessing Audio Encoder Performance",
        "booktitle": "Proceedings of Interspeech 2025", "year": "2025",
        "eprint": "2505.16369", "archiveprefix": "arXiv",
        "note": r"Results table: \url{https://github.com/jimbozhang/xares}"}),
    "PaddleSpeech ESC-50 example": ("paddlespeech_esc50", "misc", {
        "author": "{PaddlePaddle Authors}",
        "title": "{PaddleSpeech}: {ESC-50} example (repository README, results table)",
        "howpublished": r"\url{https://github.com/PaddlePaddle/PaddleSpeech}"}),
    "BTS (Kim et al., Interspeech 2024)": ("kim2024bts", "inproceedings", {
        "author": "Kim, June-Woo and Toikkanen, Miika and Choi, Yera and Moon, Seoung-Eun and "
                  "Jung, Ho-Young",
        "title": "{BTS}: Bridging Text and Sound Modalities for Metadata-Aided Respiratory "
                 "Sound Classification",
        "booktitle": "Proceedings of Interspeech 2024", "year": "2024",
        "eprint": "2406.06786", "archiveprefix": "arXiv"}),
    "Patch-Mix contrastive learning (Bae et al., Interspeech 2023)": (
        "bae2023patchmix", "inproceedings", {
            "author": "Bae, Sangmin and Kim, June-Woo and Cho, Won-Yang and Baek, Hyerim and "
                      "Son, Soyoun and Lee, Byungjo and Ha, Changwan and Tae, Kyongpil and "
                      "Kim, Sungnyun and Yun, Se-Young",
            "title": "Patch-Mix Contrastive Learning with Audio Spectrogram Transformer on "
                     "Respiratory Sound Classification",
            "booktitle": "Proceedings of Interspeech 2023", "year": "2023",
            "eprint": "2305.14032", "archiveprefix": "arXiv"}),
    "SG-SCL (Kim et al., ICASSP 2024)": ("kim2024sgscl", "inproceedings", {
        "author": "Kim, June-Woo and Bae, Sangmin and Cho, Won-Yang and Lee, Byungjo and "
                  "Jung, Ho-Young",
        "title": "Stethoscope-Guided Supervised Contrastive Learning for Cross-Domain "
                 "Adaptation on Respiratory Sound Classification",
        "booktitle": "IEEE International Conference on Acoustics, Speech and Signal "
                     "Processing (ICASSP)", "year": "2024",
        "eprint": "2312.09603", "archiveprefix": "arXiv"}),
}


def bib_key(source: str, year: str) -> str:
    """A BibTeX key from a reference's source and year."""
    words = re.findall(r"[A-Za-z0-9]+", source)
    return "".join(w.lower() for w in words[:3]) + (year or "nd")


def bibtex(references: pd.DataFrame) -> str:
    """BibTeX of the report's method references and of every source of the published numbers:
    its full record (``SOURCE_REFERENCES``), else a @misc entry of the source, year and link
    as the reference table gives them."""
    entries = [(key, kind, fields) for key, (kind, fields) in METHOD_REFERENCES.items()]
    seen = set()
    for _, row in references.drop_duplicates(["source", "year", "link"]).iterrows():
        if row["source"] in SOURCE_REFERENCES:
            key, kind, fields = SOURCE_REFERENCES[row["source"]]
            if key not in seen:
                seen.add(key)
                entries.append((key, kind, fields))
            continue
        key = bib_key(row["source"], row["year"])
        while key in seen:
            key += "a"
        seen.add(key)
        fields = {"title": "{" + latex_escape(row["source"]) + "}"}
        if row["year"]:
            fields["year"] = row["year"]
        if row["link"]:
            fields["howpublished"] = rf"\url{{{row['link']}}}"
        entries.append((key, "misc", fields))
    return "\n".join(
        f"@{kind}{{{key},\n" + "".join(f"  {name} = {{{value}}},\n" for name, value in
                                       fields.items()) + "}\n"
        for key, kind, fields in entries)


def write(summary: pd.DataFrame, comparisons: pd.DataFrame, references: pd.DataFrame,
          datasets: list[str], csv_path: str, latex_path: str, bib_path: str) -> None:
    """Write the matrix (CSV and LaTeX) and the BibTeX file."""
    frame = matrix(summary.sort_values(CASE), datasets)
    frame.to_csv(csv_path, index=False, float_format="%.6g")
    with open(latex_path, "w") as out:
        out.write(latex_matrix(frame, datasets, comparisons))
    with open(bib_path, "w") as out:
        out.write(bibtex(references))
