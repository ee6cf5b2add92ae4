"""ManageSieve end to end through the embedded stack: a script uploaded with a real client files mail.

sievelib's ManageSieve client uploads and activates a script on the stack's gateway (port
``POSTERN_MANAGESIEVE_PORT``, plaintext allowed as ``make run`` has it), a message comes in over
SMTP, the real router and store functions deliver it, and imaplib finds it in the folder the script
named - created by ``fileinto :create``.
"""

from __future__ import annotations

import imaplib
import secrets
import smtplib
import warnings

from sievelib.managesieve import Client

HOST = "127.0.0.1"
SCRIPT = ('require ["fileinto", "mailbox"];\r\n'
          'if header :contains "subject" "[reports]" {\r\n  fileinto :create "Reports";\r\n  stop;\r\n}\r\n')


def test_script_uploaded_over_managesieve_files_into_a_folder(stack, new_user):
    user, pw = new_user()
    warnings.simplefilter("ignore")  # sievelib warns about a plaintext channel (local stack)
    c = Client(HOST, stack.managesieve_port)
    assert c.connect(user, pw, authmech="PLAIN")
    assert c.putscript("filters", SCRIPT) and c.setactive("filters")
    assert c.listscripts() == ("filters", [])
    c.logout()

    tag = secrets.token_hex(4)
    for subject in (f"[reports] weekly {tag}", f"lunch {tag}"):
        raw = (f"From: bob@remote.example\r\nTo: {user}\r\nSubject: {subject}\r\n"
               f"Message-ID: <{secrets.token_hex(6)}@remote.example>\r\n\r\nhello\r\n").encode()
        with smtplib.SMTP(HOST, stack.smtp_port, timeout=30) as s:
            assert s.sendmail("bob@remote.example", [user], raw) == {}
    stack.drain()

    imap = imaplib.IMAP4(HOST, stack.imap_port, timeout=30)
    try:
        imap.login(user, pw)
        for folder, want in (("Reports", f"[reports] weekly {tag}"), ("INBOX", f"lunch {tag}")):
            typ, data = imap.select(f'"{folder}"')
            assert typ == "OK", (folder, data)
            typ, found = imap.search(None, "SUBJECT", f'"{tag}"')
            (num,) = found[0].split()
            typ, msg = imap.fetch(num, "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
            assert want.encode() in msg[0][1], (folder, msg)
    finally:
        imap.logout()
