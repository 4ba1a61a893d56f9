# Training and test evaluation for every (task, model, seed).


rule train:
    input:
        graphs=f"{RESULTS}/{{task}}/graphs",
    output:
        best=f"{RESULTS}/{{task}}/runs/{{model}}/seed{{seed}}/best.pt",
        log_csv=f"{RESULTS}/{{task}}/runs/{{model}}/seed{{seed}}/log.csv",
        summary=f"{RESULTS}/{{task}}/runs/{{model}}/seed{{seed}}/train.json",
    log:
        f"{LOGS}/{{task}}/{{model}}/seed{{seed}}/train.log",
    conda:
        CONDA_ENV
    # a run that stops before its deadline (exit 75, resume state kept outside the outputs) is
    # started again and resumes where it stopped; only by the main Snakemake process: the one
    # inside a SLURM job would retry in the job whose time is up
    retries: config["train_retries"] if workflow.is_main_process else 0
    threads: config["train_threads"] * RANKS
    resources:
        **train_resources(),
    params:
        section=lambda wc: train_section(wc.task, wc.model),
        device=config["device"],
        amp="--amp" if config["mixed_precision"] else "--no-amp",
        tensorboard="--tensorboard" if config["tensorboard"] else "--no-tensorboard",
        run_dir=lambda wc: run_dir(wc.task, wc.model, wc.seed),
        code=lambda wc: code_version("train", wc.task),
    shell:
        "python -m eqgat.launch --ranks {resources.ranks} --threads {resources.cpus_per_task} --gpus-per-rank {resources.gpus_per_rank} --"
        " --task {wildcards.task:q} --model {wildcards.model:q} --seed {wildcards.seed:q}"
        " --data {input.graphs:q} --out {params.run_dir:q} --device {params.device:q} {params.amp} {params.tensorboard}"
        " --threads {resources.cpus_per_task} --section {params.section:q} > {log:q} 2>&1"


rule evaluate:
    input:
        graphs=f"{RESULTS}/{{task}}/graphs",
        best=rules.train.output.best,
    output:
        metrics=f"{RESULTS}/{{task}}/runs/{{model}}/seed{{seed}}/metrics.json",
        predictions=f"{RESULTS}/{{task}}/runs/{{model}}/seed{{seed}}/test_predictions.csv",
    log:
        f"{LOGS}/{{task}}/{{model}}/seed{{seed}}/evaluate.log",
    conda:
        CONDA_ENV
    threads: config["train_threads"]
    resources:
        gpu=config["gpus_per_run"],
    params:
        section=lambda wc: train_section(wc.task, wc.model),
        device=config["device"],
        code=lambda wc: code_version("evaluate", wc.task),
    shell:
        "python -m eqgat evaluate --task {wildcards.task:q} --seed {wildcards.seed:q} --data {input.graphs:q}"
        " --checkpoint {input.best:q} --out {output.metrics:q} --predictions {output.predictions:q}"
        " --section {params.section:q} --device {params.device:q} --threads {threads} > {log:q} 2>&1"
