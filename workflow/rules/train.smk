# Training: one job per run of the run table.


rule write_run_config:
    """The run's resolved config. It is rewritten only when the run's row or recipe changes
    (params trigger), and identical content never retrains (Snakemake compares checksums)."""
    output:
        "results/runs/{run}/config.json",
    log:
        "results/logs/write_run_config/{run}.log",
    conda:
        "../../envs/plot.yaml"
    params:
        cfg=run_config,
    shell:
        "printf '%s' {params.cfg:q} > {output} 2> {log}"


rule train_model:
    """Train one run (CLIP or SL) on the GPUs its recipe asks for. Checkpoints go to ckpt/ (not
    an output): a retry (profile `retries`) or a rerun resumes from there. A recipe with
    distributed.processes N is trained by N processes that the command itself launches through
    torchrun inside this one job and allocation (its threads are shared among them)."""
    input:
        unpack(train_inputs),
    output:
        model="results/runs/{run}/model.pt",
        log="results/runs/{run}/train_log.jsonl",
    log:
        "results/logs/train_model/{run}.log",
    benchmark:
        "results/benchmarks/train_model/{run}.tsv"
    conda:
        "../../envs/train.yaml"
    threads: train_threads
    resources:
        gpu=run_gpus,
        cpus_per_gpu=cpus_per_gpu,
        mem_mb=train_mem_mb,
        runtime=train_runtime,
    params:
        text=text_checkpoint_arg,
    shell:
        "python -m tailstudy train --config {input.config} --index {input.index}"
        " --classes {input.classes} --dataset $(dirname {input.dataset}) {params.text}"
        " --out results/runs/{wildcards.run} --ckpt-dir results/runs/{wildcards.run}/ckpt"
        " --threads {threads} > {log} 2>&1"
