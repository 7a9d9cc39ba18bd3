# With videos.per_job > 1 (included instead of predict.smk and track_video.smk): one job
# predicts, and one tracks, each batch of videos (one process, one import, one model load; on
# SLURM one sbatch), writing staged files beside their fingerprints; predict_video and
# track_video, local jobs, only link each staged file to the video's usual name, so the
# per-video outputs stay the same files. A video that fails fails its batch, naming it; the
# finished ones stay staged and the rerun reuses them (pipeline_lib/batch.py).


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
        link=lambda w, output: link_staged({staged_prediction(w.video): output[0]}),
    log:
        log_path("predict_video", "{video}"),
    localrule: True
    conda:
        "../../envs/pipeline.yaml"
    shell:
        "({params.link}) 2> {log:q}"


rule track_batch:
    input:
        predictions=lambda w: [f"results/predictions/{v}.predictions.slp" for v in BATCHES[w.batch]],
        tracker=tracker_model_files,
    output:
        "results/tracks/batches/{batch}.json",
    params:
        videos=lambda w: {v: batch_tracking(v) for v in BATCHES[w.batch]},
        code=code("pipeline_lib.tracking.batch"),
    log:
        log_path("track_batch", "{batch}"),
    benchmark:
        bench_path("track_batch", "{batch}")
    threads: rule_threads("track_batch")
    resources:
        **rule_resources("track_batch"),
    conda:
        "../../envs/pipeline.yaml"
    script:
        "../scripts/track_batch.py"


rule track_video:
    input:
        lambda w: f"results/tracks/batches/{BATCH_OF[w.video]}.json",
    output:
        slp="results/tracks/{video}.tracked.slp",
        csv="results/tracks/{video}.tracked.csv",
        analysis_h5="results/tracks/{video}.tracked.analysis.h5",
    params:
        link=lambda w, output: link_staged({staged_tracks(w.video)[k]: output[k] for k in STAGED_TRACKS}),
    log:
        log_path("track_video", "{video}"),
    localrule: True
    conda:
        "../../envs/pipeline.yaml"
    shell:
        "({params.link}) 2> {log:q}"
