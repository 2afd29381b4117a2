"""User-written YAML files (workflows, scenarios): parsed with their line numbers, so that a
mistake is reported as ``file:line: field: reason`` and nothing from that file is used.

Durations are seconds, or strings with units: ``500ms``, ``30s``, ``2m``, ``1h``, ``1d``, or
several largest first, ``1h10m``, ``2m30s``.
"""

from __future__ import annotations

import pathlib
import re
from collections.abc import Callable, Mapping
from typing import Any

import yaml

from .errors import ConfigError

__all__ = ["NotUtf8Error", "SourceError", "Spec", "YamlSource", "decode_utf8", "number",
           "parse_duration", "seconds", "section"]

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


class SourceError(ConfigError):
    """A file is invalid; names the file, the line and the field."""

    def __init__(self, path: pathlib.Path, line: int | None, field: str, reason: str) -> None:
        self.path, self.line = path, line
        where = f"{path}:{line}" if line else str(path)
        ValueError.__init__(self, f"{where}: {field}: {reason}")
        self.field, self.value, self.reason, self.source = field, None, reason, str(path)


class NotUtf8Error(ValueError):
    """Bytes that are not UTF-8 text: the line of the first bad byte, and why (each reader
    names its own file and field)."""

    def __init__(self, line: int, reason: str) -> None:
        super().__init__(reason)
        self.line, self.reason = line, reason


def decode_utf8(data: bytes) -> str:
    """``data`` as text: UTF-8, with a leading byte-order mark (an editor's, Excel's)
    skipped. Raises NotUtf8Error naming the line and the byte, not a decoder's traceback."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise NotUtf8Error(data[:exc.start].count(b"\n") + 1,
                           f"is not UTF-8 text (byte {data[exc.start]:#04x}; save it as "
                           "UTF-8)") from None


_PART = r"(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)"
_DURATION = re.compile(rf"\s*(?:{_PART}\s*)+")


def parse_duration(value: Any, field: str) -> float:
    """Seconds from a number or a string such as ``30s`` or ``1h10m`` (units largest first,
    each once); a ConfigError naming ``field``."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    text = str(value)
    parts = re.findall(_PART, text) if _DURATION.fullmatch(text) else []
    units = [u for _, u in parts]
    order = ["d", "h", "m", "s", "ms"]
    if not parts or units != sorted(set(units), key=order.index):
        raise ConfigError(field, value,
                          "must be seconds or a duration like 30s, 2m, 500ms or 1h10m")
    return sum(float(n) * _UNITS[u] for n, u in parts)


def dotted(at: list[Any]) -> str:
    """``["steps", 2, "config"]`` → ``steps[2].config``."""
    out = ""
    for p in at:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out


class YamlSource:
    """One YAML file: its data, and the line of any field in it."""

    def __init__(self, path: str | pathlib.Path) -> None:
        self.path = pathlib.Path(path)
        try:
            text = decode_utf8(self.path.read_bytes())
            self.root = yaml.compose(text)
            self.data = yaml.safe_load(text)
        except OSError as exc:
            raise SourceError(self.path, None, "file",
                              f"cannot be read ({exc.strerror})") from None
        except NotUtf8Error as exc:  # YAML is text: a binary file, or another encoding
            raise SourceError(self.path, exc.line, "file", exc.reason) from None
        except RecursionError:
            raise SourceError(self.path, None, "yaml",
                              "nests too deeply (past the parser's recursion limit)") from None
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            raise SourceError(self.path, mark.line + 1 if mark else None, "yaml",
                              f"is not valid YAML ({getattr(exc, 'problem', exc)})") from None

    def error(self, reason: str, at: list[Any], name: str = "file") -> SourceError:
        """An error about the field at ``at`` (keys and indices)."""
        return SourceError(self.path, self.line(at), dotted(at) or name, reason)

    def core_error(self, exc: Exception, at: list[Any], name: str = "file") -> SourceError:
        """A core validation error (a ConfigError naming its value, or a TypeError), placed
        at ``at`` in this file."""
        reason = getattr(exc, "reason", None) or str(exc)
        value = getattr(exc, "value", None)
        if value is not None and isinstance(exc, ConfigError):
            reason += f", got {value!r}"
        return self.error(reason, at, name)

    def line(self, at: list[Any]) -> int | None:
        """The line of the node at ``at``, or of its nearest parent."""
        node = self.root
        line = node.start_mark.line + 1 if node is not None else None
        for key in at:
            if isinstance(node, yaml.MappingNode):
                match = [(k, v) for k, v in node.value if k.value == key]
                if not match:
                    break
                key_node, node = match[0]
                line = key_node.start_mark.line + 1  # point at the key, where people look
            elif isinstance(node, yaml.SequenceNode) and isinstance(key, int) \
                    and key < len(node.value):
                node = node.value[key]
                line = node.start_mark.line + 1
            else:
                break
        return line


# -- sections of settings: yaml key -> (the core's field name, converter) ----------------------

Spec = Mapping[str, tuple[str, Callable[[Any, str], Any]]]


def seconds(v: Any, key: str) -> float:
    return parse_duration(v, key)


def number(v: Any, key: str) -> Any:
    """A value the core checks as a number (its own check names the rule)."""
    if isinstance(v, bool) or not isinstance(v, int | float | str):
        raise ConfigError(key, v, "must be a number")
    return v


def section(src: YamlSource, raw: Any, at: list[Any], spec: Spec,
            build: Callable[..., Any]) -> Any:
    """Build a core settings object from the mapping at ``at``: every key known to ``spec``,
    converted, and the core's own validation placed back at the yaml key it came from."""
    if not isinstance(raw, dict):
        raise src.error(f"must be a mapping of {sorted(spec)}", at)
    kwargs = {}
    for key, value in raw.items():
        if key not in spec:
            raise src.error(f"is not a {at[-1]} field (known: {sorted(spec)})", [*at, key])
        name, convert = spec[key]
        try:
            kwargs[name] = convert(value, key)
        except ConfigError as exc:
            raise src.core_error(exc, [*at, key]) from None
    try:
        return build(**kwargs)
    except (ConfigError, TypeError) as exc:
        core = getattr(exc, "field", None)
        yaml_key = next((k for k, (n, _) in spec.items() if n == core), None)
        raise src.core_error(exc, [*at, yaml_key] if yaml_key else at) from None
