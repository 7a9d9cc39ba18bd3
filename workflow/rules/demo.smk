# Synthetic demo data: labelled frames, videos, and ground-truth tracks for checking the whole
# pipeline (and its accuracy targets) without any user data.

DEMO_OUT = {
    "labels": "results/demo/labels.slp",
    "videos": [PLAN.videos[v].path for v in PLAN.demo_videos],
    "ground_truth": [PLAN.videos[v].ground_truth for v in PLAN.demo_videos],
}


rule make_demo:
    output:
        labels=DEMO_OUT["labels"],
        videos=DEMO_OUT["videos"],
        ground_truth=DEMO_OUT["ground_truth"],
    params:
        seed=config["demo"]["seed"],
        n_videos=config["demo"]["n_videos"],
        n_frames=config["demo"]["n_frames"],
        n_animals=config["demo"]["n_animals"],
        frame_size=config["demo"]["frame_size"],
        label_every=config["demo"]["label_every"],
        code=code("pipeline_lib.data.demo"),
    log:
        log_path("make_demo"),
    benchmark:
        bench_path("make_demo")
    threads: rule_threads("make_demo")
    resources:
        **rule_resources("make_demo"),
    conda:
        "../../envs/pipeline.yaml"
    script:
        "../scripts/make_demo.py"
