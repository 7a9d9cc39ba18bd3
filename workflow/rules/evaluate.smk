# Pose accuracy of the predictor on the held-out splits. The predictor's last model is
# evaluated with the whole chain (e.g. centroid + centered instance) so the numbers describe
# what predict_video will really do; a top-down pair's centroid model is also scored on its own
# (its anchors as one-node poses, pipeline_lib/evaluation/centroid.py).


rule evaluate_model:
    input:
        models=lambda w: model_files(model_chain(w.model)),
        labels=lambda w: eval_labels(w.model, w.split),
    output:
        # also for a given model (run_dir): its folder stays untouched
        metrics="results/models/{model}/metrics.{split}.json",
        npz="results/models/{model}/metrics.{split}.npz",
        predictions="results/models/{model}/labels_pr.{split}.slp",
    params:
        model_dirs=lambda w: [model_dir(m) for m in model_chain(w.model)],
        options=dict(config["inference"]),
        code=code("pipeline_lib.evaluation.evaluate"),
    log:
        log_path("evaluate_model", "{model}.{split}"),
    benchmark:
        bench_path("evaluate_model", "{model}.{split}")
    threads: rule_threads("evaluate_model")
    resources:
        **rule_resources("evaluate_model"),
    conda:
        "../../envs/pipeline.yaml"
    script:
        "../scripts/evaluate_model.py"
