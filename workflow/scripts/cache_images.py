"""Rule cache_images: decode every split's frames once, for all models of the dataset."""

from _common import run_stage


def main(smk):
    from pipeline_lib.data.cache import build_image_cache

    return build_image_cache(
        split_paths={"train": smk.input.train, "val": smk.input.val, "test": smk.input.test},
        out_dir=smk.output[0],
        threads=smk.threads,
    )


run_stage(snakemake, main)
