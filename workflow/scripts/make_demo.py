"""Rule make_demo: write the synthetic demo labels, videos and ground-truth tracks."""

import os

from _common import run_stage


def main(smk):
    from pipeline_lib.data.demo import make_demo_dataset

    p = smk.params
    return make_demo_dataset(
        out_dir=os.path.dirname(smk.output.labels),
        seed=p.seed,
        n_videos=p.n_videos,
        n_frames=p.n_frames,
        n_animals=p.n_animals,
        frame_size=tuple(p.frame_size),
        label_every=p.label_every,
    )


run_stage(snakemake, main)
