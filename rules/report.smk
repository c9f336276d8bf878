rule report:
    input:
        unpack(report_inputs),
        summary=rules.summary.output.summary,
        layers=rules.summary.output.layers,
        comparisons=rules.comparisons.output.comparisons,
        runs=rules.summary.output.runs,
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
