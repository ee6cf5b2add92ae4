"""IMAP views of one message: ENVELOPE, BODYSTRUCTURE / BODY, BODY[section] (RFC 3501 §6.4.5, §7.4.2).

In:   the bytes of a message exactly as the client sees it (trace prefix + stored raw bytes),
      or just its header block.
Out:  wire bytes (ENVELOPE, BODYSTRUCTURE) ready to follow the FETCH item name, and raw byte
      slices of the original (sections).
Fails: never. Malformed headers degrade to NIL, malformed MIME to the nearest sensible
      structure (see :mod:`.mime`).

Everything the client receives must be byte-exact, and re-serialising through the email
package changes bytes, so the email package is used for what it is good at -- the *meaning* of
header fields -- and never to produce output bytes. One module per job:

* :mod:`.mime`           where each MIME entity is, and what its Content-Type says (:func:`parse`);
* :mod:`.envelope`       ENVELOPE and its address structures;
* :mod:`.bodystructure`  BODYSTRUCTURE and BODY;
* :mod:`.sections`       BODY[section] bytes, HEADER.FIELDS(.NOT);
* header sections themselves are :mod:`postern.mail.header`'s (the one splitter the store and
  the SMTP checks use too).

CPU: each function here is linear in its input, but a hostile message can still cost seconds
(10,000 parts, huge parameter lists); callers on the event loop go through the work budget
(``imap/work.py``), which runs big inputs in a worker process.
"""

from __future__ import annotations

from postern.mail.header import header_length

from .bodystructure import bodystructure
from .envelope import Address, addresses, envelope
from .mime import MAX_PARTS, Entity, parse
from .sections import header_fields, section

__all__ = ["Address", "Entity", "MAX_PARTS", "addresses", "bodystructure", "envelope", "header_fields",
           "header_length", "parse", "section"]
