# One results table over all runs, beside the paper's numbers, and learning curves.


rule aggregate:
    input:
        all_metrics(),
    output:
        md=f"{RESULTS}/summary/results.md",
        csv=f"{RESULTS}/summary/results.csv",
        png=f"{RESULTS}/summary/learning_curves.png",
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
