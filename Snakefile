# Animal pose estimation + multi-animal tracking.
#
# labels -> split -> image cache -> train -> evaluate;  videos -> predict -> track -> report.
# This file only wires things together: the config is checked against
# workflow/schemas/config.schema.yaml and by pipeline_lib/workflow_support.py while the
# workflow is parsed (so a bad config fails even on `snakemake -n`); every computation is a
# pipeline_lib function called from a thin script in workflow/scripts/.

import sys

from snakemake.utils import min_version, validate

min_version("9.0")

# The helpers and the code hashes come from the pipeline_lib beside this Snakefile, which is
# also the one the job scripts import.
sys.path.insert(0, workflow.basedir)

from snakemake.exceptions import WorkflowError
from pipeline_lib.config.yaml_io import YamlFileError, check_yaml_files

# Snakemake's YAML reader reports a syntax error without file or line and keeps the last of
# two repeated keys: our reader goes over the config files first (those of --configfile have
# passed Snakemake's reader already, so only repeated keys are left to find in them).
try:
    check_yaml_files(["config/config.yaml", *workflow.config_settings.configfiles])
except YamlFileError as exc:
    raise WorkflowError(f"Invalid pipeline config {exc}") from None


configfile: "config/config.yaml"


# Every problem at once, named by its key, with "did you mean"; `validate` then fills defaults.
from pipeline_lib.workflow_support import WorkflowConfigError, check_config_schema

try:
    check_config_schema(config, f"{workflow.basedir}/workflow/schemas/config.schema.yaml")
except WorkflowConfigError as exc:
    raise WorkflowError(f"Invalid pipeline config: {exc}") from None


validate(config, "workflow/schemas/config.schema.yaml")


# A results folder that cannot be written fails now, not after the first job's work is done.
from pipeline_lib.workflow_support import check_output_folders

try:
    check_output_folders()
except WorkflowConfigError as exc:
    raise WorkflowError(str(exc)) from None


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/demo.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/evaluate.smk"
if BATCHES:  # videos.per_job > 1: several videos per prediction and tracking job

    include: "workflow/rules/batch.smk"

else:

    include: "workflow/rules/predict.smk"
    include: "workflow/rules/track_video.smk"

include: "workflow/rules/track.smk"
include: "workflow/rules/provenance.smk"
include: "workflow/rules/report.smk"


rule all:
    input:
        all_targets(),
        PROVENANCE_JSON,
    default_target: True
    localrule: True
