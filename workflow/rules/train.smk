# One training job per model. The run directory results/models/{model}/ is the model.
#
# Only the finished artefacts are declared outputs; train_model publishes them at the very end.
# Before (re)running a job Snakemake deletes its declared outputs and nothing else in their
# folder, so the undeclared working files (checkpoints/last.ckpt and its log) survive a killed
# job and the rerun resumes from them. Do not declare last.ckpt, and do not make the run
# directory a directory() output: Snakemake would wipe it before every rerun.


rule train_model:
    wildcard_constraints:
        model=_alternation(TRAINED_MODELS),  # models given by run_dir are never trained
    input:
        config=lambda w: config["models"][w.model]["config"],
        train=lambda w: split_path(dataset_of(w.model), "train"),
        val=lambda w: split_path(dataset_of(w.model), "val"),
        cache=lambda w: cache_dir(dataset_of(w.model)),
    output:
        best="results/models/{model}/best.ckpt",
        training_config="results/models/{model}/training_config.yaml",
        training_log="results/models/{model}/training_log.csv",
    params:
        run_dir=lambda w: model_dir(w.model),
        seed=config["seed"],
        precision=lambda w: str(config["models"][w.model].get("precision", "auto")),
        code=code("pipeline_lib.training.train"),
    log:
        log_path("train_model", "{model}"),
    benchmark:
        bench_path("train_model", "{model}")
    threads: rule_threads("train_model")
    resources:
        **rule_resources("train_model"),
    conda:
        "../../envs/pipeline.yaml"
    script:
        "../scripts/train_model.py"
