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
    threads: eval_threads
    resources:
        gpu=eval_gpus,
        cpus_per_gpu=eval_cpus_per_gpu,
        mem_mb=eval_mem_mb,
        runtime=eval_runtime,
    shell:
        "python -m tailstudy evaluate --config {input.config} --model {input.model}"
        " --dataset $(dirname {input.dataset}) --train-counts {input.counts}"
        " --train-classes {input.classes}"
        " --out results/eval/{wildcards.run} --threads {threads} > {log} 2>&1"
