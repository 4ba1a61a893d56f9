# One results table over all runs, beside the paper's numbers, learning curves and, per task,
# a plot of the test predictions; all in the HTML report (`snakemake --report report.html`).


rule aggregate:
    input:
        all_metrics(),
    output:
        md=f"{RESULTS}/summary/results.md",
        csv=report(f"{RESULTS}/summary/results.csv", caption="../report/results.rst", category="Results"),
        png=report(f"{RESULTS}/summary/learning_curves.png", caption="../report/learning_curves.rst",
                   category="Learning curves"),
    log:
        f"{LOGS}/aggregate.log",
    conda:
        CONDA_ENV
    params:
        notes=json.dumps(config.get("notes", {})),
        code=code_version("aggregate", *config["tasks"]),
    shell:
        "python -m eqgat aggregate --metrics {input:q} --notes {params.notes:q}"
        " --out-md {output.md:q} --out-csv {output.csv:q} --out-png {output.png:q} > {log:q} 2>&1"


rule plot_test:
    input:
        metrics=lambda wc: task_metrics(wc.task),
    output:
        report(f"{RESULTS}/summary/{{task}}/test_predictions.png", caption="../report/test_predictions.rst",
               category="Test predictions", subcategory="{task}"),
    log:
        f"{LOGS}/{{task}}/plot_test.log",
    conda:
        CONDA_ENV
    params:
        code=lambda wc: code_version("aggregate", wc.task),
    shell:
        "python -m eqgat plot-test --metrics {input.metrics:q} --out {output:q} > {log:q} 2>&1"
