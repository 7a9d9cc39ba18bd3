"""Every YAML the pipeline reads goes through one strict loader: a syntax error names file, line
and column, and a key given twice in one mapping is an error naming the key and both lines."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import ROOT, snakemake_dry_run

from pipeline_lib.cli import main
from pipeline_lib.config import ConfigError, load_training_config
from pipeline_lib.config.yaml_io import YamlFileError, load_yaml
from pipeline_lib.tracking.gtr.config import GTRTrackerOptionsError, load_tracker_options
from pipeline_lib.tracking.gtr.run_config import RunConfigError, load_run_config

# An unclosed flow mapping: the parser stops at line 4, column 8 (the ':' after 'other').
BROKEN = "a: 1\nsection:\n  inner: {x: 1\n  other: {b: 2}\n"
BROKEN_AT = "line 4, column 8"


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_the_loader_names_line_and_column_and_both_lines_of_a_repeated_key(tmp_path):
    broken = _write(tmp_path / "broken.yaml", BROKEN)
    with pytest.raises(YamlFileError) as err:
        load_yaml(broken)
    assert str(err.value).startswith(f"{broken}:4:8: not valid YAML: expected ',' or '}}'")
    assert "flow mapping that starts at line 3" in str(err.value)
    repeated = _write(tmp_path / "repeated.yaml", "seed: 1\nother:\n  seed: 5\nseed: 2\n")
    with pytest.raises(YamlFileError) as err:
        load_yaml(repeated)
    assert str(err.value) == (
        f"{repeated}:4:1: duplicate key 'seed': given on lines 1 and 4 of the same mapping; "
        "keep one"
    )
    assert load_yaml(_write(tmp_path / "ok.yaml", "seed: 1\nother: {seed: 5}\n")) == {
        "seed": 1,
        "other": {"seed": 5},
    }


def test_workflow_config_syntax_error_and_repeated_key(tmp_path, capsys):
    """config/config.yaml is read by Snakemake; our check runs first and names the place."""
    (tmp_path / "config").mkdir()
    _write(tmp_path / "config/config.yaml", BROKEN)
    run = snakemake_dry_run("--quiet", "rules", "--directory", str(tmp_path))
    assert run.returncode != 0
    assert (
        "Invalid pipeline config config/config.yaml:4:8: not valid YAML: expected ',' or '}'"
        in run.stderr + run.stdout
    )
    # A --configfile Snakemake accepted (it keeps the last 'seed') is refused with both lines.
    override = _write(tmp_path / "override.yaml", "seed: 1\ndemo: {enabled: true}\nseed: 2\n")
    run = snakemake_dry_run("--quiet", "rules", "--configfile", str(override))
    assert run.returncode != 0
    assert (
        f"{override}:3:1: duplicate key 'seed': given on lines 1 and 3" in run.stderr + run.stdout
    )
    # Snakemake reads a --configfile before the workflow and names no line for a syntax error;
    # check-yaml does.
    broken = _write(tmp_path / "my_config.yaml", BROKEN)
    assert main(["check-yaml", str(ROOT / "config/config.yaml"), str(broken)]) == 1
    assert f"check-yaml: error: {broken}:4:8: not valid YAML" in capsys.readouterr().err


def test_model_config_through_train_and_the_loader(tmp_path, capsys):
    config = _write(tmp_path / "model.yaml", BROKEN)
    run_dir = tmp_path / "run"
    assert main(["train", str(config), "--run-dir", str(run_dir)]) == 1
    assert f"'{config}': {BROKEN_AT}: not valid YAML" in capsys.readouterr().err
    assert not run_dir.exists()
    source = (ROOT / "config/models/demo_centroid.yaml").read_text()
    repeated = _write(tmp_path / "repeated.yaml", source + "trainer_config: {seed: 3}\n")
    first = 1 + source.splitlines().index("trainer_config:")
    with pytest.raises(ConfigError) as err:
        load_training_config(repeated)
    last = len(source.splitlines()) + 1
    assert f"duplicate key 'trainer_config': given on lines {first} and {last}" in str(err.value)


def test_tracker_config(tmp_path):
    broken = _write(tmp_path / "tracker.yaml", BROKEN)
    with pytest.raises(GTRTrackerOptionsError, match=f"tracker.yaml': {BROKEN_AT}: not valid"):
        load_tracker_options(broken)
    repeated = _write(tmp_path / "tracker2.yaml", "tracker:\n  window_size: 8\n  window_size: 4\n")
    with pytest.raises(GTRTrackerOptionsError, match="'window_size': given on lines 2 and 3"):
        load_tracker_options(repeated)


def test_gtr_run_config(tmp_path, capsys):
    broken = _write(tmp_path / "gtr.yaml", BROKEN)
    with pytest.raises(RunConfigError, match=f"gtr.yaml': {BROKEN_AT}: not valid YAML"):
        load_run_config(broken)
    source = (ROOT / "config/tracking/demo_gtr.yaml").read_text()
    repeated = _write(tmp_path / "gtr2.yaml", "seed: 1\n" + source + "\nseed: 2\n")
    last = len(("seed: 1\n" + source).splitlines()) + 2
    run_dir = tmp_path / "run"
    assert main(["train-tracker", str(repeated), "--run-dir", str(run_dir)]) == 1
    err = capsys.readouterr().err
    assert f"duplicate key 'seed': given on lines 1 and {last}" in err
