# Training: one job per run of the run table.


rule write_run_config:
    """The run's resolved config. It is rewritten only when the run's row or recipe changes
    (params trigger), and identical content never retrains (Snakemake compares checksums)."""
    output:
        L.RUN_CONFIG,
    log:
        "results/logs/write_run_config/{run}.log",
    conda:
        "../../envs/plot.yaml"
    params:
        cfg=by(P.run_config_json, "run"),
    shell:
        "printf '%s' {params.cfg:q} > {output} 2> {log}"


rule train_model:
    """Train one run (CLIP or SL) on the GPUs its recipe asks for. Checkpoints go to ckpt/ (not
    an output): a retry (profile `retries`) or a rerun resumes from there. A recipe with
    distributed.processes N is trained by N processes that the command itself launches through
    torchrun inside this one job and allocation (its threads are shared among them)."""
    input:
        unpack(by(P.train_inputs, "run")),
    output:
        model=L.RUN_MODEL,
        log=L.RUN_TRAIN_LOG,
    log:
        "results/logs/train_model/{run}.log",
    benchmark:
        "results/benchmarks/train_model/{run}.tsv"
    conda:
        "../../envs/train.yaml"
    threads: lambda wc: P.train_threads(wc.run)
    resources:
        gpu=lambda wc: P.gpus(wc.run),
        cpus_per_gpu=lambda wc, threads: P.cpus_per_gpu(wc.run, threads),
        mem_mb=lambda wc: P.train_mem_mb(wc.run),
        runtime=lambda wc, attempt: P.train_runtime(wc.run, attempt),
    params:
        text=by(P.text_checkpoint_arg, "run"),
        loader=by(P.loader_args, "run"),
        text_cache=by(P.text_cache_arg, "run"),
        out=L.RUN,
        ckpt=L.RUN_CKPT,
    shell:
        "python -m tailstudy train --config {input.config} --index {input.index}"
        " --classes {input.classes} --dataset $(dirname {input.dataset}) {params.text}"
        " {params.text_cache} --out {params.out} --ckpt-dir {params.ckpt} {params.loader}"
        " --threads {threads} > {log} 2>&1"
