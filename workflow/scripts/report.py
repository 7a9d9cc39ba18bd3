"""Rule report: tables, curves, example frames and the demo PASS/FAIL line of one run."""

import os

from _common import run_stage


def main(smk):
    from pipeline_lib.report.builder import build_report

    def keyed(keys, files):
        files = list(files)
        if len(keys) != len(files):
            raise ValueError(f"rule report: {len(keys)} keys for {len(files)} input files")
        return dict(zip(keys, files, strict=True))

    p = smk.params
    return build_report(
        out_dir=os.path.dirname(smk.output.summary_md),
        pose_metrics=keyed(p.pose_keys, smk.input.pose_metrics),
        training_logs=keyed(p.training_keys, smk.input.training_logs),
        tracked=keyed(p.tracked_keys, smk.input.tracked),
        tracking_metrics=keyed(p.tracking_keys, smk.input.tracking_metrics),
        n_example_frames=p.n_example_frames,
        demo_models=list(p.demo_models),
        demo_videos=list(p.demo_videos),
        provenance=smk.input.provenance,
        pose_npz=keyed(p.npz_keys, smk.input.pose_npz),
        expected_animals=dict(p.expected_animals),
        peak_threshold=p.peak_threshold,
        max_example_videos=p.example_videos,
    )


run_stage(snakemake, main)
