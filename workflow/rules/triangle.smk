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
        " --num-clouds {params.data[num_clouds]} --seed {params.data[seed]}"
        " --num-points {params.data[num_points]} --radius {params.data[radius]}"
        " --min-dist {params.data[min_dist]} > {log:q} 2>&1"
