"""The HTTPS function's own package (``functions/https/app.py`` is its handler).

``viewer`` reads what CloudFront tells the function about the client, ``services`` holds the
per-container clients, ``auth`` turns credentials into an account, ``errors`` builds every JSON
error, ``routes/`` has one small module per route family (JMAP itself is ``postern.jmap``),
``clientconfig/`` the client auto-configuration documents.
"""
