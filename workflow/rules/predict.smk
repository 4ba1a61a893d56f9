# Predictions of a trained model for new structure files (config `predict`), e.g. a checkpoint
# of this workflow's own runs: Snakemake then trains it first.


rule predict:
    input:
        checkpoint=config["predict"]["checkpoint"] if config.get("predict") else [],
        files=predict_inputs(),
    output:
        report(f"{RESULTS}/predictions.csv", caption="../report/predictions.rst", category="Predictions"),
    log:
        f"{LOGS}/predict.log",
    conda:
        CONDA_ENV
    threads: config["train_threads"]
    params:
        ligand=config.get("predict", {}).get("ligand_resname") or "",
        pocket_radius=config.get("predict", {}).get("pocket_radius", 6.0),
        limits=predict_limits(),
        device=config["device"],
        code=code_version("predict", *PREDICT_TASKS),
        files=predict_listing(),
    shell:
        "python -m eqgat predict --checkpoint {input.checkpoint:q} --out {output:q} --device {params.device:q}"
        " --threads {threads} --pocket-radius {params.pocket_radius:q} --ligand-resname={params.ligand:q}"
        " --no-progress {params.limits:q} {input.files:q} > {log:q} 2>&1"
