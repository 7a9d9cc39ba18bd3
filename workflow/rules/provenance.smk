# Where a run's results came from: package versions, code revision, config file hashes, seeds
# and hardware, in results/provenance.json (pipeline_lib/provenance.py); the report shows it.
#
# Its inputs are the config files and every final result, so it is written again whenever a
# result is rebuilt and describes the environment that made the latest results. It runs as an
# ordinary job: on SLURM it describes a compute node, not necessarily the one that trained.
# Its inputs and params come from common.smk (provenance_*).


rule provenance:
    input:
        configs=list(provenance_config_files().values()),
        results=provenance_results(),
    output:
        report(PROVENANCE_JSON, caption="../report/provenance.rst", category="6. Provenance"),
    params:
        config_labels=list(provenance_config_files()),
        model_configs={m: config["models"][m]["config"] for m in TRAINED_MODELS},
        model_dirs={m: model_dir(m) for m in TRAINED_MODELS},
        seeds=provenance_seeds(),
        job_threads={r: job_threads(r) for r in ("train_model", "evaluate_model", "predict_video")},
        config=config,
        code=code("pipeline_lib.provenance"),
    log:
        log_path("provenance"),
    benchmark:
        bench_path("provenance")
    threads: rule_threads("provenance")
    resources:
        **rule_resources("provenance"),
    conda:
        "../../envs/pipeline.yaml"
    script:
        "../scripts/provenance.py"
