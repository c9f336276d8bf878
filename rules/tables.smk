rule summary:
    input:
        runs=all_probe_runs(),
    output:
        runs="results/tables/runs.csv",
        summary=report(
            "results/tables/summary.csv",
            caption="../report/summary.rst",
            category="Tables",
        ),
    log:
        "logs/summary/summary.log",
    benchmark:
        "benchmarks/summary/summary.tsv"
    conda:
        "../envs/audioprobe.yaml"
    script:
        "../scripts/summary.py"
