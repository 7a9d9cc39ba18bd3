"""Reading every YAML file the pipeline is given: safe, strict about repeated keys, and with
errors that say file, line and column.

One loader for all of them (pipeline config, model configs, tracker configs, run folders), so
they behave alike:

* only plain data is built (a :class:`yaml.SafeLoader`): a config file never runs code;
* a key written twice in one mapping (``seed:`` twice) is an error naming the key and both
  lines. PyYAML silently keeps the last one, so an edit further down a long file would
  quietly override the value the user is looking at;
* a syntax error says ``FILE:LINE:COLUMN`` (1-based, as editors count) and what the parser
  expected, instead of Snakemake's "Config file is not valid JSON or YAML".
"""

from __future__ import annotations

import os
from collections.abc import Hashable, Iterable
from pathlib import Path
from typing import Any

import yaml


class YamlFileError(ValueError):
    """A YAML file that cannot be read; ``str()`` is ``FILE:LINE:COLUMN: problem``."""

    def __init__(self, source: str, line: int | None, column: int | None, problem: str) -> None:
        self.source, self.line, self.column, self.problem = source, line, column, problem
        where = source if line is None else f"{source}:{line}:{column}"
        super().__init__(f"{where}: {problem}")

    @property
    def detail(self) -> str:
        """The problem with its position but without the file name (for messages that name
        the file already)."""
        if self.line is None:
            return self.problem
        return f"line {self.line}, column {self.column}: {self.problem}"


class StrictSafeLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key repeated within one mapping (PyYAML keeps the last)."""


def _construct_unique_mapping(loader: StrictSafeLoader, node: yaml.MappingNode) -> dict:
    first_line: dict[Any, int] = {}
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            continue
        key = loader.construct_object(key_node, deep=True)
        if not isinstance(key, Hashable):
            continue  # construct_mapping reports unhashable keys itself
        line = key_node.start_mark.line + 1
        if key in first_line:
            raise _DuplicateKey(key, first_line[key], key_node.start_mark)
        first_line[key] = line
    return loader.construct_mapping(node, deep=True)


StrictSafeLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_unique_mapping
)


class _DuplicateKey(yaml.YAMLError):
    def __init__(self, key: Any, first_line: int, mark: yaml.Mark) -> None:
        super().__init__(f"duplicate key {key!r}")
        self.key, self.first_line, self.mark = key, first_line, mark


def parse_yaml(text: str, source: str) -> Any:
    """Parse YAML ``text`` read from ``source`` (named in errors) with :class:`StrictSafeLoader`.

    Raises :class:`YamlFileError` for a syntax error or a repeated key.
    """
    try:
        return yaml.load(text, Loader=StrictSafeLoader)  # noqa: S506 - a SafeLoader subclass
    except _DuplicateKey as exc:
        second = exc.mark.line + 1
        raise YamlFileError(
            source,
            second,
            exc.mark.column + 1,
            f"duplicate key {exc.key!r}: given on lines {exc.first_line} and {second} of the "
            "same mapping; keep one",
        ) from None
    except yaml.MarkedYAMLError as exc:
        raise _syntax_error(source, exc) from None
    except yaml.YAMLError as exc:
        raise YamlFileError(source, None, None, f"not valid YAML: {exc}") from None


def load_yaml(path: str | os.PathLike) -> Any:
    """The data of the YAML file at ``path`` (None for an empty file); see :func:`parse_yaml`.

    A missing file raises ``FileNotFoundError``; a file that is not UTF-8 text raises
    :class:`YamlFileError`.
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise YamlFileError(str(path), None, None, f"not a UTF-8 text file ({exc})") from None
    return parse_yaml(text, str(path))


def check_yaml_files(paths: Iterable[str | os.PathLike]) -> None:
    """Read each existing file of ``paths`` with :func:`load_yaml`; the first problem raises.

    For files another program (Snakemake) reads with a laxer loader: checking them first
    gives the user our messages for them.
    """
    for path in dict.fromkeys(os.fspath(p) for p in paths):
        if os.path.isfile(path):
            load_yaml(path)


def _syntax_error(source: str, exc: yaml.MarkedYAMLError) -> YamlFileError:
    """``FILE:LINE:COLUMN: not valid YAML: <problem> (<context>, line N)``."""
    mark = exc.problem_mark or exc.context_mark
    problem = f"not valid YAML: {exc.problem or exc.context or 'syntax error'}"
    if exc.context and exc.problem:
        problem += f" ({exc.context}"
        if exc.context_mark is not None and exc.context_mark is not mark:
            problem += f" that starts at line {exc.context_mark.line + 1}"
        problem += ")"
    if mark is None:
        return YamlFileError(source, None, None, problem)
    return YamlFileError(source, mark.line + 1, mark.column + 1, problem)
