# Run table, study tables, figures and claims.


rule write_run_table:
    """Every run with its factors and resolved recipe, and study membership."""
    output:
        runs=L.RUN_TABLE,
        studies=L.STUDY_RUNS,
    log:
        "results/logs/write_run_table.log",
    params:
        rows=P.runs.rows(),
        members=P.runs.study_of(),
    run:
        write_tsv(output.runs, params.rows)
        write_tsv(output.studies, [{"study": s, "run_id": r} for s, r in params.members])


rule collect_study:
    """One row per run of a study: factors and evaluation statistics."""
    input:
        by(P.study_evals, "study"),
    output:
        L.STUDY_TABLE,
    log:
        "results/logs/collect_study/{study}.log",
    conda:
        "../../envs/plot.yaml"
    shell:
        "python -m tailstudy collect --study {wildcards.study} --out {output}"
        " --evals $(dirname {input}) > {log} 2>&1"


rule collect_probes:
    """One row per DINO run of a study: its linear-probe score on each transfer set and their
    mean (Avg)."""
    input:
        by(P.study_probes, "study"),
    output:
        L.PROBE_TABLE,
    log:
        "results/logs/collect_probes/{study}.log",
    conda:
        "../../envs/plot.yaml"
    params:
        datasets=P.probe_datasets,
    shell:
        "python -m tailstudy probe-collect --study {wildcards.study} --datasets {params.datasets}"
        " --results {input} --out {output} > {log} 2>&1"


rule render_figure:
    """Draw one figure (PDF, PNG) and write the numbers it plots (CSV)."""
    input:
        spec=L.path(L.SPEC, kind="figures", name="{fig}"),
        tables=by(P.figure_tables, "fig"),
        evals=by(P.figure_evals, "fig"),
        freq=by(P.figure_freq, "fig"),
    output:
        pdf=report(
            f"{L.FIGURE}.pdf",
            caption="../report/figure.rst",
            category="Figures",
            labels={"figure": "{fig}", "type": "PDF"},
        ),
        png=report(
            f"{L.FIGURE}.png",
            caption="../report/figure.rst",
            category="Figures",
            labels={"figure": "{fig}", "type": "PNG"},
        ),
        csv=f"{L.FIGURE}.csv",
    log:
        "results/logs/render_figure/{fig}.log",
    conda:
        "../../envs/plot.yaml"
    params:
        freq=by(P.figure_freq_args, "fig"),
        eval_root=L.EVAL_ROOT,
    shell:
        "python -m tailstudy plot --spec {input.spec} --tables {input.tables}"
        " --eval-root {params.eval_root} {params.freq} --out {output.pdf} > {log} 2>&1"


rule check_claims:
    """The study's findings, checked seed by seed."""
    input:
        spec=L.path(L.SPEC, kind="claims", name="claims"),
        tables=P.claims_tables(),
    output:
        report(L.CLAIMS, caption="../report/claims.rst", category="Claims"),
    log:
        "results/logs/check_claims.log",
    conda:
        "../../envs/plot.yaml"
    shell:
        "python -m tailstudy claims --spec {input.spec} --tables {input.tables} --out {output}"
        " > {log} 2>&1"


rule compare_to_paper:
    """Every number the paper prints that this workflow computes, beside ours, and whether the
    two are comparable (and why not)."""
    input:
        spec=L.path(L.SPEC, kind="compare", name="paper"),
        files=P.compare_inputs(),
    output:
        tsv=f"{L.COMPARE}.tsv",
        html=report(
            f"{L.COMPARE}.html",
            caption="../report/compare.rst",
            category="Comparison with the paper",
        ),
    log:
        "results/logs/compare_to_paper.log",
    conda:
        "../../envs/plot.yaml"
    shell:
        "python -m tailstudy compare --spec {input.spec} --results $(dirname {output.tsv})"
        " --out {output.tsv} --html {output.html} > {log} 2>&1"
