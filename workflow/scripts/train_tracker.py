"""Rule train_tracker: train the global tracking transformer on tracked labels."""

from _common import run_stage


def main(smk):
    from pipeline_lib.tracking.gtr.stage import run_train_tracker

    return run_train_tracker(
        smk.input.config,
        list(smk.input.train),
        list(smk.input.val),
        smk.params.run_dir,
        threads=smk.threads,
        seed=smk.params.seed,
    )


run_stage(snakemake, main)
