# EQGAT workflow: data -> radius graphs (HDF5 shards) -> train/evaluate per (task, model, seed) -> results table.
# Thin entry point: configuration and rules live in workflow/; `snakemake --report report.html`
# gives the HTML report.

configfile: "config/config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/triangle.smk"
include: "workflow/rules/download.smk"
include: "workflow/rules/graphs.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/aggregate.smk"
include: "workflow/rules/predict.smk"


rule all:
    input:
        all_outputs(),
    default_target: True
