"""Spam and virus filtering with rspamd (issue 13): the scan in the SMTP session, learning from IMAP.

rspamd.py (the HTTP protocol client, async) -> check.py (the MX port's DATA-time check:
scan, decide, record the verdict) ; learn.py (a user moving mail into or out of Junk teaches
rspamd, through a queue, off the IMAP command's path). The decisions themselves are
postern.spam's (one rule for the gateway, the router and the CLI).
"""
