"""The one YAML loader for every file a user gives marc_ray (pipeline, benchmark, annotate and
prompt configs, and a run folder's ``config.yaml``).

``yaml.safe_load`` accepts two things that let a config change a run silently or stop it:

* a **duplicate key**: ``calibrate: {alpha: 0.2, alpha: 0.9}`` loads as alpha 0.9, so the
  certificate states a guarantee its author never wrote;
* **anchors and aliases**: a 1 kB file of nested aliases (the "billion laughs") loads as a shared
  structure whose walk (validation, redaction, a deep copy) never ends.

:func:`load_yaml` refuses both, before any value is constructed, with one line naming the file,
the line and the key. A settings file has no need for either: each value is written once.
"""

from __future__ import annotations

from typing import Any

import yaml

from .errors import ContractError

__all__ = ["load_yaml"]

# nesting a settings file never needs; deeper input would exhaust the parser's recursion
MAX_DEPTH = 64


def load_yaml(text: str, source: str = "<yaml>") -> Any:
    """Parse ``text`` (the content of ``source``) as YAML, strictly.

    Parameters
    ----------
    text : str
        The YAML document.
    source : str
        The file it came from, named in every error.

    Returns
    -------
    The loaded document (``None`` for an empty one), as ``yaml.safe_load`` would return it.

    Raises
    ------
    ContractError
        (a ``ValueError``) the text is not YAML, holds an anchor or an alias, repeats a key in one
        mapping, or nests deeper than ``MAX_DEPTH``; the message names the file, line and key.
    """
    loader = _StrictLoader(text)
    loader.source = loader.name = source  # marks (and so yaml's own errors) name the file
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check_keys(loader, node, "", 0)
        return loader.construct_document(node)
    except yaml.YAMLError as error:
        raise ContractError(source, "not valid YAML: " + " ".join(str(error).split())) from error
    except RecursionError as error:
        raise ContractError(source, f"nested more than {MAX_DEPTH} levels deep") from error
    finally:
        loader.dispose()


class _StrictLoader(yaml.SafeLoader):
    """``SafeLoader`` that refuses an anchor or an alias when it composes the node."""

    source = "<yaml>"

    def compose_node(self, parent, index):
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
            kind = "an alias (*)" if isinstance(event, yaml.AliasEvent) else "an anchor (&)"
            raise ContractError(_at(self.source, event.start_mark),
                                f"{kind} '{event.anchor}' is not allowed in a settings file",
                                hint="write each value out where it is used")
        return super().compose_node(parent, index)


def _at(source: str, mark) -> str:
    return f"{source}, line {mark.line + 1}"


def _check_keys(loader: yaml.SafeLoader, node: yaml.Node, path: str, depth: int) -> None:
    """Refuse a key repeated within one mapping (anywhere in the document), and deep nesting."""
    if depth > MAX_DEPTH:
        raise ContractError(_at(loader.source, node.start_mark),
                            f"nested more than {MAX_DEPTH} levels deep")
    if isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _check_keys(loader, item, f"{path}[{i}]", depth + 1)
    elif isinstance(node, yaml.MappingNode):
        first_line: dict[Any, int] = {}
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node, deep=True)
            name = f"{path}.{key}" if path else str(key)
            try:
                seen = first_line.get(key)
            except TypeError:  # an unhashable key: yaml's own construction reports it
                seen = None
            if seen is not None:
                raise ContractError(_at(loader.source, key_node.start_mark),
                                    f"duplicate key '{name}' (first at line {seen}); the second "
                                    f"value would silently replace the first", field=None,
                                    hint="keep one")
            try:
                first_line[key] = key_node.start_mark.line + 1
            except TypeError:
                pass
            _check_keys(loader, value_node, name, depth + 1)
