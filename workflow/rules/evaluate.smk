# Evaluation: one job per run.


rule evaluate_run:
    """Zero-shot (CLIP) or nearest-prototype (SL) evaluation on the run's evaluation set (the
    variant's, else the global one): per-class accuracy and #pred, top-1, and their correlations
    with the run's training-set class frequencies, matched to the evaluation classes by wnid."""
    input:
        unpack(by(P.eval_inputs, "run")),
    output:
        summary=L.EVAL_SUMMARY,
        per_class=L.EVAL_PER_CLASS,
        confusion=L.EVAL_CONFUSION,
    log:
        "results/logs/evaluate_run/{run}.log",
    conda:
        "../../envs/train.yaml"
    threads: lambda wc: P.eval_threads(wc.run)
    resources:
        gpu=lambda wc: P.eval_gpus(wc.run),
        cpus_per_gpu=lambda wc, threads: threads,
        mem_mb=lambda wc: P.eval_mem_mb(wc.run),
        runtime=lambda wc, attempt: P.eval_runtime(wc.run, attempt),
    params:
        loader=by(P.loader_args, "run"),
    shell:
        "python -m tailstudy evaluate --config {input.config} --model {input.model}"
        " --dataset $(dirname {input.dataset}) --train-counts {input.counts}"
        " --train-classes {input.classes} {params.loader}"
        " --out $(dirname {output.summary}) --threads {threads} > {log} 2>&1"
