"""Read template.yaml: the single description of Postern's AWS resources.

In:   the path of template.yaml (default: the repository's).
Out:  :func:`load_template` -> dict with CloudFormation short-form tags
      (``!Ref``, ``!GetAtt``, ``!Sub`` ...) turned into their long form;
      :func:`resources_of_type` to pick resources by type.
Fails: yaml errors propagate (a broken template should stop the local stack).
"""

from __future__ import annotations

from pathlib import Path

import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = REPO_ROOT / "template.yaml"


class _Loader(yaml.SafeLoader):
    pass


def _tag(loader: yaml.SafeLoader, suffix: str, node: yaml.Node):
    name = "Ref" if suffix == "Ref" else f"Fn::{suffix}"
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
        if suffix == "GetAtt":
            value = value.split(".", 1)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    return {name: value}


_Loader.add_multi_constructor("!", _tag)


def load_template(path: Path | str | None = None) -> dict:
    with open(path or TEMPLATE, encoding="utf-8") as fh:
        return yaml.load(fh, Loader=_Loader)  # noqa: S506 - SafeLoader subclass


def resources_of_type(template: dict, rtype: str) -> dict[str, dict]:
    return {k: v for k, v in template.get("Resources", {}).items() if v.get("Type") == rtype}
