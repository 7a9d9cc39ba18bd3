# Tracking, one job per video (with videos.per_job > 1 the Snakefile includes batch.smk instead).


rule track_video:
    input:
        predictions="results/predictions/{video}.predictions.slp",
        tracker=tracker_model_files,
    output:
        slp="results/tracks/{video}.tracked.slp",
        csv="results/tracks/{video}.tracked.csv",
        analysis_h5="results/tracks/{video}.tracked.analysis.h5",
    params:
        options=tracking_options,
        code=code("pipeline_lib.tracking.track"),
    log:
        log_path("track_video", "{video}"),
    benchmark:
        bench_path("track_video", "{video}")
    threads: rule_threads("track_video")
    resources:
        **rule_resources("track_video"),
    conda:
        "../../envs/pipeline.yaml"
    script:
        "../scripts/track_video.py"
