"""Result references (RFC 8620 §3.7): ``"#ids": {"resultOf", "name", "path"}``.

In:   a method call's arguments and the responses of the calls before it.
Out:  the arguments with every ``#name`` key replaced by ``name`` and the value
      the JSON Pointer (RFC 6901, with JMAP's ``*`` extension) selects.
Fails: :class:`~.errors.MethodError` ``invalidResultReference`` when the call
      is not found, the name differs, or the path does not resolve;
      ``invalidArguments`` when both ``name`` and ``#name`` are given.
"""

from __future__ import annotations

from .errors import MethodError

MAX_POINTER = 32  # path segments: a bound on the work one reference can ask for


def _bad(msg: str) -> MethodError:
    return MethodError("invalidResultReference", msg)


def _unescape(token: str) -> str:
    return token.replace("~1", "/").replace("~0", "~")  # RFC 6901 §4


def evaluate(value, path: str):
    if path == "":
        return value
    if not path.startswith("/"):
        raise _bad("a path starts with /")
    tokens = [_unescape(t) for t in path[1:].split("/")]
    if len(tokens) > MAX_POINTER:
        raise _bad("path too long")
    return _walk(value, tokens)


def _walk(value, tokens: list[str]):
    for i, tok in enumerate(tokens):
        if isinstance(value, list):
            if tok == "*":  # RFC 8620 §3.7: map the rest of the path over the array, flattening arrays
                out = []
                for item in value:
                    r = _walk(item, tokens[i + 1 :])
                    out.extend(r) if isinstance(r, list) else out.append(r)
                return out
            if not tok.isdigit() or (len(tok) > 1 and tok[0] == "0") or int(tok) >= len(value):
                raise _bad(f"no item {tok[:40]!r}")
            value = value[int(tok)]
        elif isinstance(value, dict):
            if tok not in value:
                raise _bad(f"no member {tok[:40]!r}")
            value = value[tok]
        else:
            raise _bad("path goes past a value")
    return value


def resolve_references(args: dict, responses: list) -> dict:
    if not any(isinstance(k, str) and k.startswith("#") for k in args):
        return args
    out = {}
    for k, v in args.items():
        if not k.startswith("#"):
            out[k] = v
            continue
        name = k[1:]
        if name in args:
            raise MethodError("invalidArguments", f"both {name} and #{name} given")
        if not (isinstance(v, dict) and isinstance(v.get("resultOf"), str) and isinstance(v.get("name"), str)
                and isinstance(v.get("path"), str)):
            raise _bad("a ResultReference has resultOf, name and path")
        # §3.7: the first response with that call id; its name must match
        src = next((r for r in responses if r[2] == v["resultOf"]), None)
        if src is None or src[0] != v["name"]:
            raise _bad(f"no {v['name'][:60]} response for call {v['resultOf'][:60]!r}")
        out[name] = evaluate(src[1], v["path"])
    return out
