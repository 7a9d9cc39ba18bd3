# Pose prediction with videos.per_job > 1 (included instead of predict.smk): predict_batch
# predicts several videos in one job (one process, one model load; on SLURM one sbatch) into
# staged files beside their fingerprints, and predict_video, a local job, only links each staged
# file to the video's usual name, so the per-video outputs stay the same files. A video that
# fails fails its batch, naming it; the finished ones stay staged and the rerun reuses them
# (pipeline_lib/inference/batch.py).


rule predict_batch:
    input:
        videos=lambda w: [PLAN.videos[v].path for v in BATCHES[w.batch]],
        models=model_files(PLAN.predictor),
    output:
        "results/predictions/batches/{batch}.json",
    params:
        videos=lambda w: {v: batch_video(v) for v in BATCHES[w.batch]},
        model_dirs=[model_dir(m) for m in PLAN.predictor],
        options=dict(config["inference"]),
        code=code("pipeline_lib.inference.batch"),
    log:
        log_path("predict_batch", "{batch}"),
    benchmark:
        bench_path("predict_batch", "{batch}")
    threads: rule_threads("predict_batch")
    resources:
        **rule_resources("predict_batch"),
    conda:
        "../../envs/pipeline.yaml"
    script:
        "../scripts/predict_batch.py"


rule predict_video:
    input:
        lambda w: f"results/predictions/batches/{BATCH_OF[w.video]}.json",
    output:
        "results/predictions/{video}.predictions.slp",
    params:
        staged=lambda w: staged_prediction(w.video),
    log:
        log_path("predict_video", "{video}"),
    localrule: True
    conda:
        "../../envs/pipeline.yaml"
    shell:
        "(ln -f {params.staged:q} {output:q} 2>/dev/null || cp {params.staged:q} {output:q}) 2> {log:q}"
