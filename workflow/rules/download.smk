# Dataset downloads: one rule per dataset the task declarations name (eqgat/tasks/<task>.py).
# Outputs are the extraction markers; the archives themselves are kept in resources/archives
# (not outputs), so a rerun of a rule re-extracts but never downloads again.


for _dataset, _archives in ARCHIVES.items():

    rule:
        name:
            f"download_{_dataset}"
        output:
            [f"{RESOURCES}/{_dataset}/.{a.filename}.complete" for a in _archives],
        log:
            f"{LOGS}/download/{_dataset}.log",
        conda:
            CONDA_ENV
        params:
            dataset=lambda wildcards, output: Path(output[0]).parent.name,
            base_url=config["download"]["base_url"],
            retries=config["download"]["retries"],
            checksums=json.dumps({a.filename: config["download"]["checksums"][a.filename]
                                  for a in _archives if a.filename in config["download"].get("checksums", {})}),
            out=lambda wildcards, output: Path(output[0]).parent,
            archives=f"{RESOURCES}/archives",
        shell:
            "python -m preprocess.download --task {params.dataset:q} --out {params.out:q}"
            " --archive-dir {params.archives:q} --base-url {params.base_url:q} --retries {params.retries:q}"
            " --checksums-json {params.checksums:q} --overwrite --no-progress > {log:q} 2>&1"
