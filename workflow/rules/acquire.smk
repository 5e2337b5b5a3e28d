# Real data (METHODS §1): local ImageNet folders and ImageNet-Captions; LAIONet and the -Cls sets
# from caption metadata, downloaded with img2dataset (one job per URL-table slice).

# Their files: results/sources/{dataset}/ and results/downloads/{dataset}/ (tailstudy.layout).


rule build_local_dataset:
    """An evaluation set from class folders, ImageNet-Captions from its JSON and ImageNet
    train, or a transfer set from its local root (torchvision's layout or its split files):
    images copied into shards."""
    input:
        unpack(by(P.local_sources, "dataset")),
        spec=L.path(L.SPEC, kind="datasets", name="{dataset}"),
    output:
        manifest=L.DATASET_MANIFEST,
        index=L.DATASET_INDEX,
        classes=L.DATASET_CLASSES,
    log:
        "results/logs/build_local_dataset/{dataset}.log",
    benchmark:
        "results/benchmarks/build_local_dataset/{dataset}.tsv"
    wildcard_constraints:
        dataset=only(P.datasets_of(*LOCAL_SOURCES)),
    conda:
        "../../envs/data.yaml"
    resources:
        mem_mb=8000,
    shell:
        "python -m tailstudy dataset --spec {input.spec} --out $(dirname {output.manifest})"
        " > {log} 2>&1"


rule laionet_lemmas:
    """LAIONet step 1: the lemmas that belong to exactly one of the 1000 ILSVRC synsets."""
    output:
        L.LEMMAS,
    log:
        "results/logs/laionet_lemmas/{dataset}.log",
    wildcard_constraints:
        dataset=only(P.datasets_of("laionet")),
    conda:
        "../../envs/data.yaml"
    shell:
        "python -m tailstudy acquire lemmas --out {output} > {log} 2>&1"


rule laionet_label:
    """LAIONet steps 2-3 on one metadata part: substring labelling, single-label rows kept."""
    input:
        metadata=by(P.metadata_file, "dataset", "part"),
        lemmas=L.LEMMAS,
    output:
        L.LAIONET_LABEL,
    log:
        "results/logs/laionet_label/{dataset}/{part}.log",
    benchmark:
        "results/benchmarks/laionet_label/{dataset}/{part}.tsv"
    wildcard_constraints:
        dataset=only(P.datasets_of("laionet")),
        part=r"\d{5}",
    conda:
        "../../envs/data.yaml"
    resources:
        mem_mb=16000,
    params:
        columns=by(P.laionet_label_args, "dataset"),
    shell:
        "python -m tailstudy acquire laionet-label --metadata {input.metadata:q}"
        " --part {wildcards.part} --lemmas {input.lemmas} {params.columns} --out {output}"
        " > {log} 2>&1"


rule laionet_similarity:
    """LAIONet step 4 on one part: CLIP text similarity of each caption to its synset's
    "<name> which is <definition>" (on a GPU when the job has one)."""
    input:
        L.LAIONET_LABEL,
    output:
        L.LAIONET_SIMILARITY,
    log:
        "results/logs/laionet_similarity/{dataset}/{part}.log",
    benchmark:
        "results/benchmarks/laionet_similarity/{dataset}/{part}.tsv"
    wildcard_constraints:
        dataset=only(P.datasets_of("laionet")),
        part=r"\d{5}",
    conda:
        "../../envs/data.yaml"
    threads: 2
    resources:
        mem_mb=16000,
    params:
        encoder=by(P.laionet_encoder, "dataset"),
        batch=by(P.laionet_batch_size, "dataset"),
    shell:
        "python -m tailstudy acquire laionet-similarity --rows {input} --encoder {params.encoder:q}"
        " --batch-size {params.batch} --threads {threads} --out {output} > {log} 2>&1"


rule laionet_filter:
    """LAIONet step 5: allowed NSFW tags and similarity > threshold, over all parts: the URL
    table, in row-id order."""
    input:
        lambda wc: P.part_files(L.LAIONET_SIMILARITY, wc.dataset),
    output:
        L.DOWNLOAD_URLS,
    log:
        "results/logs/laionet_filter/{dataset}.log",
    wildcard_constraints:
        dataset=only(P.datasets_of("laionet")),
    conda:
        "../../envs/data.yaml"
    resources:
        mem_mb=16000,
    params:
        filters=by(P.laionet_filter_args, "dataset"),
    shell:
        "python -m tailstudy acquire laionet-filter --rows {input} {params.filters} --out {output}"
        " > {log} 2>&1"


