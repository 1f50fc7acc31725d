"""Reading YAML that a user wrote (config files, `--set` values, benchmark and prompt files)
with one-line errors: not UTF-8, too large, duplicate keys (PyYAML keeps the last silently),
nesting too deep, or an alias that refers to itself."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from pipeline.errors import UserError

MAX_BYTES = 1 << 20  # a config is a page of text; anything larger is not one
MAX_DEPTH = 32


class _StrictLoader(yaml.SafeLoader):
    def construct_mapping(self, node, deep=False):
        seen: set = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *defaults`: merged, not a key
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                duplicate = key in seen
            except TypeError:  # an unhashable key: SafeLoader says so itself
                break
            if duplicate:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r} (line {key_node.start_mark.line + 1})", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep)


def parse_yaml(text: str, where: str) -> Any:
    """The YAML document in `text`; UserError naming `where` for anything malformed."""
    try:
        value = yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        raise UserError(f"{where}: invalid YAML ({' '.join(str(exc).split())[:300]})") from None
    except RecursionError:
        raise UserError(f"{where}: nested more than {MAX_DEPTH} levels deep") from None
    _check_shape(value, where, 0, set())
    return value


def read_yaml(path: str | Path, where: str) -> Any:
    """The YAML document in a file, read as UTF-8 text of bounded size."""
    path = Path(path)
    if path.stat().st_size > MAX_BYTES:
        raise UserError(f"{where}: {path.stat().st_size:,} bytes, larger than a YAML file of settings can be ({MAX_BYTES:,})")
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UserError(f"{where}: not UTF-8 text (byte {exc.start}): is it the right file?") from None
    return parse_yaml(text, where)


def _check_shape(value: Any, where: str, depth: int, ancestors: set[int]) -> None:
    if depth > MAX_DEPTH:
        raise UserError(f"{where}: nested more than {MAX_DEPTH} levels deep")
    if isinstance(value, (dict, list)):
        if id(value) in ancestors:
            raise UserError(f"{where}: a YAML alias refers to the value that contains it")
        children = value.values() if isinstance(value, dict) else value
        for child in children:
            _check_shape(child, where, depth + 1, ancestors | {id(value)})
