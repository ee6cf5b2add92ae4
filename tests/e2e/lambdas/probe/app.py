"""A Lambda handler for testing the local Lambda runtime (tests/e2e/test_local_runtime.py).

In:   SQS records whose body is JSON: ``{"sleep": seconds}`` sleeps, ``{"allocate_mb": n}``
      allocates and touches n MiB.
Out:  an empty ``batchItemFailures`` (every record done).
Fails: MemoryError when the allocation passes the worker's memory limit.
"""

import json
import time


def lambda_handler(event, context):
    for record in event["Records"]:
        cmd = json.loads(record["body"])
        if "sleep" in cmd:
            time.sleep(cmd["sleep"])
        if "allocate_mb" in cmd:
            block = bytearray(cmd["allocate_mb"] * 1024 * 1024)
            block[::4096] = b"x" * len(block[::4096])  # touch every page: resident, not just mapped
    return {"batchItemFailures": []}