rule cls_match:
    """-Cls on one metadata file: the captions that match a class's WordNet lemmas."""
    input:
        metadata=by(P.metadata_file, "dataset", "part"),
    output:
        L.CLS_MATCH,
    log:
        "results/logs/cls_match/{dataset}/{part}.log",
    benchmark:
        "results/benchmarks/cls_match/{dataset}/{part}.tsv"
    wildcard_constraints:
        dataset=only(P.datasets_of("cls")),
        part=r"\d{5}",
    conda:
        "../../envs/data.yaml"
    resources:
        mem_mb=16000,
    params:
        columns=by(P.cls_match_args, "dataset"),
    shell:
        "python -m tailstudy acquire cls-match --metadata {input.metadata:q} --part {wildcards.part}"
        " {params.columns} --out {output} > {log} 2>&1"


rule cls_urls:
    """-Cls: the URL table, one row per matched image with the classes it matched."""
    input:
        lambda wc: P.part_files(L.CLS_MATCH, wc.dataset),
    output:
        L.DOWNLOAD_URLS,
    log:
        "results/logs/cls_urls/{dataset}.log",
    wildcard_constraints:
        dataset=only(P.datasets_of("cls")),
    conda:
        "../../envs/data.yaml"
    resources:
        mem_mb=16000,
    shell:
        "python -m tailstudy acquire cls-urls --matches {input} --out {output} > {log} 2>&1"


rule birdsnap_urls:
    """Birdsnap: the URL table, one row per image of its release's images.txt, with its species."""
    input:
        unpack(by(P.birdsnap_release, "dataset")),
    output:
        L.DOWNLOAD_URLS,
    log:
        "results/logs/birdsnap_urls/{dataset}.log",
    wildcard_constraints:
        dataset=only(P.datasets_of("birdsnap")),
    conda:
        "../../envs/data.yaml"
    shell:
        "python -m tailstudy acquire birdsnap-urls --root $(dirname {input.images})"
        " --out {output} > {log} 2>&1"


rule download_shard:
    """img2dataset over one slice of the URL table. The images stay in {shard}/img2dataset/
    (not an output): a killed or failed job resumes there; stats.json is written last."""
    input:
        urls=L.DOWNLOAD_URLS,
        settings=L.path(L.SPEC, kind="downloads", name="{dataset}"),
    output:
        L.DOWNLOAD_STATS,
    log:
        "results/logs/download_shard/{dataset}/{shard}.log",
    benchmark:
        "results/benchmarks/download_shard/{dataset}/{shard}.tsv"
    wildcard_constraints:
        dataset=only(P.datasets_of(*URL_SOURCES)),
        shard=r"\d{5}",
    conda:
        "../../envs/data.yaml"
    threads: lambda wc: P.download_processes(wc.dataset)
    resources:
        mem_mb=8000,
    shell:
        "python -m tailstudy acquire download --urls {input.urls} --shard {wildcards.shard}"
        " --settings {input.settings} --work $(dirname {output}) --out {output} > {log} 2>&1"


rule download_manifest:
    """A dataset's downloads: successes, failures by reason, per slice."""
    input:
        by(P.download_shards, "dataset"),
    output:
        L.DOWNLOAD_MANIFEST,
    log:
        "results/logs/download_manifest/{dataset}.log",
    wildcard_constraints:
        dataset=only(P.datasets_of(*URL_SOURCES)),
    conda:
        "../../envs/data.yaml"
    shell:
        "python -m tailstudy acquire download-manifest --dataset {wildcards.dataset}"
        " --stats {input} --out {output} > {log} 2>&1"


rule build_downloaded_dataset:
    """LAIONet or a -Cls set from its downloads: the images that arrived and decode, re-packed
    into the dataset's shards with their metadata."""
    input:
        spec=L.path(L.SPEC, kind="datasets", name="{dataset}"),
        urls=L.DOWNLOAD_URLS,
        downloads=L.DOWNLOAD_MANIFEST,
    output:
        manifest=L.DATASET_MANIFEST,
        index=L.DATASET_INDEX,
        classes=L.DATASET_CLASSES,
    log:
        "results/logs/build_downloaded_dataset/{dataset}.log",
    benchmark:
        "results/benchmarks/build_downloaded_dataset/{dataset}.tsv"
    wildcard_constraints:
        dataset=only(P.datasets_of(*URL_SOURCES)),
    conda:
        "../../envs/data.yaml"
    resources:
        mem_mb=16000,
    shell:
        "python -m tailstudy dataset --spec {input.spec} --out $(dirname {output.manifest})"
        " --downloads $(dirname {input.downloads}) > {log} 2>&1"
