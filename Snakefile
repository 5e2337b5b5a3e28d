# tailstudy: the controlled study of CLIP's robustness to pre-training data imbalance, end to end.
#
# results/
#   run_table.tsv, study_runs.tsv     every run (id, factors, resolved recipe); study membership
#   specs/{kind}/{name}.json          resolved specs of datasets, variants, figures, claims
#   data/{dataset}/                   index.parquet, classes.tsv, manifest.json, shards/*.tar
#   sources/{dataset}/                LAIONet / -Cls metadata steps (labels, similarity, matches)
#   downloads/{dataset}/              urls.parquet, manifest.json, {shard}/ (img2dataset output)
#   variants/{variant}/               index.parquet, counts.tsv, manifest.json (a view, no copies)
#   freq/{corpus}/{concepts}_ori.tsv  caption-matching class counts (label order; sorted twin
#                                     without _ori), from freq/{corpus}/{concepts}/shards/*
#   runs/{run}/config.json            the run's resolved config: the trigger of its training
#   runs/{run}/model.pt, train_log.jsonl   final weights, per-epoch metrics (ckpt/ is undeclared)
#   eval/{run}/                       summary.json, per_class.tsv, confusion.npz
#   tables/{study}.tsv                one row per run: factors and statistics
#   figures/{fig}.pdf|png|csv         figures and the numbers they plot
#   claims.tsv                        the study's findings checked seed by seed
#   logs/{rule}/{wildcards}.log, benchmarks/{rule}/{wildcards}.tsv


from snakemake.utils import min_version

min_version("9.0")


configfile: "config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/acquire.smk"
include: "workflow/rules/frequency.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/report.smk"


# Run on the submitting host, never as cluster jobs: targets, specs and run configs, the run
# table, study tables, figures, claims, merges, and the WordNet step (it may download).
localrules:
    all_figures,
    all,
    write_spec,
    write_run_config,
    write_run_table,
    collect_study,
    render_figure,
    check_claims,
    merge_counts,
    download_shard,  # downloads run where the workflow runs (a head node with internet)
    download_manifest,
    wordnet,


rule all_figures:
    default_target: True
    input:
        all_figure_files(),
        "results/claims.tsv",


rule all:
    input:
        rules.all_figures.input,
        "results/run_table.tsv",
        all_freq_tables(),
        expand("results/data/{dataset}/manifest.json", dataset=DATASETS),
        expand("results/tables/{study}.tsv", study=STUDIES),
