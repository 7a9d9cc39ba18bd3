# Identity tracking per video, and tracking accuracy where ground-truth identities exist.


rule track_video:
    input:
        "results/predictions/{video}.predictions.slp",
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
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
    conda:
        "../../envs/pipeline.yaml"
    script:
        "../scripts/track_video.py"


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
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    conda:
        "../../envs/pipeline.yaml"
    script:
        "../scripts/evaluate_tracking.py"
