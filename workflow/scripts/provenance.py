"""Rule provenance: package versions, commit, config hashes, seeds and hardware of this run."""

from _common import PROJECT_ROOT, run_stage


def main(smk):
    from pipeline_lib.provenance import collect_provenance, model_seeds, write_provenance

    configs = list(smk.input.configs)
    labels = list(smk.params.config_labels)
    if len(labels) != len(configs):
        raise ValueError(f"rule provenance: {len(labels)} labels for {len(configs)} config files")
    seeds = dict(smk.params.seeds)
    seeds.update(model_seeds(smk.params.model_configs, smk.params.seeds["seed"]))
    record = collect_provenance(
        project_root=PROJECT_ROOT,
        config=dict(smk.params.config),
        config_files=dict(zip(labels, configs, strict=True)),
        seeds=seeds,
        job_threads=dict(smk.params.job_threads),
        model_dirs=dict(smk.params.model_dirs),
    )
    write_provenance(smk.output[0], record)
    project = record["project"]
    return {k: project[k] for k in ("version", "git_commit", "git_dirty")}


run_stage(snakemake, main)
