# Datasets and their variants.


rule write_spec:
    """Materialise one step's resolved spec (its slice of the config, nothing more)."""
    output:
        "results/specs/{kind}/{name}.json",
    log:
        "results/logs/write_spec/{kind}/{name}.log",
    conda:
        "../../envs/plot.yaml"
    params:
        spec=spec_json,
    shell:
        "printf '%s' {params.spec:q} > {output} 2> {log}"


rule build_dataset:
    """Generate (embedded) a dataset: webdataset shards + index.parquet + classes + manifest."""
    input:
        spec="results/specs/datasets/{dataset}.json",
    output:
        manifest="results/data/{dataset}/manifest.json",
        index="results/data/{dataset}/index.parquet",
        classes="results/data/{dataset}/classes.tsv",
    log:
        "results/logs/build_dataset/{dataset}.log",
    benchmark:
        "results/benchmarks/build_dataset/{dataset}.tsv"
    wildcard_constraints:
        dataset=only(EMBEDDED_DATASETS),
    conda:
        "../../envs/train.yaml"
    resources:
        mem_mb=4000,
    shell:
        "python -m tailstudy dataset --spec {input.spec} --out results/data/{wildcards.dataset}"
        " > {log} 2>&1"


rule build_variant:
    """A dataset variant: an index (key, label, caption) over the dataset, its label space
    (classes.tsv) and label counts."""
    input:
        unpack(variant_inputs),
    output:
        index="results/variants/{variant}/index.parquet",
        classes="results/variants/{variant}/classes.tsv",
        counts="results/variants/{variant}/counts.tsv",
        manifest="results/variants/{variant}/manifest.json",
    log:
        "results/logs/build_variant/{variant}.log",
    conda:
        "../../envs/train.yaml"
    resources:
        mem_mb=4000,
    params:
        extra=variant_args,
    shell:
        "python -m tailstudy variant --spec {input.spec}"
        " --dataset $(dirname {input.dataset}) {params.extra}"
        " --out results/variants/{wildcards.variant} > {log} 2>&1"
