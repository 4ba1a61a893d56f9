# Radius graphs of every structure, built in parallel (Dask) into HDF5 shards + manifest.


# The stamp build_graphs depends on: written once before the first build, rewritten by
# graph_check (common.smk) when the finished graphs are found damaged, so that they are rebuilt.
rule graphs_check:
    output:
        f"{RESULTS}/{{task}}/graphs.check",
    log:
        f"{LOGS}/{{task}}/graphs_check.log",
    localrule: True
    conda:
        CONDA_ENV
    shell:
        "echo 'no damage found in the graphs (rewritten, naming it, when a shard goes missing)' > {output:q} 2> {log:q}"


rule build_graphs:
    input:
        graph_source,
        check=graph_check,
    output:
        directory(f"{RESULTS}/{{task}}/graphs"),
    log:
        f"{LOGS}/{{task}}/graphs.log",
    conda:
        CONDA_ENV
    threads: config["preprocess"]["workers"]
    params:
        source=lambda wc: source_location(wc.task),
        options=lambda wc: source_options(wc.task),
        cutoff=lambda wc: section(wc.task)["graph"]["cutoff"],
        max_neighbors=lambda wc: section(wc.task)["graph"]["max_neighbors"] or -1,
        max_degree=lambda wc: section(wc.task)["graph"]["max_degree"] or -1,
        shard_size=config["preprocess"]["shard_size"],
        scheduler=config["preprocess"].get("scheduler") or "",
        dask_slurm=dask_slurm(),
        code=lambda wc: code_version("graphs", wc.task),
        files=lambda wc: folder_listing(wc.task),
    shell:
        "python -m eqgat.tasks build-graphs --task {wildcards.task:q} --source {params.source:q} --out {output:q}"
        " --options {params.options:q} --cutoff {params.cutoff:q} --max-neighbors {params.max_neighbors:q}"
        " --max-degree {params.max_degree:q}"
        " --shard-size {params.shard_size:q} --workers {threads} --scheduler={params.scheduler:q}"
        " --dask-slurm={params.dask_slurm:q} > {log:q} 2>&1"
