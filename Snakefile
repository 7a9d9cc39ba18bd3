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


configfile: "config/config.yaml"


# Every problem at once, named by its key, with "did you mean"; `validate` then fills defaults.
from pipeline_lib.workflow_support import WorkflowConfigError, check_config_schema
from snakemake.exceptions import WorkflowError

try:
    check_config_schema(config, f"{workflow.basedir}/workflow/schemas/config.schema.yaml")
except WorkflowConfigError as exc:
    raise WorkflowError(f"Invalid pipeline config: {exc}") from None


validate(config, "workflow/schemas/config.schema.yaml")


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/demo.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/predict.smk"
include: "workflow/rules/track.smk"
include: "workflow/rules/provenance.smk"
include: "workflow/rules/report.smk"


rule all:
    input:
        all_targets(),
        PROVENANCE_JSON,
    default_target: True
    localrule: True
