"""Client auto-configuration documents, each rendered from :func:`postern.clientoffer.offer`:
Thunderbird's autoconfig (``thunderbird``), Outlook's POX autodiscover (``outlook``), an Apple
configuration profile (``apple``). Pure functions: no I/O except the profile's optional signing key."""
