"""Postern gateway: the one container that speaks SMTP, IMAP and POP3."""
