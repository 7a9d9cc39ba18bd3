# Identity tracking per video (rule track_video: track_video.smk, or batch.smk with
# videos.per_job > 1), the tracking transformer's training, and tracking accuracy where
# ground-truth identities exist.


rule train_tracker:
    input:
        config=lambda wc: PLAN.tracker_training.config,
        train=lambda wc: PLAN.tracker_training.train_labels,
        val=lambda wc: PLAN.tracker_training.val_labels,
    output:
        ckpt=f"{TRACKER_RUN_DIR}/best.ckpt",
        config=f"{TRACKER_RUN_DIR}/tracker_config.yaml",
        log=f"{TRACKER_RUN_DIR}/training_log.csv",
    params:
        run_dir=lambda wc, output: os.path.dirname(output.ckpt),
        seed=lambda wc: PLAN.tracker_training.seed,
        code=code("pipeline_lib.tracking.gtr.stage"),
    log:
        log_path("train_tracker"),
    benchmark:
        bench_path("train_tracker")
    threads: rule_threads("train_tracker")
    resources:
        **rule_resources("train_tracker"),
    conda:
        "../../envs/pipeline.yaml"
    script:
        "../scripts/train_tracker.py"



rule evaluate_tracking:
    input:
        ground_truth=ground_truth_path,
        tracked="results/tracks/{video}.tracked.slp",
    output:
        "results/tracks/{video}.tracking_metrics.json",
    params:
        code=code("pipeline_lib.report.tracking_eval"),
    log:
        log_path("evaluate_tracking", "{video}"),
    benchmark:
        bench_path("evaluate_tracking", "{video}")
    threads: rule_threads("evaluate_tracking")
    resources:
        **rule_resources("evaluate_tracking"),
    conda:
        "../../envs/pipeline.yaml"
    script:
        "../scripts/evaluate_tracking.py"
