# Labels -> seeded train/val/test split -> decoded image cache, once per dataset (shared by
# every model trained on it).


rule split_labels:
    input:
        labels=lambda w: config["datasets"][w.dataset]["labels"],
        test_labels=lambda w: config["datasets"][w.dataset]["test_labels"] or [],
    output:
        train=split_path("{dataset}", "train"),
        val=split_path("{dataset}", "val"),
        test=split_path("{dataset}", "test"),
    params:
        validation_fraction=lambda w: config["datasets"][w.dataset]["validation_fraction"],
        test_fraction=lambda w: config["datasets"][w.dataset]["test_fraction"],
        user_instances_only=lambda w: config["datasets"][w.dataset]["user_instances_only"],
        seed=config["seed"],
        code=code("pipeline_lib.data.split"),
    log:
        log_path("split_labels", "{dataset}"),
    benchmark:
        bench_path("split_labels", "{dataset}")
    threads: rule_threads("split_labels")
    resources:
        **rule_resources("split_labels"),
    conda:
        "../../envs/pipeline.yaml"
    script:
        "../scripts/split_labels.py"


rule cache_images:
    input:
        train=split_path("{dataset}", "train"),
        val=split_path("{dataset}", "val"),
        test=split_path("{dataset}", "test"),
    output:
        directory(cache_dir("{dataset}")),
    params:
        code=code("pipeline_lib.data.cache"),
    log:
        log_path("cache_images", "{dataset}"),
    benchmark:
        bench_path("cache_images", "{dataset}")
    threads: rule_threads("cache_images")
    resources:
        **rule_resources("cache_images"),
    conda:
        "../../envs/pipeline.yaml"
    script:
        "../scripts/cache_images.py"
