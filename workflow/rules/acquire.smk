# Real data (METHODS §1): local ImageNet folders and ImageNet-Captions; LAIONet and the -Cls sets
# from caption metadata, downloaded with img2dataset (one job per URL-table slice).
#
#   results/sources/{dataset}/lemmas.tsv, label/{part}.parquet, similarity/{part}.parquet (LAIONet)
#   results/sources/{dataset}/match/{part}.parquet                                       (-Cls)
#   results/downloads/{dataset}/urls.parquet        the URL table: one row per image to fetch
#   results/downloads/{dataset}/{shard}/stats.json  one slice's successes and failures by reason
#   results/downloads/{dataset}/manifest.json       all slices: totals and failures by reason


rule build_local_dataset:
    """An evaluation set from class folders, ImageNet-Captions from its JSON and ImageNet
    train, or a transfer set from its local root (torchvision's layout or its split files):
    images copied into shards."""
    input:
        unpack(local_sources),
        spec="results/specs/datasets/{dataset}.json",
    output:
        manifest="results/data/{dataset}/manifest.json",
        index="results/data/{dataset}/index.parquet",
        classes="results/data/{dataset}/classes.tsv",
    log:
        "results/logs/build_local_dataset/{dataset}.log",
    benchmark:
        "results/benchmarks/build_local_dataset/{dataset}.tsv"
    wildcard_constraints:
        dataset=only(LOCAL_DATASETS),
    conda:
        "../../envs/data.yaml"
    resources:
        mem_mb=8000,
    shell:
        "python -m tailstudy dataset --spec {input.spec} --out results/data/{wildcards.dataset}"
        " > {log} 2>&1"


rule laionet_lemmas:
    """LAIONet step 1: the lemmas that belong to exactly one of the 1000 ILSVRC synsets."""
    output:
        "results/sources/{dataset}/lemmas.tsv",
    log:
        "results/logs/laionet_lemmas/{dataset}.log",
    wildcard_constraints:
        dataset=only(LAIONET_DATASETS),
    conda:
        "../../envs/data.yaml"
    shell:
        "python -m tailstudy acquire lemmas --out {output} > {log} 2>&1"


rule laionet_label:
    """LAIONet steps 2-3 on one metadata part: substring labelling, single-label rows kept."""
    input:
        metadata=metadata_file,
        lemmas="results/sources/{dataset}/lemmas.tsv",
    output:
        "results/sources/{dataset}/label/{part}.parquet",
    log:
        "results/logs/laionet_label/{dataset}/{part}.log",
    benchmark:
        "results/benchmarks/laionet_label/{dataset}/{part}.tsv"
    wildcard_constraints:
        dataset=only(LAIONET_DATASETS),
        part=r"\d{5}",
    conda:
        "../../envs/data.yaml"
    resources:
        mem_mb=16000,
    params:
        columns=laionet_label_args,
    shell:
        "python -m tailstudy acquire laionet-label --metadata {input.metadata:q}"
        " --part {wildcards.part} --lemmas {input.lemmas} {params.columns} --out {output}"
        " > {log} 2>&1"


rule laionet_similarity:
    """LAIONet step 4 on one part: CLIP text similarity of each caption to its synset's
    "<name> which is <definition>" (on a GPU when the job has one)."""
    input:
        "results/sources/{dataset}/label/{part}.parquet",
    output:
        "results/sources/{dataset}/similarity/{part}.parquet",
    log:
        "results/logs/laionet_similarity/{dataset}/{part}.log",
    benchmark:
        "results/benchmarks/laionet_similarity/{dataset}/{part}.tsv"
    wildcard_constraints:
        dataset=only(LAIONET_DATASETS),
        part=r"\d{5}",
    conda:
        "../../envs/data.yaml"
    threads: 2
    resources:
        mem_mb=16000,
    params:
        encoder=laionet_encoder,
        batch=lambda wc: config["datasets"][wc.dataset].get("batch_size", 1024),
    shell:
        "python -m tailstudy acquire laionet-similarity --rows {input} --encoder {params.encoder:q}"
        " --batch-size {params.batch} --threads {threads} --out {output} > {log} 2>&1"


