# With videos.per_job > 1 (included instead of predict.smk and track_video.smk): one job
# predicts, and one tracks, each batch of videos (one process, one import, one model load; on
# SLURM one sbatch). Each batch is its own rule, whose outputs are its videos' usual files, so
# downstream rules see the same files as with a job per video and no per-video job remains.
# Every video's outputs are first written to a staged copy beside a fingerprint, then linked to
# their names: a video that fails fails its batch (naming it), Snakemake removes that batch's
# outputs, but the staged copies of the finished videos survive and the rerun reuses them
# (pipeline_lib/batch.py).

for _batch, _videos in BATCHES.items():

    rule:
        name:
            f"predict_batch_{_batch}"
        input:
            videos=[PLAN.videos[v].path for v in _videos],
            models=model_files(PLAN.predictor),
        output:
            [f"results/predictions/{v}.predictions.slp" for v in _videos],
        params:
            videos={v: batch_video(v) for v in _videos},
            model_dirs=[model_dir(m) for m in PLAN.predictor],
            options=dict(config["inference"]),
            code=code("pipeline_lib.inference.batch"),
        log:
            log_path("predict_batch", _batch),
        benchmark:
            bench_path("predict_batch", _batch)
        threads: rule_threads("predict_batch")
        resources:
            **rule_resources("predict_batch"),
        conda:
            "../../envs/pipeline.yaml"
        script:
            "../scripts/predict_batch.py"

    rule:
        name:
            f"track_batch_{_batch}"
        input:
            predictions=[f"results/predictions/{v}.predictions.slp" for v in _videos],
            tracker=tracker_model_files(None),
        output:
            [f"results/tracks/{v}.{suffix}" for v in _videos for suffix in STAGED_TRACKS.values()],
        params:
            videos={v: batch_tracking(v) for v in _videos},
            code=code("pipeline_lib.tracking.batch"),
        log:
            log_path("track_batch", _batch),
        benchmark:
            bench_path("track_batch", _batch)
        threads: rule_threads("track_batch")
        resources:
            **rule_resources("track_batch"),
        conda:
            "../../envs/pipeline.yaml"
        script:
            "../scripts/track_batch.py"

    for _family in ("predict_batch", "track_batch"):
        apply_family_resources(workflow.get_rule(f"{_family}_{_batch}"), _family)
