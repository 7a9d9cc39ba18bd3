"""Rule evaluate_model: pose metrics of the predictor on one held-out split."""

from _common import run_stage


def main(smk):
    from pipeline_lib.evaluation.evaluate import evaluate_model

    return evaluate_model(
        model_dirs=list(smk.params.model_dirs),
        labels_path=smk.input.labels,
        out_json=smk.output.metrics,
        out_npz=smk.output.npz,
        out_pred_slp=smk.output.predictions,
        threads=smk.threads,
        options=dict(smk.params.options),
    )


run_stage(snakemake, main)
