"""Keep credentials and message bodies out of the logs.

In:   nothing; :func:`install` is called once by the gateway app (``trust.gate.attach``).
Out:  a filter on aiosmtpd's ``mail.log`` logger that drops its DEBUG records, whatever the
      configured level (``POSTERN_LOG_LEVEL=DEBUG`` included). aiosmtpd logs at DEBUG every
      AUTH continuation line (``AUTH LOGIN``'s base64 user name and password), every DATA line
      (message bodies) and every reply; its INFO command log masks the initial AUTH response
      itself (``aiosmtpd.smtp.sanitize``), so INFO and above pass.
Fails: nothing.

Postern's own loggers never log passwords, AUTH lines or bodies (``postern.auth`` logs the
user name and IP only); ``tests/protocol/test_no_secrets_logged.py`` checks all of it at DEBUG.
"""

from __future__ import annotations

import logging

AIOSMTPD_LOGGER = "mail.log"


class DropDebug(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.INFO


_FILTER = DropDebug()


def install() -> None:
    logger = logging.getLogger(AIOSMTPD_LOGGER)
    if _FILTER not in logger.filters:
        logger.addFilter(_FILTER)
