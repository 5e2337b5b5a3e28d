# Evaluation: one job per run.


rule evaluate_run:
    """Zero-shot (CLIP) or nearest-prototype (SL) evaluation on the run's evaluation set (the
    variant's, else the global one): per-class accuracy and #pred, top-1, and their correlations
    with the run's training-set class frequencies, matched to the evaluation classes by wnid."""
    input:
        unpack(eval_inputs),
    output:
        summary="results/eval/{run}/summary.json",
        per_class="results/eval/{run}/per_class.tsv",
        confusion="results/eval/{run}/confusion.npz",
    log:
        "results/logs/evaluate_run/{run}.log",
    conda:
        "../../envs/train.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    shell:
        "python -m tailstudy evaluate --config {input.config} --model {input.model}"
        " --dataset $(dirname {input.dataset}) --train-counts {input.counts}"
        " --train-classes {input.classes}"
        " --out results/eval/{wildcards.run} --threads {threads} > {log} 2>&1"
