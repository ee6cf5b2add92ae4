"""The one error a report can end in: refused, with a reason code and a sentence.

A refused report is recorded (``postern report`` counts refusals and their reasons) and its job
is done: parsing it again cannot succeed, so it is not retried.
"""

from __future__ import annotations


class ReportRefused(ValueError):
    """``reason``: too_large | ratio | malformed | hostile | not_a_report."""

    def __init__(self, reason: str, text: str):
        super().__init__(text)
        self.reason = reason
        self.text = text
