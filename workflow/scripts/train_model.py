"""Rule train_model: train one model into its run directory (resumes from last.ckpt there)."""

from _common import run_stage


def main(smk):
    from pipeline_lib.training.train import train_model

    return train_model(
        config_path=smk.input.config,
        train_labels=smk.input.train,
        val_labels=smk.input.val,
        cache_dir=smk.input.cache,
        run_dir=smk.params.run_dir,
        threads=smk.threads,
        seed=smk.params.seed,
        precision=smk.params.precision,
    )


run_stage(snakemake, main)
