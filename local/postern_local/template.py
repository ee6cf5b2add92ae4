"""Read template.yaml: the single description of Postern's AWS resources.

In:   the path of template.yaml (default: the repository's).
Out:  :func:`load_template` -> dict with CloudFormation short-form tags
      (``!Ref``, ``!GetAtt``, ``!Sub`` ...) turned into their long form;
      :func:`resources_of_type` to pick resources by type; :func:`deployed` (the
      resources and outputs a stack gets for given parameters: conditions evaluated).
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
    # !Ref and !Condition are "Ref" and "Condition" in CloudFormation's JSON form, not "Fn::..."
    name = suffix if suffix in ("Ref", "Condition") else f"Fn::{suffix}"
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


NO_VALUE = {"Ref": "AWS::NoValue"}


def parameter_values(template: dict, overrides: dict | None = None) -> dict:
    """Every parameter's value: its Default, or the override given (as a deploy would pass it)."""
    values = {k: v.get("Default") for k, v in (template.get("Parameters") or {}).items()}
    values.update(overrides or {})
    return values


def resolve(template: dict, node, overrides: dict | None = None, refs: bool = True):
    """``node`` with Ref (to parameters), Fn::If, Fn::Equals, Fn::Not, Fn::And, Fn::Or, Fn::Contains and Condition
    evaluated for the given parameter values (defaults otherwise); other intrinsics are left as they are.
    ``refs=False`` leaves a Ref to a parameter as it is outside conditions (what names what stays visible)."""
    params = parameter_values(template, overrides)
    conditions = template.get("Conditions") or {}

    def cond(name: str) -> bool:
        return bool(ev(conditions[name], True))

    def ev(v, deref=refs):
        if isinstance(v, dict) and len(v) == 1:
            (k, a), = v.items()
            if k == "Ref" and a in params and deref:
                return params[a]
            if k == "Condition":
                return cond(a)
            if k == "Fn::If":
                return ev(a[1] if cond(a[0]) else a[2], deref)
            if k == "Fn::Equals":
                return str(ev(a[0], True)) == str(ev(a[1], True))
            if k == "Fn::Not":
                return not ev(a[0], True)
            if k == "Fn::And":
                return all(ev(x, True) for x in a)
            if k == "Fn::Or":
                return any(ev(x, True) for x in a)
            if k == "Fn::Contains":  # Rules only: is the value one of the list's
                return str(ev(a[1], True)) in [str(ev(x, True)) for x in ev(a[0], True)]
        if isinstance(v, dict):
            return {k: r for k, x in v.items() if (r := ev(x, deref)) != NO_VALUE}
        if isinstance(v, list):
            return [r for x in v if (r := ev(x, deref)) != NO_VALUE]
        return v

    return ev(node)


def deployed(template: dict, overrides: dict | None = None) -> dict:
    """The template as CloudFormation would create it for these parameters: resources and outputs
    whose Condition is false are gone, conditions and parameter references inside are evaluated."""
    out = dict(template)
    for section in ("Resources", "Outputs"):
        kept = {}
        for name, r in (template.get(section) or {}).items():
            if "Condition" in r and not resolve(template, {"Condition": r["Condition"]}, overrides):
                continue
            kept[name] = resolve(template, r, overrides, refs=False)
        out[section] = kept
    return out
