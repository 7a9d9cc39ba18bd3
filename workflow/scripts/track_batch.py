"""Rule track_batch: track the videos of one batch (``videos.per_job``) in one process; each
video's tracks are staged, then linked to their usual names."""

from _common import run_stage


def main(smk):
    from pipeline_lib.tracking.batch import track_batch

    return track_batch(
        videos=dict(smk.params.videos),
        tracker_files=list(smk.input.tracker),
        code=smk.params.code,
    )


run_stage(snakemake, main)
