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


rule probe_features:
    """A DINO run's frozen features (its teacher backbone) on every split of every transfer
    set, the model loaded once per run; the linear probes read them from here."""
    input:
        unpack(by(P.probe_feature_inputs, "run")),
    output:
        expand(L.PROBE_FEATURE, dataset=P.probe_datasets, split=PROBE_SPLITS, allow_missing=True),
    log:
        "results/logs/probe_features/{run}.log",
    benchmark:
        "results/benchmarks/probe_features/{run}.tsv"
    conda:
        "../../envs/train.yaml"
    threads: lambda wc: P.eval_threads(wc.run)
    resources:
        gpu=lambda wc: P.eval_gpus(wc.run),
        cpus_per_gpu=lambda wc, threads: threads,
        mem_mb=lambda wc: P.probe_feature_mem_mb(wc.run),
        runtime=lambda wc, attempt: P.probe_feature_runtime(wc.run, attempt),
    params:
        datasets=by(P.probe_feature_args, "run"),
        out=L.PROBE_FEATURES,
    shell:
        "python -m tailstudy probe-features --config {input.config} --model {input.model}"
        " {params.datasets} --out {params.out} --threads {threads} > {log} 2>&1"


rule linear_probe:
    """L-BFGS logistic regression over 45 regularisation strengths on the cached features: C
    chosen on val, refit on train + val, scored on test in the set's metric (METHODS §5.7)."""
    input:
        unpack(by(P.probe_inputs, "run", "dataset")),
    output:
        L.PROBE_RESULT,
    log:
        "results/logs/linear_probe/{run}/{dataset}.log",
    benchmark:
        "results/benchmarks/linear_probe/{run}/{dataset}.tsv"
    conda:
        "../../envs/train.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        max_iter=P.probe_max_iter() if P.probe else 100,
    shell:
        "python -m tailstudy probe --config {input.config} --name {wildcards.dataset}"
        " --dataset $(dirname {input.dataset}) --features $(dirname {input.features[0]})"
        " --max-iter {params.max_iter} --out {output} --threads {threads} > {log} 2>&1"
