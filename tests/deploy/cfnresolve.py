"""Resolve template.yaml values the way CloudFormation would, for the deploy tests.

In:   the parsed template (``postern_local.template.load_template``), parameter values (the
      template's defaults, then samconfig.toml's example ``parameter_overrides``, then the
      test's own) and what each resource's ``Ref`` / ``Fn::GetAtt`` stands for locally.
Out:  :class:`Resolver`: ``value(x)`` for one property value (``Ref``, ``Fn::If``,
      ``Fn::Sub``, ``Fn::Join``, ``Fn::Select``, ``Fn::Split``, ``Fn::FindInMap``, ``Fn::GetAtt``,
      conditions); ``function_environment(logical)`` (Globals plus the function's own
      variables) and ``container_environment(task, container)`` (an ECS task definition's).
Fails: ``KeyError`` naming the reference it cannot resolve, so a new template variable that
      points at something the tests do not create fails loudly instead of going missing.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
NO_VALUE = object()
PSEUDO = {"AWS::Region": "us-east-1", "AWS::AccountId": "123456789012", "AWS::StackName": "postern",
          "AWS::Partition": "aws", "AWS::URLSuffix": "amazonaws.com"}


def example_parameters(samconfig: Path = REPO / "samconfig.toml") -> dict[str, str]:
    """samconfig.toml's deploy ``parameter_overrides``: the README's example stack."""
    import shlex

    with samconfig.open("rb") as fh:
        raw = tomllib.load(fh)["default"]["deploy"]["parameters"]["parameter_overrides"]
    tokens = shlex.split(raw) if isinstance(raw, str) else [t for item in raw for t in shlex.split(item)]
    return dict(t.split("=", 1) for t in tokens if "=" in t)


class Resolver:
    def __init__(self, template: dict, parameters: dict[str, str] | None = None,
                 resources: dict[str, str] | None = None):
        self.t = template
        self.params = {k: str(v.get("Default", "")) for k, v in template.get("Parameters", {}).items()}
        self.params.update(parameters or {})
        self.resources = dict(resources or {})  # "Logical" -> Ref value, "Logical.Attr" -> GetAtt value
        self._conditions: dict[str, bool] = {}

    # --- conditions ------------------------------------------------------------------
    def condition(self, name: str) -> bool:
        if name not in self._conditions:
            self._conditions[name] = self._truth(self.t["Conditions"][name])
        return self._conditions[name]

    def _truth(self, node) -> bool:
        if isinstance(node, dict) and len(node) == 1:
            (fn, arg), = node.items()
            if fn == "Fn::Equals":
                return str(self.value(arg[0])) == str(self.value(arg[1]))
            if fn == "Fn::Not":
                return not self._truth(arg[0])
            if fn == "Fn::And":
                return all(self._truth(a) for a in arg)
            if fn == "Fn::Or":
                return any(self._truth(a) for a in arg)
            if fn == "Condition":
                return self.condition(arg)
        raise KeyError(f"unsupported condition {node!r}")

    # --- values --------------------------------------------------------------------------
    def ref(self, name: str):
        if name in self.params:
            return self.params[name]
        if name == "AWS::NoValue":
            return NO_VALUE
        if name in PSEUDO:
            return PSEUDO[name]
        if name in self.resources:
            return self.resources[name]
        raise KeyError(f"Ref {name}: not a parameter and not a resource the test created")

    def value(self, node):
        if isinstance(node, (str, int, float, bool)):
            return node if isinstance(node, str) else str(node).lower() if isinstance(node, bool) else str(node)
        if isinstance(node, list):
            return [v for v in (self.value(x) for x in node) if v is not NO_VALUE]
        if not isinstance(node, dict):
            raise KeyError(f"unsupported value {node!r}")
        if len(node) != 1 or not next(iter(node)).startswith(("Ref", "Fn::", "Condition")):
            return {k: v for k, v in ((k, self.value(v)) for k, v in node.items()) if v is not NO_VALUE}
        (fn, arg), = node.items()
        if fn == "Ref":
            return self.ref(arg)
        if fn == "Fn::If":
            return self.value(arg[1] if self.condition(arg[0]) else arg[2])
        if fn == "Fn::GetAtt":
            key = ".".join(arg) if isinstance(arg, list) else arg
            if key not in self.resources:
                raise KeyError(f"Fn::GetAtt {key}: not a resource attribute the test created")
            return self.resources[key]
        if fn == "Fn::Sub":
            text, extra = (arg, {}) if isinstance(arg, str) else (arg[0], {k: self.value(v) for k, v in arg[1].items()})

            def sub(m):
                name = m.group(1)
                if name in extra:
                    return str(extra[name])
                return str(self.value({"Fn::GetAtt": name.split(".", 1)}) if "." in name and name not in PSEUDO
                           else self.ref(name))

            return re.sub(r"\$\{([^}!]+)\}", sub, text)
        if fn == "Fn::Join":
            return str(arg[0]).join(str(v) for v in self.value(arg[1]))
        if fn == "Fn::Select":
            return self.value(arg[1])[int(self.value(arg[0]))]
        if fn == "Fn::Split":
            return str(self.value(arg[1])).split(arg[0])
        if fn == "Fn::FindInMap":
            name, top, second = (self.value(a) for a in arg)
            return self.value(self.t["Mappings"][name][top][second])
        raise KeyError(f"unsupported intrinsic {fn}")

    # --- environments ----------------------------------------------------------------------
    def function_environment(self, logical: str) -> dict[str, str]:
        glob = self.t.get("Globals", {}).get("Function", {}).get("Environment", {}).get("Variables", {})
        own = self.t["Resources"][logical]["Properties"].get("Environment", {}).get("Variables", {})
        out = {}
        for k, v in {**glob, **own}.items():
            resolved = self.value(v)
            if resolved is not NO_VALUE:
                out[k] = str(resolved)
        return out

    def container_environment(self, task_logical: str, container: str | None = None) -> dict[str, str]:
        defs = []
        for d in self.t["Resources"][task_logical]["Properties"]["ContainerDefinitions"]:
            if "Fn::If" in d:  # a conditional container (the rspamd sidecar)
                cond, yes, no = d["Fn::If"]
                d = yes if self.condition(cond) else no
                if d == {"Ref": "AWS::NoValue"}:
                    continue
            defs.append(d)
        (cdef,) = [d for d in defs if container in (None, d["Name"])]
        out = {}
        for item in cdef.get("Environment", []):
            resolved = self.value(item["Value"])
            if resolved is not NO_VALUE:
                out[item["Name"]] = str(resolved)
        return out
