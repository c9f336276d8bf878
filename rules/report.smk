rule report:
    input:
        unpack(report_inputs),
        summary="results/tables/summary.csv",
        layers="results/tables/layers.csv",
        predictions=all_predictions(),
        stores=all_stores(),
        references="report/reference_results.csv",
        source="report/report.py",
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
        config={
            key: config.get(key, {})
            for key in ("datasets", "models", "probes", "protocol", "extraction")
        },
    script:
        "../scripts/report.py"
