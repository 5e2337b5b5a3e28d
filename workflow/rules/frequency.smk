# Class frequencies by caption matching (METHODS §2): WordNet, one job per shard, merge.


rule wordnet:
    """An NLTK data folder holding WordNet 3.0 for the reference lemmatiser: from NLTK's path,
    Debian's installed wordnet-base, nltk.download, or Debian's packages fetched with apt-get
    download (no root); the log names the source."""
    output:
        touch(L.WORDNET_READY),
    log:
        "results/logs/wordnet.log",
    conda:
        "../../envs/freq.yaml"
    params:
        data=L.NLTK_DATA,
    shell:
        "python -m tailstudy freq wordnet --data-dir {params.data} > {log} 2>&1"


rule count_shard:
    """Per-class caption-matching counts of one caption shard (or one MetaCLIP datacard)."""
    input:
        unpack(by(P.concept_files, "concepts")),
        source=by(lambda corpus, shard: P.shard(corpus, shard).path, "corpus", "shard"),
        wordnet=L.WORDNET_READY,
    output:
        L.FREQ_SHARD,
    log:
        "results/logs/count_shard/{corpus}/{concepts}/{shard}.log",
    benchmark:
        "results/benchmarks/count_shard/{corpus}/{concepts}/{shard}.tsv"
    conda:
        "../../envs/freq.yaml"
    threads: 1
    resources:
        mem_mb=4000,
    params:
        source=by(P.shard_args, "corpus", "shard"),
        concepts=by(P.concept_args, "concepts"),
        digits=P.keep_digits_arg(),
        data=L.NLTK_DATA,
    shell:
        "python -m tailstudy freq count {params.source} {params.concepts} {params.digits}"
        " --nltk-data {params.data} --workers {threads} --no-sorted --out {output}"
        " > {log} 2>&1"


rule merge_counts:
    """The corpus's table in label order (…_ori.tsv) and sorted by count (….tsv)."""
    input:
        by(P.corpus_shard_tables, "corpus", "concepts"),
    output:
        ori=L.FREQ_TABLE,
        sorted=L.FREQ_TABLE_SORTED,
    log:
        "results/logs/merge_counts/{corpus}/{concepts}.log",
    conda:
        "../../envs/freq.yaml"
    shell:
        "python -m tailstudy freq merge {input} --out {output.ori} > {log} 2>&1"
