"""Reading mail headers, once for everyone: the store, IMAP, the SMTP checks, DKIM and DMARC.

Every consumer that needs to know where a header section ends, which fields
it holds, what an address, a date or an encoded-word says, or who the author
is, calls this package; nothing else parses headers (a second copy of a rule
drifts, and a check that reads a header differently from the reader can be
talked around). Nothing here changes or re-serialises bytes.

Modules and their stable API (import from the module):

:mod:`.header`     ``header_end(buf, start=0, end=None) -> (header_end, body_start)``,
                   ``header_length(raw)``, ``split(buf, start, end, max_fields) -> Split``
                   (``fields``, ``header_end``, ``body_start``), ``Field`` (name, start,
                   value_start, end), ``field_spans(buf, names, end, start=0)``,
                   ``unfold(buf, field)``; and ``Header(buf, start=0, end=None)``, the view:
                   ``get(name)`` / ``get_all(name)`` / ``count(name)`` (raw unfolded values,
                   names as lower-case bytes), ``fields``, ``faults``, and the parsed,
                   capped values ``text(name)``, ``texts(name)``, ``addresses(name)``,
                   ``date()``, ``message_ids(name)``, ``references()``.
:mod:`.addresses`  ``parse_address_list(value) -> [Mailbox | Group]``, ``mailboxes(items)``.
:mod:`.encoded`    ``decode_words(value) -> str`` (RFC 2047, linear, capped), ``as_text``.
:mod:`.dates`      ``parse_imap_date``, ``parse_imap_date_time`` (strict, ValueError),
                   ``parse_rfc5322_date`` (None when not a real date).
:mod:`.author`     ``author(header) -> Author``, ``submission_problem``, ``mx_problem``.
:mod:`.limits`     the caps on what is parsed (8 KiB per structured field, 64
                   encoded-words per field, References' first id and last 100).
"""
