# Evaluation: one job per (run, evaluation set).


rule evaluate_run:
    """Zero-shot (CLIP) or nearest-prototype (SL) evaluation of a run on one of its evaluation
    sets (the variant's or the global default, and the further sets of evaluation.also):
    metrics.npz (confusion, per-class accuracy and #pred, neural-collapse metrics, top-1/5),
    per_class.tsv, and a summary with their correlations with the run's training-set class
    frequencies (matched to the evaluation classes by wnid) and a trim's head/tail accuracy."""
    input:
        unpack(by(P.eval_inputs, "run", "dataset")),
    output:
        summary=L.EVAL_SUMMARY,
        per_class=L.EVAL_PER_CLASS,
        metrics=L.EVAL_METRICS,
    log:
        "results/logs/evaluate_run/{run}/{dataset}.log",
    conda:
        "../../envs/train.yaml"
    threads: lambda wc: P.eval_threads(wc.run)
    resources:
        gpu=lambda wc: P.eval_gpus(wc.run),
        cpus_per_gpu=lambda wc, threads: threads,
        mem_mb=lambda wc: P.eval_mem_mb(wc.run, wc.dataset),
        runtime=lambda wc, attempt: P.eval_runtime(wc.run, wc.dataset, attempt),
    params:
        loader=by(P.loader_args, "run"),
    shell:
        "python -m tailstudy evaluate --config {input.config} --model {input.model}"
        " --dataset $(dirname {input.dataset}) --eval-dataset {wildcards.dataset}"
        " --train-counts {input.counts} --train-classes {input.classes}"
        " --train-manifest {input.manifest} {params.loader}"
        " --out $(dirname {output.summary}) --threads {threads} > {log} 2>&1"
