"""Pose estimation and multi-animal tracking library behind the Snakemake pipeline.

Every stage of the workflow is a plain function here; Snakemake only orchestrates.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("pipeline-lib")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"
