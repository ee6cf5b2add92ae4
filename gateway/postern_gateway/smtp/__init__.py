"""Gateway SMTP: aiosmtpd as the protocol, Postern policy as its handler.

``server.start_smtp`` (listener factory), ``handler`` (MX policy and the shared
mechanics), ``submission`` (AUTH + submission policy), ``replies`` (the one thin
aiosmtpd subclass), ``paths`` (strict RFC 5321 paths), ``trace`` (Received,
Message-ID/Date), ``checks`` (seams for trust checks), ``spool`` (S3 then SQS).
"""
