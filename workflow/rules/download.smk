# ATOM3D archives: one download rule per dataset, generated from preprocess.download.ARCHIVES.
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
            checksums=checksum_args(_archives),
            allowed_hosts=allowed_host_args(),
            stall_window=config["download"]["stall_window"],
            min_speed=config["download"]["min_speed"],
            attempt_deadline=config["download"]["attempt_deadline"],
            max_extract_bytes=config["download"]["max_extract_bytes"],
            max_members=config["download"]["max_members"],
            max_ratio=config["download"]["max_ratio"],
            out=lambda wildcards, output: Path(output[0]).parent,
            archives=f"{RESOURCES}/archives",
        shell:
            "python -m preprocess.download --task {params.dataset} --out {params.out:q}"
            " --archive-dir {params.archives:q} --base-url {params.base_url:q} --retries {params.retries}"
            " {params.checksums} {params.allowed_hosts} --stall-window {params.stall_window}"
            " --min-speed {params.min_speed} --attempt-deadline {params.attempt_deadline}"
            " --max-extract-bytes {params.max_extract_bytes} --max-members {params.max_members}"
            " --max-ratio {params.max_ratio} --overwrite --no-progress > {log:q} 2>&1"
