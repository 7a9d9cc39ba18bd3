"""Rule predict_batch: predict the videos of one batch (``videos.per_job``) with the models
loaded once; each video's predictions are staged, then linked to their usual name."""

from _common import run_stage


def main(smk):
    from pipeline_lib.inference.batch import predict_batch

    return predict_batch(
        videos=dict(smk.params.videos),
        model_dirs=list(smk.params.model_dirs),
        model_files=list(smk.input.models),
        options=dict(smk.params.options),
        threads=smk.threads,
        code=smk.params.code,
    )


run_stage(snakemake, main)
