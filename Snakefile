# EQGAT workflow: data -> radius graphs (HDF5 shards) -> train/evaluate per (task, model, seed) -> results table.
# Thin entry point: configuration and rules live in workflow/.

configfile: "config/config.yaml"



include: "workflow/rules/common.smk"
include: "workflow/rules/triangle.smk"
include: "workflow/rules/download.smk"
include: "workflow/rules/graphs.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/aggregate.smk"


rule all:
    input:
        rules.aggregate.output,
    default_target: True
