# Run table, study tables, figures and claims.


rule write_run_table:
    """Every run with its factors and resolved recipe, and study membership."""
    output:
        runs="results/run_table.tsv",
        studies="results/study_runs.tsv",
    log:
        "results/logs/write_run_table.log",
    params:
        rows=[r for r in RUNS.rows()],
        members=RUNS.study_of(),
    run:
        write_tsv(output.runs, params.rows)
        write_tsv(output.studies, [{"study": s, "run_id": r} for s, r in params.members])


rule collect_study:
    """One row per run of a study: factors and evaluation statistics."""
    input:
        study_evals,
    output:
        "results/tables/{study}.tsv",
    log:
        "results/logs/collect_study/{study}.log",
    conda:
        "../../envs/plot.yaml"
    shell:
        "python -m tailstudy collect --study {wildcards.study} --out {output}"
        " --evals $(dirname {input}) > {log} 2>&1"


rule render_figure:
    """Draw one figure (PDF, PNG) and write the numbers it plots (CSV)."""
    input:
        spec="results/specs/figures/{fig}.json",
        tables=figure_tables,
        evals=figure_evals,
        freq=figure_freq,
    output:
        pdf=report(
            "results/figures/{fig}.pdf",
            caption="../report/figure.rst",
            category="Figures",
            labels={"figure": "{fig}", "type": "PDF"},
        ),
        png=report(
            "results/figures/{fig}.png",
            caption="../report/figure.rst",
            category="Figures",
            labels={"figure": "{fig}", "type": "PNG"},
        ),
        csv="results/figures/{fig}.csv",
    log:
        "results/logs/render_figure/{fig}.log",
    conda:
        "../../envs/plot.yaml"
    params:
        freq=figure_freq_args,
    shell:
        "python -m tailstudy plot --spec {input.spec} --tables {input.tables}"
        " --eval-root results/eval {params.freq} --out {output.pdf} > {log} 2>&1"


rule check_claims:
    """The study's findings, checked seed by seed."""
    input:
        spec="results/specs/claims/claims.json",
        tables=claims_tables,
    output:
        report("results/claims.tsv", caption="../report/claims.rst", category="Claims"),
    log:
        "results/logs/check_claims.log",
    conda:
        "../../envs/plot.yaml"
    shell:
        "python -m tailstudy claims --spec {input.spec} --tables {input.tables} --out {output}"
        " > {log} 2>&1"
