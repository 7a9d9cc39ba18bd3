"""Rule render_clip: one video's predictions drawn on its frames, as an MP4."""

from _common import run_stage


def main(smk):
    from pipeline_lib.report.clips import render_clip

    return render_clip(smk.input.poses, smk.output.clip, smk.params.n_frames)


run_stage(snakemake, main)
