# Human-readable summary of a run: metrics tables, training curves, example frames, the demo
# PASS/FAIL line, and where the results came from (provenance). Its files are also registered
# for `snakemake --report report.html`: one HTML page per section (the viewer shows HTML and
# images inline, every other file only as a download), figures, and the home page's headline.


rule report:
    input:
        pose_metrics=list(pose_metrics_files().values()),
        pose_npz=list(pose_npz_files().values()),
        training_logs=list(training_log_files().values()),
        tracked=list(pose_files().values()),
        tracking_metrics=list(tracking_metric_files().values()),
        provenance=PROVENANCE_JSON,
    output:
        summary_md=report(
            REPORT_OUTPUTS["summary_md"], caption="../report/summary.rst", category="1. Summary"
        ),
        summary_json=REPORT_OUTPUTS["summary_json"],
        headline="results/report/headline.html",
        summary_html=report(
            "results/report/summary.html", caption="../report/summary.rst", category="1. Summary"
        ),
        pose_html=report(
            "results/report/pose_accuracy.html",
            caption="../report/pose_metrics.rst",
            category="2. Pose accuracy",
        ),
        pose_figures=report(
            directory("results/report/pose_figures"),
            patterns=["{model}.{split}.png"],
            caption="../report/pose_figures.rst",
            category="2. Pose accuracy",
            labels={"model": "{model}", "split": "{split}"},
        ),
        tracking_html=report(
            "results/report/tracking.html", caption="../report/videos.rst", category="3. Tracking"
        ),
        provenance_html=report(
            "results/report/provenance.html",
            caption="../report/provenance.rst",
            category="6. Provenance",
        ),
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
        npz_keys=list(pose_npz_files()),
        expected_animals=expected_animals(),
        peak_threshold=config["inference"]["peak_threshold"],
        training_keys=list(training_log_files()),
        tracked_keys=list(pose_files()),
        tracking_keys=list(tracking_metric_files()),
        demo_models=PLAN.demo_models,
        demo_videos=PLAN.demo_videos,
        n_example_frames=N_EXAMPLE_FRAMES,
        example_videos=config["report"]["example_videos"],
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


# report.clips: a labelled clip per video, off by default (rendering re-reads every frame).
rule render_clip:
    input:
        poses=lambda w: final_pose_file(w.video),
    output:
        clip=report(
            "results/report/clips/{video}.mp4",
            caption="../report/clips.rst",
            category="7. Clips",
            labels={"video": "{video}"},
        ),
    params:
        n_frames=config["report"]["clip_frames"],
        code=code("pipeline_lib.report.clips"),
    log:
        log_path("render_clip", "{video}"),
    benchmark:
        bench_path("render_clip", "{video}")
    threads: rule_threads("render_clip")
    resources:
        **rule_resources("render_clip"),
    conda:
        "../../envs/pipeline.yaml"
    script:
        "../scripts/render_clip.py"
