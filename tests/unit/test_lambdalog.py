"""postern.lambdalog: the functions' log records leave out the Lambda context CloudWatch already has."""

from __future__ import annotations

import io
import json
import logging

from postern.lambdalog import Logger


class _Context:
    function_name = "postern-StoreFunction-abc"
    memory_limit_in_mb = 256
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:postern-StoreFunction-abc"
    aws_request_id = "0d45c76e-6282-4bed-83fd-6b091dd6faa5"


def test_a_record_keeps_the_request_id_and_drops_what_the_log_group_and_report_line_say():
    out = io.StringIO()
    logger = Logger(service="lambdalog-test", logger_handler=logging.StreamHandler(out))

    @logger.inject_lambda_context
    def handler(event, context):
        logger.info("stored", queue_id="q1")

    handler({}, _Context())
    rec = json.loads(out.getvalue().splitlines()[-1])
    assert rec["message"] == "stored" and rec["queue_id"] == "q1"
    assert rec["function_request_id"] == _Context.aws_request_id and "cold_start" in rec
    assert not {"function_name", "function_arn", "function_memory_size"} & rec.keys()
    logger.append_keys(user="u@example.test")  # other keys are appended as before
    logger.info("x")
    assert json.loads(out.getvalue().splitlines()[-1])["user"] == "u@example.test"
