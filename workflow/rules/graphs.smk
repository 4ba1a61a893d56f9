# Radius graphs of every structure, built in parallel (Dask) into HDF5 shards + manifest.


rule build_graphs:
    input:
        graph_source,
    output:
        directory(f"{RESULTS}/{{task}}/graphs"),
    log:
        f"{LOGS}/{{task}}/graphs.log",
    conda:
        CONDA_ENV
    threads: config["preprocess"]["workers"]
    params:
        source=lambda wc: source_args(wc.task),
        graph=lambda wc: task_config(wc.task)["graph"],
        max_neighbors=lambda wc: max_neighbors_arg(task_config(wc.task)["graph"]),
        shard_size=config["preprocess"]["shard_size"],
        scheduler=scheduler_arg(),
        code=lambda wc: code_version("graphs" if wc.task == "triangle" else "graphs_atom3d"),
    shell:
        "python -m preprocess build-graphs --task {wildcards.task} {params.source} --out {output:q}"
        " --cutoff {params.graph[cutoff]} {params.max_neighbors} --shard-size {params.shard_size}"
        " --workers {threads} {params.scheduler} > {log:q} 2>&1"
