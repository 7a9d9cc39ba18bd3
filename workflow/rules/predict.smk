# Pose prediction, one job per video (on SLURM: one cluster job per video). A manifest row's
# `frames` column limits a job to a selection of its video's frames. With videos.per_job > 1
# the Snakefile includes batch.smk instead.


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
