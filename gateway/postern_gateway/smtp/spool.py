"""The spool lives in the shared package (``postern.spool``): the HTTPS function's JMAP
EmailSubmission writes into the same incoming queue the same way. Re-exported here for the
gateway's SMTP handler."""

from postern.spool import METADATA_KEY, SEND_ATTEMPTS, Spooler, metadata_summary, new_queue_id

__all__ = ["METADATA_KEY", "SEND_ATTEMPTS", "Spooler", "metadata_summary", "new_queue_id"]
