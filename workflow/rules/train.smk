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
    threads: config["train_threads"]
    resources:
        gpu=config["gpus_per_run"],
    wildcard_constraints:
        seed=r"\d+",
    params:
        train=train_params,
        model=model_params,
        device=config["device"],
        amp="--amp" if config["mixed_precision"] else "",
        run_dir=lambda wc: run_dir(wc.task, wc.model, wc.seed),
        code=code_version("train"),
    shell:
        "python -m eqgat train --task {wildcards.task} --model {wildcards.model} --seed {wildcards.seed}"
        " --data {input.graphs:q} --out {params.run_dir:q} --device {params.device} {params.amp} --threads {threads}"
        " --preset {params.model[preset]} --hparams {params.model[overrides]:q}"
        " --epochs {params.train[epochs]} --batch-size {params.train[batch_size]} --lr {params.train[lr]}"
        " --lr-factor {params.train[lr_factor]} --lr-patience {params.train[lr_patience]}"
        " --lr-min {params.train[lr_min]} --clip-norm {params.train[clip_norm]} > {log:q} 2>&1"


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
    wildcard_constraints:
        seed=r"\d+",
    params:
        batch_size=lambda wc: task_config(wc.task)["train"]["batch_size"],
        device=config["device"],
        code=code_version("evaluate"),
    shell:
        "python -m eqgat evaluate --task {wildcards.task} --seed {wildcards.seed} --data {input.graphs:q}"
        " --checkpoint {input.best:q} --out {output.metrics:q} --predictions {output.predictions:q}"
        " --batch-size {params.batch_size} --device {params.device} --threads {threads} > {log:q} 2>&1"
