"""Find and read a cluster file: YAML in, a plain mapping of heartbeat settings out.

Reads moonshine.yml as Ruby's YAML writes it: ``:heartbeat:`` style symbol keys
lose their colon and ``!ruby/...`` tags are read as the plain value they tag.
Every failure becomes a :class:`~hbdeploy.errors.ConfigError`, never a traceback.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from .errors import ConfigError, Problem, key_path, key_text

ENV_CONFIG = "HBDEPLOY_CONFIG"
DEFAULT_PATHS = (Path("config/heartbeat.yml"), Path("config/moonshine.yml"))
MAX_BYTES = 1024 * 1024


@dataclass(frozen=True)
class Source:
    """The heartbeat settings read from one file."""

    path: Path
    settings: dict[str, Any]
    section: str  # "" when the settings are the top level, else "heartbeat"


def discover(explicit: str | os.PathLike[str] | None = None,
             environ: Mapping[str, str] | None = None,
             cwd: Path | None = None) -> Path:
    """The cluster file to read: explicit option, then $HBDEPLOY_CONFIG, then the defaults."""
    environ = os.environ if environ is None else environ
    cwd = Path.cwd() if cwd is None else cwd
    if explicit:
        return Path(explicit)
    if environ.get(ENV_CONFIG):
        return Path(environ[ENV_CONFIG])
    for candidate in DEFAULT_PATHS:
        if (cwd / candidate).is_file():
            return cwd / candidate
    looked = ", ".join(str(p) for p in DEFAULT_PATHS)
    raise ConfigError([Problem("", (
        f"no cluster file found: give --cluster FILE, set ${ENV_CONFIG}, "
        f"or create one of {looked} (looked in {cwd})"))])


class _Loader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys and reads Ruby's tags as plain values."""


def _construct_mapping(loader: _Loader, node: yaml.MappingNode) -> dict[Any, Any]:
    loader.flatten_mapping(node)
    result: dict[Any, Any] = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        try:
            hash(key)
        except TypeError:
            raise yaml.constructor.ConstructorError(
                None, None, "a mapping key must be a plain value", key_node.start_mark) from None
        if key in result:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark)
        result[key] = loader.construct_object(value_node, deep=True)
    return result


def _construct_foreign(loader: _Loader, _suffix: str, node: yaml.Node) -> Any:
    if isinstance(node, yaml.MappingNode):
        return _construct_mapping(loader, node)
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node, deep=True)
    return loader.construct_scalar(node)


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
_Loader.add_multi_constructor("!ruby/", _construct_foreign)
_Loader.add_multi_constructor("tag:yaml.org,2002:ruby/", _construct_foreign)


def parse_yaml(data: bytes, name: str) -> Any:
    """Parse YAML bytes; every failure is a ConfigError naming the file."""
    if len(data) > MAX_BYTES:
        raise ConfigError([Problem("", f"{name}: {len(data)} bytes is too large "
                                       f"for a cluster file (at most {MAX_BYTES})")])
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError([Problem("", (
            f"{name}: not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start})"))]
        ) from None
    if "\x00" in text:
        raise ConfigError([Problem("", f"{name}: contains a NUL byte; not a YAML text file")])
    try:
        return yaml.load(text, Loader=_Loader)  # _Loader is a SafeLoader
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f" line {mark.line + 1} column {mark.column + 1}" if mark else ""
        what = exc.problem or exc.context or "invalid YAML"
        raise ConfigError([Problem("", f"{name}:{where}: invalid YAML: {what}")]) from None
    except (yaml.YAMLError, RecursionError, ValueError, OverflowError) as exc:
        reason = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)
        raise ConfigError([Problem("", f"{name}: invalid YAML: {reason}")]) from None


def _unsymbol(value: Any) -> Any:
    """Strip the leading colon of Ruby symbols (``:heartbeat`` -> ``heartbeat``)."""
    if isinstance(value, str) and len(value) > 1 and value[0] == ":" and value[1] != ":":
        return value[1:]
    return value


def normalize(value: Any, path: str = "", problems: list[Problem] | None = None,
              _seen: dict[int, Any] | None = None) -> Any:
    """Copy ``value`` with Ruby-symbol keys and values made plain strings.

    YAML aliases are followed once each (no exponential blow-up on alias bombs).
    """
    problems = [] if problems is None else problems
    seen = {} if _seen is None else _seen
    if id(value) in seen:
        return seen[id(value)]
    if isinstance(value, dict):
        out: dict[Any, Any] = {}
        seen[id(value)] = out
        for key, item in value.items():
            plain = _unsymbol(key)
            if plain in out:
                problems.append(Problem(_join(path, plain), (
                    f"given twice (as {key!r} and as {plain!r}); keep one")))
                continue
            out[plain] = normalize(item, _join(path, plain), problems, seen)
        return out
    if isinstance(value, list):
        seq: list[Any] = []
        seen[id(value)] = seq
        seq.extend(normalize(item, f"{path}[{i}]", problems, seen) for i, item in enumerate(value))
        return seq
    return _unsymbol(value)


def _join(path: str, key: Any) -> str:
    return key_path(path, key) if path else key_text(key)


def read(path: Path) -> Source:
    """Read a cluster file and select its heartbeat settings."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError([Problem("", f"{path}: no such file")]) from None
    except IsADirectoryError:
        raise ConfigError([Problem("", f"{path}: is a directory, not a cluster file")]) from None
    except OSError as exc:
        raise ConfigError([Problem("", f"{path}: cannot read: {exc.strerror}")]) from None
    return from_document(parse_yaml(data, str(path)), path)


def from_document(document: Any, path: Path) -> Source:
    """Pick the heartbeat settings out of a parsed document (top level or ``heartbeat:``)."""
    problems: list[Problem] = []
    document = normalize(document, "", problems)
    if problems:
        raise ConfigError(problems)
    if document is None:
        raise ConfigError([Problem("", f"{path}: is empty; expected a mapping with "
                                       "nodes, resources and password")])
    if not isinstance(document, dict):
        raise ConfigError([Problem("", (
            f"{path}: the top level is a {type_name(document)}; expected a mapping "
            "with nodes, resources and password (or a heartbeat: key holding them)"))])
    if "heartbeat" in document:
        section = document["heartbeat"]
        if not isinstance(section, dict):
            raise ConfigError([Problem("heartbeat", (
                f"{short(section)} is a {type_name(section)}; expected a mapping "
                "with nodes, resources and password"))])
        return Source(path, section, "heartbeat")
    return Source(path, document, "")


def type_name(value: Any) -> str:
    """A YAML-minded name for a Python value's type."""
    if value is None:
        return "null"
    return {bool: "boolean", int: "integer", float: "number", str: "string",
            list: "list", dict: "mapping"}.get(type(value), type(value).__name__)


def short(value: Any, limit: int = 60) -> str:
    """A repr of ``value`` cut to ``limit`` characters for messages."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
