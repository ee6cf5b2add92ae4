"""The functions' log records: Powertools' Logger without the Lambda context keys CloudWatch already has.

In:   what Powertools' ``Logger`` takes (service and level from POWERTOOLS_SERVICE_NAME and
      LOG_LEVEL, as template.yaml sets them).
Out:  :class:`Logger`: Powertools' Logger whose ``inject_lambda_context`` adds ``cold_start``
      and ``function_request_id`` (which ties a line to its invocation's REPORT line) but not
      ``function_name``, ``function_arn`` and ``function_memory_size``: the log group names the
      function, the REPORT line states the memory. About 130 bytes less per record; CloudWatch
      Logs bills every byte ingested ($0.50/GB), and the pipeline writes a record per message
      in each function it passes (``make cost``'s Logs column, measured).
Fails: nothing of its own.
"""

from __future__ import annotations

from aws_lambda_powertools import Logger as _PowertoolsLogger

REDUNDANT_KEYS = frozenset({"function_name", "function_arn", "function_memory_size"})


class Logger(_PowertoolsLogger):
    def append_keys(self, **additional_keys) -> None:
        super().append_keys(**{k: v for k, v in additional_keys.items() if k not in REDUNDANT_KEYS})
