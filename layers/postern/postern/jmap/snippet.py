"""SearchSnippet/get (RFC 8621 §5): where an Email matched a search, with the terms marked.

In:   ``emailIds`` and the Email/query ``filter`` they came from; the search
      terms are the ``text``, ``subject`` and ``body`` conditions that are not
      under a NOT.
Out:  one SearchSnippet per Email: ``subject`` (the subject, HTML-escaped,
      terms in ``<mark>``) and ``preview`` (up to 255 characters of body text
      around the first term), null when the terms are not there.
Fails: ``invalidArguments`` for a malformed filter (``emailquery`` checks it),
      ``requestTooLarge`` past maxObjectsInGet ids; body text is read with the
      query's work budget.
"""

from __future__ import annotations

import html
import re

from . import args as A
from . import emailquery as Q

PREVIEW = 255


def _terms(f, negated: bool = False) -> list[str]:
    if not isinstance(f, dict):
        return []
    if "operator" in f:
        neg = negated or f["operator"] == "NOT"
        return [t for c in f.get("conditions") or [] for t in _terms(c, neg)]
    if negated:
        return []
    return [f[k] for k in ("text", "subject", "body") if isinstance(f.get(k), str) and f[k].strip()]


def _mark(text: str, pattern: re.Pattern) -> str:
    out, pos = [], 0
    for m in pattern.finditer(text):
        out.append(html.escape(text[pos:m.start()]))
        out.append("<mark>" + html.escape(m.group(0)) + "</mark>")
        pos = m.end()
    out.append(html.escape(text[pos:]))
    return "".join(out)


def get(call, args: dict) -> dict:
    A.known(args, {"accountId", "filter", "emailIds"})
    ids = A.ids(args, "emailIds") or []
    flt = args.get("filter")
    if flt is not None:
        Q._check(flt)
    terms = _terms(flt)
    view = call.view()
    ctx = Q._Ctx(call, view)
    pattern = re.compile("|".join(re.escape(t) for t in sorted(terms, key=len, reverse=True)),
                         re.IGNORECASE) if terms else None
    found, missing = [], []
    for i in ids:
        e = view.emails.get(i)
        if e is None:
            missing.append(i)
            continue
        subject = preview = None
        if pattern is not None:
            s = ctx.header(e).text(b"subject") or ""
            if pattern.search(s):
                subject = _mark(s, pattern)
            body = " ".join(ctx.body_text(e).split())
            m = pattern.search(body)
            if m:
                start = max(0, m.start() - 40)
                preview = _mark(body[start:start + PREVIEW], pattern)
        found.append({"emailId": i, "subject": subject, "preview": preview})
    return {"accountId": call.account.id, "list": found, "notFound": missing}
