# Datasets and their variants.


rule write_spec:
    """Materialise one step's resolved spec (its slice of the config, nothing more)."""
    output:
        L.SPEC,
    log:
        "results/logs/write_spec/{kind}/{name}.log",
    conda:
        "../../envs/plot.yaml"
    params:
        spec=lambda wc: P.spec_json(wc.kind, wc.name),
    shell:
        "printf '%s' {params.spec:q} > {output} 2> {log}"


rule build_dataset:
    """Generate (embedded) a dataset: webdataset shards + index.parquet + classes + manifest."""
    input:
        spec=L.path(L.SPEC, kind="datasets", name="{dataset}"),
    output:
        manifest=L.DATASET_MANIFEST,
        index=L.DATASET_INDEX,
        classes=L.DATASET_CLASSES,
    log:
        "results/logs/build_dataset/{dataset}.log",
    benchmark:
        "results/benchmarks/build_dataset/{dataset}.tsv"
    wildcard_constraints:
        dataset=only(P.datasets_of("embedded")),
    conda:
        "../../envs/train.yaml"
    resources:
        mem_mb=4000,
    shell:
        "python -m tailstudy dataset --spec {input.spec} --out $(dirname {output.manifest})"
        " > {log} 2>&1"


rule build_variant:
    """A dataset variant: an index (key, label, caption) over the dataset, its label space
    (classes.tsv) and label counts."""
    input:
        unpack(by(P.variant_inputs, "variant")),
    output:
        index=L.VARIANT_INDEX,
        classes=L.VARIANT_CLASSES,
        counts=L.VARIANT_COUNTS,
        manifest=L.VARIANT_MANIFEST,
    log:
        "results/logs/build_variant/{variant}.log",
    conda:
        "../../envs/train.yaml"
    resources:
        mem_mb=4000,
    params:
        extra=by(P.variant_args, "variant"),
    shell:
        "python -m tailstudy variant --spec {input.spec}"
        " --dataset $(dirname {input.dataset}) {params.extra}"
        " --out $(dirname {output.manifest}) > {log} 2>&1"
