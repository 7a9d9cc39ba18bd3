"""Rule split_labels: seeded train/val/test split of one dataset's labelled frames."""

from _common import run_stage


def main(smk):
    from pipeline_lib.data.split import split_labels

    test_labels = list(smk.input.test_labels)
    return split_labels(
        labels_paths=list(smk.input.labels),
        out_train=smk.output.train,
        out_val=smk.output.val,
        out_test=smk.output.test,
        validation_fraction=smk.params.validation_fraction,
        test_fraction=smk.params.test_fraction,
        test_labels_path=test_labels[0] if test_labels else None,
        seed=smk.params.seed,
        user_instances_only=smk.params.user_instances_only,
    )


run_stage(snakemake, main)
