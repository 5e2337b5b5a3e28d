# tailstudy: the controlled study of CLIP's robustness to pre-training data imbalance, end to end.
#
# Every result lies under results/, in the layout src/tailstudy/layout.py names (and lists).


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
    collect_probes,
    render_figure,
    check_claims,
    compare_to_paper,
    merge_counts,
    download_shard,  # downloads run where the workflow runs (a head node with internet)
    download_manifest,
    wordnet,


rule all_figures:
    default_target: True
    input:
        P.figure_files(),
        L.CLAIMS,
        f"{L.COMPARE}.tsv",


rule all:
    input:
        rules.all_figures.input,
        L.RUN_TABLE,
        P.freq_tables(),
        expand(L.DATASET_MANIFEST, dataset=P.datasets),
        expand(L.STUDY_TABLE, study=P.eval_studies),
        expand(L.PROBE_TABLE, study=P.probe_studies),
