# Human-readable summary of a run: metrics tables, training curves, example frames, the demo
# PASS/FAIL line, and where the results came from (provenance). Its files are also registered
# for `snakemake --report report.html`.


rule report:
    input:
        pose_metrics=list(pose_metrics_files().values()),
        training_logs=list(training_log_files().values()),
        tracked=list(pose_files().values()),
        tracking_metrics=list(tracking_metric_files().values()),
        provenance=PROVENANCE_JSON,
    output:
        summary_md=report(
            REPORT_OUTPUTS["summary_md"], caption="../report/summary.rst", category="1. Summary"
        ),
        summary_json=REPORT_OUTPUTS["summary_json"],
        pose_table=report(
            REPORT_OUTPUTS["pose_table"], caption="../report/pose_metrics.rst", category="2. Pose accuracy"
        ),
        tracking_table=report(
            REPORT_OUTPUTS["tracking_table"],
            caption="../report/tracking_metrics.rst",
            category="3. Tracking",
        ),
        video_table=report(
            REPORT_OUTPUTS["video_table"], caption="../report/videos.rst", category="3. Tracking"
        ),
        training_curves=report(
            directory(REPORT_OUTPUTS["training_curves"]),
            patterns=["{model}.png"],
            caption="../report/training_curves.rst",
            category="4. Training curves",
            labels={"model": "{model}"},
        ),
        example_frames=report(
            directory(REPORT_OUTPUTS["example_frames"]),
            patterns=["{video}.png"],
            caption="../report/example_frames.rst",
            category="5. Example frames",
            labels={"video": "{video}"},
        ),
    params:
        pose_keys=list(pose_metrics_files()),
        training_keys=list(training_log_files()),
        tracked_keys=list(pose_files()),
        tracking_keys=list(tracking_metric_files()),
        demo_models=PLAN.demo_models,
        demo_videos=PLAN.demo_videos,
        n_example_frames=N_EXAMPLE_FRAMES,
        code=code("pipeline_lib.report.builder"),
    log:
        log_path("report"),
    benchmark:
        bench_path("report")
    threads: rule_threads("report")
    resources:
        **rule_resources("report"),
    conda:
        "../../envs/pipeline.yaml"
    script:
        "../scripts/report.py"
