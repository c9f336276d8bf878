rule report:
    input:
        unpack(report_inputs),
        summary="results/tables/summary.csv",
        layers="results/tables/layers.csv",
        comparisons="results/tables/comparisons.csv",
        runs="results/tables/runs.csv",
        references="report/reference_results.csv",
        source="report/page.py",
    output:
        html=report(
            "results/report/report.html",
            caption="../report/report.rst",
            category="Report",
        ),
        figures=report(
            directory("results/report/figures"),
            patterns=["{name}.png"],
            caption="../report/figures.rst",
            category="Report",
            subcategory="Figures",
        ),
    log:
        "logs/report/report.log",
    benchmark:
        "benchmarks/report/report.tsv"
    conda:
        "../envs/audioprobe.yaml"
    params:
        files=report_files,
        config={
            key: config.get(key, {})
            for key in ("datasets", "models", "probes", "protocol", "extraction")
        },
    script:
        "../scripts/render_report.py"
