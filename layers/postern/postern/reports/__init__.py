"""DMARC aggregate (RFC 7489) and TLS-RPT (RFC 8460) reports sent to reports@<domain>.

``archive`` unpacks an attachment within caps, ``dmarc`` and ``tlsrpt`` parse the documents,
``extract`` finds the report in a message, ``summaries`` stores and summarises them,
``pipeline.reports`` is the reports function's job. Every failure is a
:class:`~postern.reports.errors.ReportRefused` with a reason.
"""
