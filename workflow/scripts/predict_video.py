"""Rule predict_video: predict poses on the frames of one video (all, or the manifest's
``frames`` selection)."""

from _common import run_stage


def main(smk):
    from pipeline_lib.inference.predict import predict_video

    return predict_video(
        model_dirs=list(smk.params.model_dirs),
        video_path=smk.input.video,
        out_path=smk.output[0],
        options=dict(smk.params.options),
        threads=smk.threads,
        frames=smk.params.frames or None,
    )


run_stage(snakemake, main)
