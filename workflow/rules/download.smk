# Dataset downloads: one rule per dataset the task declarations name (eqgat/tasks/<task>.py).
# Outputs are the extraction markers; the archives themselves are kept in resources/archives
# (not outputs), so a rerun of a rule re-extracts but never downloads again.


def literal(value):
    """A param Snakemake passes as it is (its braces are not wildcards)."""
    return lambda wildcards: value


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
        resources:
            runtime=download_minutes(_archives),
        params:
            archives=literal(archives_json(_archives)),
            dataset=lambda wildcards, output: Path(output[0]).parent.name,
            base_url=config["download"]["base_url"],
            retries=config["download"]["retries"],
            checksums=json.dumps({a.filename: config["download"]["checksums"][a.filename]
                                  for a in _archives if a.filename in config["download"].get("checksums", {})}),
            allowed_hosts=json.dumps(config["download"].get("allowed_hosts", [])),
            stall_window=config["download"]["stall_window"],
            min_speed=config["download"]["min_speed"],
            attempt_deadline=config["download"]["attempt_deadline"],
            max_extract_bytes=config["download"]["max_extract_bytes"],
            max_members=config["download"]["max_members"],
            max_ratio=config["download"]["max_ratio"],
            out=lambda wildcards, output: Path(output[0]).parent,
            archive_dir=f"{RESOURCES}/archives",
        shell:
            "python -m preprocess.download --dataset {params.dataset:q} --archives-json {params.archives:q}"
            " --out {params.out:q} --archive-dir {params.archive_dir:q} --base-url {params.base_url:q} --retries {params.retries:q}"
            " --checksums-json {params.checksums:q} --allowed-hosts-json {params.allowed_hosts:q}"
            " --stall-window {params.stall_window:q} --min-speed {params.min_speed:q}"
            " --attempt-deadline {params.attempt_deadline:q} --max-extract-bytes {params.max_extract_bytes:q}"
            " --max-members {params.max_members:q} --max-ratio {params.max_ratio:q} --overwrite --no-progress > {log:q} 2>&1"
