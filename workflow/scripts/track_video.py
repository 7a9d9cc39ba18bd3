"""Rule track_video: link one video's predicted instances into identity tracks."""

from _common import run_stage


def main(smk):
    from pipeline_lib.tracking.track import track_file

    return track_file(
        smk.input.predictions,
        smk.output.slp,
        options=dict(smk.params.options),
        out_csv=smk.output.csv,
        out_analysis_h5=smk.output.analysis_h5,
    )


run_stage(snakemake, main)
