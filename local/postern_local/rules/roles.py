"""Each component's IAM role and identity policy, read from template.yaml the way AWS builds them.

In:   the parsed template (:func:`postern_local.template.load_template`), the
      physical names of the local resources (:class:`~postern_local.resources.LocalResources`),
      the region, the local parameter values.
Out:  :func:`load_roles` -> :class:`Roles`: ``by_component`` maps each
      component to its role: every Lambda function (by logical id) to the role
      SAM generates for it (``<Function>Role``), and ``"gateway"`` to the ECS
      task definition's ``TaskRoleArn`` role. Each :class:`Role` has a
      :class:`~postern_local.rules.policy.Policy` built from its inline
      policies, its managed policies (AWS managed ones from
      :mod:`~postern_local.rules.managed`, customer managed ones from the
      template) and any ``AWS::IAM::Policy`` attached to it.
      :func:`paper_only` lists what the local stack cannot check: statements
      with conditions and resource-based policies.
Fails: ValueError/KeyError (the stack does not start) for a template the SAM
      translator rejects, an AWS managed policy whose document is unknown, or
      a policy statement that cannot be read.

SAM's policy templates (``SQSPollerPolicy``, ``DynamoDBCrudPolicy`` ...) and
the roles SAM adds for event sources are expanded by aws-sam-translator
itself (the library ``sam build``/``sam deploy`` and cfn-lint use), so what
is checked locally is what CloudFormation will create. The intrinsic
functions left in its output (``Ref``, ``Fn::GetAtt``, ``Fn::Sub``,
``Fn::If`` ...) are resolved here against the local resources' names; a
reference this module cannot resolve becomes a resource pattern that matches
nothing, so the grant it was part of is refused locally (never widened).
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
import threading
from dataclasses import dataclass, field

from .managed import document as managed_document
from .managed import is_aws_managed
from .policy import Policy, Statement

ACCOUNT = "123456789012"  # moto's default account
PARTITION = "aws"


class Unresolved(Exception):
    """An intrinsic function the local stack cannot evaluate."""


_NOVALUE = object()


@dataclass
class Role:
    logical: str
    name: str  # physical role name
    arn: str
    policy: Policy
    sources: list[str] = field(default_factory=list)  # names of the documents it was built from


@dataclass
class Roles:
    roles: dict[str, Role]  # role logical id -> Role
    by_component: dict[str, str]  # component ("gateway", function logical id) -> role logical id
    cfn: dict  # the translated CloudFormation template
    resolver: Resolver

    def for_component(self, component: str) -> Role:
        return self.roles[self.by_component[component]]


# ---------------------------------------------------------------- intrinsics
class Resolver:
    """Evaluates CloudFormation intrinsic functions against the local stack."""

    def __init__(self, template: dict, parameters: dict[str, str], names, region: str, stack_name: str,
                 queue_urls: dict[str, str] | None = None):
        self.t = template
        self.queue_urls = dict(queue_urls or {})
        self.resources = template.get("Resources", {})
        self.params = {k: str(v.get("Default", "")) for k, v in (template.get("Parameters") or {}).items()
                       if "Default" in v}
        self.params.update({k: str(v) for k, v in parameters.items()})
        self.names = names  # (logical id, resource type) -> physical name
        self.region = region
        self.stack = stack_name
        self._conditions: dict[str, bool] = {}

    # --- public ---------------------------------------------------------
    def value(self, node):
        """The node with every intrinsic evaluated; ``AWS::NoValue`` entries dropped."""
        out = self._eval(node)
        return None if out is _NOVALUE else out

    def condition(self, name: str) -> bool:
        if name not in self._conditions:
            self._conditions[name] = bool(self._eval(self.t.get("Conditions", {})[name]))
        return self._conditions[name]

    # --- evaluation -----------------------------------------------------
    def _eval(self, node):
        if isinstance(node, list):
            out = [self._eval(v) for v in node]
            return [v for v in out if v is not _NOVALUE]
        if not isinstance(node, dict):
            return node
        if len(node) == 1:
            (k, v), = node.items()
            fn = _FUNCTIONS.get(k)
            if fn is not None:
                return fn(self, v)
        out = {k: self._eval(v) for k, v in node.items()}
        return {k: v for k, v in out.items() if v is not _NOVALUE}

    def ref(self, name: str):
        pseudo = {"AWS::Region": self.region, "AWS::AccountId": ACCOUNT, "AWS::Partition": PARTITION,
                  "AWS::StackName": self.stack, "AWS::URLSuffix": "amazonaws.com",
                  "AWS::StackId": f"arn:aws:cloudformation:{self.region}:{ACCOUNT}:stack/{self.stack}/local"}
        if name == "AWS::NoValue":
            return _NOVALUE
        if name in pseudo:
            return pseudo[name]
        if name in self.params:
            return self.params[name]
        r = self.resources.get(name)
        if r is None:
            raise Unresolved(f"Ref {name}")
        rtype = r.get("Type", "")
        phys = self.names(name, rtype)
        if rtype == "AWS::SQS::Queue":
            return self.queue_urls.get(name) or f"https://sqs.{self.region}.amazonaws.com/{ACCOUNT}/{phys}"
        if rtype in ("AWS::SNS::Topic", "AWS::SecretsManager::Secret", "AWS::IAM::ManagedPolicy",
                      "AWS::Lambda::LayerVersion"):
            return self.getatt(name, "Arn")
        return phys

    def getatt(self, logical: str, attr: str):
        r = self.resources.get(logical)
        if r is None:
            raise Unresolved(f"GetAtt {logical}.{attr}")
        rtype = r.get("Type", "")
        phys = self.names(logical, rtype)
        region = self.region
        if attr == "Arn":
            svc = rtype.split("::")[1].lower() if rtype.count("::") == 2 else "unknown"
            arns = {
                "AWS::SQS::Queue": f"arn:{PARTITION}:sqs:{region}:{ACCOUNT}:{phys}",
                "AWS::DynamoDB::Table": f"arn:{PARTITION}:dynamodb:{region}:{ACCOUNT}:table/{phys}",
                "AWS::S3::Bucket": f"arn:{PARTITION}:s3:::{phys}",
                "AWS::IAM::Role": f"arn:{PARTITION}:iam::{ACCOUNT}:role/{phys}",
                "AWS::IAM::ManagedPolicy": f"arn:{PARTITION}:iam::{ACCOUNT}:policy/{phys}",
                "AWS::Lambda::Function": f"arn:{PARTITION}:lambda:{region}:{ACCOUNT}:function:{phys}",
                "AWS::SNS::Topic": f"arn:{PARTITION}:sns:{region}:{ACCOUNT}:{phys}",
                "AWS::SecretsManager::Secret": f"arn:{PARTITION}:secretsmanager:{region}:{ACCOUNT}:secret:{phys}",
                "AWS::SES::ConfigurationSet": f"arn:{PARTITION}:ses:{region}:{ACCOUNT}:configuration-set/{phys}",
                "AWS::Logs::LogGroup": f"arn:{PARTITION}:logs:{region}:{ACCOUNT}:log-group:{phys}:*",
            }
            return arns.get(rtype, f"arn:{PARTITION}:{svc}:{region}:{ACCOUNT}:{phys}")
        if rtype == "AWS::SQS::Queue" and attr == "QueueName":
            return phys
        if rtype == "AWS::SQS::Queue" and attr == "QueueUrl":
            return self.ref(logical)
        if rtype == "AWS::SNS::Topic" and attr == "TopicName":
            return phys
        if rtype == "AWS::DynamoDB::Table" and attr == "StreamArn":
            return self.getatt(logical, "Arn") + "/stream/local"
        if rtype == "AWS::S3::Bucket" and attr in ("DomainName", "RegionalDomainName"):
            return f"{phys}.s3.amazonaws.com"
        raise Unresolved(f"GetAtt {logical}.{attr}")


def _sub(r: Resolver, v):
    text, variables = (v, {}) if isinstance(v, str) else (v[0], r._eval(v[1]))

    def one(m: re.Match) -> str:
        name = m.group(1)
        if name.startswith("!"):
            return "${" + name[1:] + "}"
        if name in variables:
            return str(variables[name])
        if "." in name and not name.startswith("AWS::"):
            logical, attr = name.split(".", 1)
            return str(r.getatt(logical, attr))
        out = r.ref(name)
        if out is _NOVALUE:
            raise Unresolved(f"Sub ${{{name}}}")
        return str(out)

    return re.sub(r"\$\{([^}]+)\}", one, text)


def _getatt(r: Resolver, v):
    logical, attr = (v.split(".", 1) if isinstance(v, str) else (v[0], r._eval(v[1])))
    return r.getatt(logical, attr)


def _if(r: Resolver, v):
    cond, yes, no = v
    return r._eval(yes if r.condition(cond) else no)


def _select(r: Resolver, v):
    index, items = r._eval(v[0]), r._eval(v[1])
    return items[int(index)]


def _split(r: Resolver, v):
    sep, text = v[0], r._eval(v[1])
    return str(text).split(sep)


def _join(r: Resolver, v):
    sep, items = v[0], r._eval(v[1])
    return sep.join(str(i) for i in items)


def _find_in_map(r: Resolver, v):
    name, top, second = (r._eval(x) for x in v[:3])
    return r.t["Mappings"][name][top][second]


def _unresolved(name):
    def fn(r, v):
        raise Unresolved(f"{name} {v!r}")

    return fn


_FUNCTIONS = {
    "Ref": lambda r, v: r.ref(v),
    "Fn::GetAtt": _getatt,
    "Fn::Sub": _sub,
    "Fn::If": _if,
    "Fn::Select": _select,
    "Fn::Split": _split,
    "Fn::Join": _join,
    "Fn::FindInMap": _find_in_map,
    "Fn::Equals": lambda r, v: str(r._eval(v[0])) == str(r._eval(v[1])),
    "Fn::Not": lambda r, v: not r._eval(v[0]),
    "Fn::And": lambda r, v: all(r._eval(x) for x in v),
    "Fn::Or": lambda r, v: any(r._eval(x) for x in v),
    "Condition": lambda r, v: r.condition(v),
    "Fn::GetAZs": lambda r, v: [f"{r.region}a", f"{r.region}b"],
    "Fn::ImportValue": _unresolved("Fn::ImportValue"),
    "Fn::Base64": lambda r, v: r._eval(v),
}


# ---------------------------------------------------------------- SAM
_TRANSLATED: dict[str, dict] = {}
_TRANSLATE_LOCK = threading.Lock()


def translate(template: dict, parameters: dict[str, str], region: str) -> dict:
    """The SAM template as CloudFormation (aws-sam-translator), cached per content."""
    key = hashlib.sha256(json.dumps([template, parameters, region], sort_keys=True, default=str).encode()).hexdigest()
    with _TRANSLATE_LOCK:
        if key not in _TRANSLATED:
            import boto3
            from samtranslator.parser.parser import Parser
            from samtranslator.translator.translator import Translator

            t = copy.deepcopy(template)
            for r in t.get("Resources", {}).values():
                props = r.get("Properties") or {}
                for prop in ("CodeUri", "ContentUri"):  # local paths: the translator wants an S3 location
                    if isinstance(props.get(prop), str) and not props[prop].startswith("s3://"):
                        props[prop] = f"s3://postern-local-code/{props[prop].strip('/')}"
            session = boto3.session.Session(region_name=region, aws_access_key_id="x", aws_secret_access_key="x")
            translator = Translator({}, Parser(), boto_session=session)
            _TRANSLATED[key] = translator.translate(t, parameter_values=dict(parameters),
                                                    get_managed_policy_map=lambda: {})
        return copy.deepcopy(_TRANSLATED[key])


# ---------------------------------------------------------------- roles
def _role_logical(ref) -> str | None:
    if isinstance(ref, dict):
        if "Fn::GetAtt" in ref:
            v = ref["Fn::GetAtt"]
            return (v.split(".", 1) if isinstance(v, str) else v)[0]
        if "Ref" in ref:
            return ref["Ref"]
    return None


def load_roles(template: dict, names, region: str, stack_name: str, parameters: dict[str, str],
               queue_urls: dict[str, str] | None = None) -> Roles:
    """``names(logical, type)`` gives the local physical name of a resource; ``queue_urls``
    the local URL of each queue (what ``Ref`` of a queue returns)."""
    cfn = translate(template, parameters, region)
    resolver = Resolver(cfn, parameters, names, region, stack_name, queue_urls)
    res = cfn.get("Resources", {})

    attached: dict[str, list[tuple[str, dict]]] = {}  # role logical -> extra documents
    for logical, r in res.items():
        if r.get("Type") in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy") and _active(resolver, r):
            props = r.get("Properties", {})
            for role_ref in props.get("Roles") or []:
                role = _role_logical(role_ref) or _role_by_name(res, resolver, role_ref)
                if role:
                    attached.setdefault(role, []).append((logical, resolver.value(props["PolicyDocument"])))

    roles: dict[str, Role] = {}
    for logical, r in res.items():
        if r.get("Type") != "AWS::IAM::Role" or not _active(resolver, r):
            continue
        props = r.get("Properties", {})
        docs: list[tuple[str, dict]] = []
        for p in props.get("Policies") or []:
            p = resolver.value(p)
            if p:
                docs.append((p.get("PolicyName", logical), _resolved_doc(resolver, p["PolicyDocument"])))
        for arn in resolver.value(props.get("ManagedPolicyArns")) or []:
            docs.append(_managed(res, resolver, str(arn)))
        docs += attached.get(logical, [])
        name = resolver.names(logical, "AWS::IAM::Role")
        roles[logical] = Role(logical, name, f"arn:{PARTITION}:iam::{ACCOUNT}:role/{name}",
                              Policy.from_documents(docs), [d[0] for d in docs])

    by_component: dict[str, str] = {}
    for logical, r in res.items():
        props = r.get("Properties", {})
        if r.get("Type") == "AWS::Lambda::Function":
            role = _role_logical(props.get("Role"))
            if role in roles:
                by_component[logical] = role
        elif r.get("Type") == "AWS::ECS::TaskDefinition":
            role = _role_logical(props.get("TaskRoleArn"))
            if role in roles:
                by_component["gateway"] = role
    return Roles(roles, by_component, cfn, resolver)


def _active(resolver: Resolver, r: dict) -> bool:
    cond = r.get("Condition")
    return resolver.condition(cond) if cond else True


def _role_by_name(res: dict, resolver: Resolver, value) -> str | None:
    for logical, r in res.items():
        if r.get("Type") == "AWS::IAM::Role" and resolver.names(logical, "AWS::IAM::Role") == value:
            return logical
    return None


def _managed(res: dict, resolver: Resolver, arn: str) -> tuple[str, dict]:
    if is_aws_managed(arn):
        return arn.rsplit("/", 1)[-1], managed_document(arn)
    for logical, r in res.items():  # a customer managed policy of this template
        if r.get("Type") == "AWS::IAM::ManagedPolicy" and resolver.getatt(logical, "Arn") == arn:
            return logical, _resolved_doc(resolver, r["Properties"]["PolicyDocument"])
    raise KeyError(f"managed policy {arn} is neither AWS managed nor declared in the template")


def _resolved_doc(resolver: Resolver, doc: dict) -> dict:
    """The document with intrinsics evaluated; a statement part that cannot be resolved keeps
    the statement but makes its resource match nothing (the grant is refused, never widened)."""
    stmts = doc.get("Statement", [])
    out = []
    for s in stmts if isinstance(stmts, list) else [stmts]:
        try:
            v = resolver.value(s)
        except Unresolved as exc:
            v = {k: resolver.value(x) for k, x in s.items() if k not in ("Resource", "NotResource")}
            v["Resource"] = f"unresolved-locally:{exc}"
        if v:
            out.append(v)
    return {**{k: v for k, v in doc.items() if k != "Statement"}, "Statement": out}


# ---------------------------------------------------------------- paper only
RESOURCE_POLICY_TYPES = ("AWS::SQS::QueuePolicy", "AWS::S3::BucketPolicy", "AWS::SNS::TopicPolicy",
                         "AWS::KMS::Key", "AWS::Lambda::Permission", "AWS::SecretsManager::ResourcePolicy",
                         "AWS::Events::EventBusPolicy", "AWS::Logs::ResourcePolicy")


def paper_only(roles: Roles) -> list[str]:
    """What the local stack does not enforce, one line each (for the docs and the report)."""
    lines = []
    for role in roles.roles.values():
        for s in role.policy.conditional:
            lines.append(f"condition on {role.logical} ({s.source}): {s.effect} {', '.join(s.actions)} "
                         f"if {json.dumps(s.condition, sort_keys=True)}")
    used = set(roles.by_component.values())
    for logical, r in roles.cfn.get("Resources", {}).items():
        rtype = r.get("Type", "")
        if rtype.startswith("AWS::IAM::") and not _active(roles.resolver, r):
            lines.append(f"{logical} ({rtype}): condition {r['Condition']} is false with the local parameters, "
                         "so its grants are not exercised locally")
        elif rtype in ("AWS::IAM::Role", "AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
            lines += [f"{logical} ({rtype}): {grant}" for grant in _inactive_statements(roles.resolver, r)]
        if rtype == "AWS::IAM::Role" and _active(roles.resolver, r) and logical not in used:
            lines.append(f"grants of {logical}: no local component signs with it (AWS itself uses it, e.g. ECS "
                         "pulling the image and writing the logs)")
        if rtype in RESOURCE_POLICY_TYPES:
            lines.append(f"resource policy {logical} ({rtype})")
        if rtype == "AWS::IAM::Role":
            lines.append(f"trust policy of {logical} (who may assume it)")
    # postern_local.rules.presigned checks a presigned POST's signature, not a presigned URL's (nor moto)
    lines.append("the SigV4 signature of presigned S3 URLs (their expiry, one auth mechanism and the signer's "
                 "permission are checked)")
    lines.append("bucket CORS rules (MailBucket CorsConfiguration: browsers enforce them, not S3 for other clients)")
    return lines


def _inactive_statements(resolver: Resolver, r: dict) -> list[str]:
    """The statements of a role or policy that an ``Fn::If`` leaves out with the local parameters
    (e.g. the ACME grants without HostedZoneId): they are in the deployed policy, never exercised here."""
    props = r.get("Properties", {})
    docs = [p.get("PolicyDocument", {}) for p in props.get("Policies") or [] if isinstance(p, dict)]
    docs.append(props.get("PolicyDocument") or {})
    out = []
    for doc in docs:
        stmts = doc.get("Statement", []) if isinstance(doc, dict) else []
        for s in stmts if isinstance(stmts, list) else [stmts]:
            if not (isinstance(s, dict) and list(s) == ["Fn::If"]):
                continue
            cond, yes, no = s["Fn::If"]
            taken = resolver.condition(cond)
            left = no if taken else yes
            if isinstance(left, dict) and "Action" in left:
                actions = left["Action"] if isinstance(left["Action"], list) else [left["Action"]]
                when = "true" if not taken else "false"
                cond_text = f" if {json.dumps(left['Condition'], sort_keys=True)}" if "Condition" in left else ""
                out.append(f"{left.get('Effect', 'Allow')} {', '.join(actions)}{cond_text} only when {cond} is "
                           f"{when} (not with the local parameters), so not exercised locally")
    return out


def statements_of(role: Role) -> list[Statement]:
    return list(role.policy.statements)
