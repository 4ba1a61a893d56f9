# The synthetic Triangle task (paper appendix B): generated locally, no download.


rule generate_triangle:
    output:
        f"{RESULTS}/triangle/raw/clouds.h5",
    log:
        f"{LOGS}/triangle/generate.log",
    conda:
        CONDA_ENV
    params:
        data=config["triangle"]["data"],
        code=code_version("generate"),
    shell:
        "python -m preprocess generate-triangle --out {output:q}"
        " --num-clouds {params.data[num_clouds]:q} --seed {params.data[seed]:q}"
        " --num-points {params.data[num_points]:q} --radius {params.data[radius]:q}"
        " --min-dist {params.data[min_dist]:q} > {log:q} 2>&1"
