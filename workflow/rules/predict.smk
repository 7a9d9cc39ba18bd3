# Pose prediction, one job per video (on SLURM: one cluster job per video). A manifest row's
# `frames` column limits a job to a selection of its video's frames.
#
# With videos.per_job > 1, rule predict_batch predicts several videos in one job (one process,
# one model load; on SLURM one sbatch) into staged files, and predict_video only links each
# staged file to the video's usual name: the per-video outputs stay the same files.

if BATCHES:

    rule predict_batch:
        input:
            videos=lambda w: [PLAN.videos[v].path for v in BATCHES[w.batch]],
            models=model_files(PLAN.predictor),
        output:
            "results/predictions/batches/{batch}.json",
        params:
            videos=lambda w: {
                v: {"path": PLAN.videos[v].path, "frames": PLAN.videos[v].frames, "staged": staged_prediction(v)}
                for v in BATCHES[w.batch]
            },
            model_dirs=[model_dir(m) for m in PLAN.predictor],
            options=dict(config["inference"]),
            code=code("pipeline_lib.inference.batch"),
        log:
            log_path("predict_batch", "{batch}"),
        benchmark:
            bench_path("predict_batch", "{batch}")
        threads: rule_threads("predict_video")
        resources:
            **batch_resources("predict_video"),
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

else:

    rule predict_video:
        input:
            video=video_path,
            models=model_files(PLAN.predictor),
        output:
            "results/predictions/{video}.predictions.slp",
        params:
            model_dirs=[model_dir(m) for m in PLAN.predictor],
            frames=video_frames,
            options=dict(config["inference"]),
            code=code("pipeline_lib.inference.predict"),
        log:
            log_path("predict_video", "{video}"),
        benchmark:
            bench_path("predict_video", "{video}")
        threads: rule_threads("predict_video")
        resources:
            **rule_resources("predict_video"),
        conda:
            "../../envs/pipeline.yaml"
        script:
            "../scripts/predict_video.py"
