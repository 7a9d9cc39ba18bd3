"""Rule evaluate_tracking: MOTA/IDF1/HOTA of one tracked video against its true identities."""

from _common import run_stage


def main(smk):
    from pipeline_lib.report.tracking_eval import evaluate_tracking_files

    return evaluate_tracking_files(smk.input.ground_truth, smk.input.tracked, smk.output[0])


run_stage(snakemake, main)