rule laionet_filter:
    """LAIONet step 5: allowed NSFW tags and similarity > threshold, over all parts: the URL
    table, in row-id order."""
    input:
        laionet_parts,
    output:
        "results/downloads/{dataset}/urls.parquet",
    log:
        "results/logs/laionet_filter/{dataset}.log",
    wildcard_constraints:
        dataset=only(LAIONET_DATASETS),
    conda:
        "../../envs/data.yaml"
    resources:
        mem_mb=16000,
    params:
        filters=laionet_filter_args,
    shell:
        "python -m tailstudy acquire laionet-filter --rows {input} {params.filters} --out {output}"
        " > {log} 2>&1"


rule cls_match:
    """-Cls on one metadata file: the captions that match a class's WordNet lemmas."""
    input:
        metadata=metadata_file,
    output:
        "results/sources/{dataset}/match/{part}.parquet",
    log:
        "results/logs/cls_match/{dataset}/{part}.log",
    benchmark:
        "results/benchmarks/cls_match/{dataset}/{part}.tsv"
    wildcard_constraints:
        dataset=only(CLS_DATASETS),
        part=r"\d{5}",
    conda:
        "../../envs/data.yaml"
    resources:
        mem_mb=16000,
    params:
        columns=cls_match_args,
    shell:
        "python -m tailstudy acquire cls-match --metadata {input.metadata:q} --part {wildcards.part}"
        " {params.columns} --out {output} > {log} 2>&1"


rule cls_urls:
    """-Cls: the URL table, one row per matched image with the classes it matched."""
    input:
        cls_parts,
    output:
        "results/downloads/{dataset}/urls.parquet",
    log:
        "results/logs/cls_urls/{dataset}.log",
    wildcard_constraints:
        dataset=only(CLS_DATASETS),
    conda:
        "../../envs/data.yaml"
    resources:
        mem_mb=16000,
    shell:
        "python -m tailstudy acquire cls-urls --matches {input} --out {output} > {log} 2>&1"


rule download_shard:
    """img2dataset over one slice of the URL table. The images stay in {shard}/img2dataset/
    (not an output): a killed or failed job resumes there; stats.json is written last."""
    input:
        urls="results/downloads/{dataset}/urls.parquet",
        settings="results/specs/downloads/{dataset}.json",
    output:
        "results/downloads/{dataset}/{shard}/stats.json",
    log:
        "results/logs/download_shard/{dataset}/{shard}.log",
    benchmark:
        "results/benchmarks/download_shard/{dataset}/{shard}.tsv"
    wildcard_constraints:
        dataset=only(URL_DATASETS),
        shard=r"\d{5}",
    conda:
        "../../envs/data.yaml"
    threads: download_processes
    resources:
        mem_mb=8000,
    shell:
        "python -m tailstudy acquire download --urls {input.urls} --shard {wildcards.shard}"
        " --settings {input.settings} --work results/downloads/{wildcards.dataset}/{wildcards.shard}"
        " --out {output} > {log} 2>&1"


rule download_manifest:
    """A dataset's downloads: successes, failures by reason, per slice."""
    input:
        download_shards,
    output:
        "results/downloads/{dataset}/manifest.json",
    log:
        "results/logs/download_manifest/{dataset}.log",
    wildcard_constraints:
        dataset=only(URL_DATASETS),
    conda:
        "../../envs/data.yaml"
    shell:
        "python -m tailstudy acquire download-manifest --dataset {wildcards.dataset}"
        " --stats {input} --out {output} > {log} 2>&1"


rule build_downloaded_dataset:
    """LAIONet or a -Cls set from its downloads: the images that arrived and decode, re-packed
    into the dataset's shards with their metadata."""
    input:
        spec="results/specs/datasets/{dataset}.json",
        urls="results/downloads/{dataset}/urls.parquet",
        downloads="results/downloads/{dataset}/manifest.json",
    output:
        manifest="results/data/{dataset}/manifest.json",
        index="results/data/{dataset}/index.parquet",
        classes="results/data/{dataset}/classes.tsv",
    log:
        "results/logs/build_downloaded_dataset/{dataset}.log",
    benchmark:
        "results/benchmarks/build_downloaded_dataset/{dataset}.tsv"
    wildcard_constraints:
        dataset=only(URL_DATASETS),
    conda:
        "../../envs/data.yaml"
    resources:
        mem_mb=16000,
    shell:
        "python -m tailstudy dataset --spec {input.spec} --out results/data/{wildcards.dataset}"
        " --downloads results/downloads/{wildcards.dataset} > {log} 2>&1"
