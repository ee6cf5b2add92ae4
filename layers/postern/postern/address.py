"""Mail addresses: split, normalise, validate (RFC 5321 §4.1.2 mailbox syntax).

In:   an address as it came off the wire or the command line.
Out:  :class:`Address` with the local part kept as given and the domain
      lower-cased and IDNA-normalised; ``canonical`` is the key the directory
      uses (local part lower-cased too: Postern treats local parts
      case-insensitively, as nearly every real mail system does).
Fails: :class:`~postern.errors.InvalidAddress` for anything that is not a
      plain ``local@domain`` mailbox: source routes, ``%``/``!`` hacks, IP
      literals and quoted local parts containing ``@`` never reach routing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .errors import InvalidAddress

# dot-atom local part (RFC 5321 §4.1.2 Dot-string) plus '+' tagging.
_ATEXT = r"[A-Za-z0-9!#$&'*+/=?^_`{|}~\-\u0080-\U0010ffff]"
_LOCAL = re.compile(rf"^{_ATEXT}+(\.{_ATEXT}+)*$")
_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")


@dataclass(frozen=True)
class Address:
    local: str
    domain: str

    @property
    def canonical(self) -> str:
        return f"{self.local.lower()}@{self.domain}"

    def __str__(self) -> str:
        return f"{self.local}@{self.domain}"

    def without_tag(self, separator: str = "+") -> Address | None:
        """``user+tag@d`` -> ``user@d`` (plus-addressing), or None if untagged."""
        if separator in self.local:
            base = self.local.split(separator, 1)[0]
            if base:
                return Address(base, self.domain)
        return None


def normalize_domain(domain: str) -> str:
    d = domain.strip()
    if not d or d.endswith(".") or d.startswith("."):
        raise InvalidAddress(f"Invalid domain {domain!r}")
    if d.startswith("["):
        raise InvalidAddress("Address literals are not accepted")
    try:
        ascii_d = d.encode("idna").decode("ascii").lower() if not d.isascii() else d.lower()
    except UnicodeError:
        raise InvalidAddress(f"Invalid domain {domain!r}") from None
    labels = ascii_d.split(".")
    if len(labels) < 2 or not all(_LABEL.match(lbl) for lbl in labels):
        raise InvalidAddress(f"Invalid domain {domain!r}")
    return ascii_d


def parse_address(raw: str) -> Address:
    """Parse ``local@domain`` (no angle brackets, no display name)."""
    s = raw.strip()
    if s.startswith("<") and s.endswith(">"):
        s = s[1:-1]
    if not s or len(s) > 254:
        raise InvalidAddress(f"Invalid address {raw!r}")
    if s.startswith("@") or s.count("@") != 1:
        raise InvalidAddress(f"Invalid address {raw!r}")
    local, domain = s.rsplit("@", 1)
    if not local or len(local) > 64 or not _LOCAL.match(local) or "%" in local or "!" in local:
        raise InvalidAddress(f"Invalid local part in {raw!r}")
    return Address(local, normalize_domain(domain))


def canonical(raw: str) -> str:
    return parse_address(raw).canonical
