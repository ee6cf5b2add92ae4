"""JMAP (RFC 8620 core, RFC 8621 mail) without its transport: what the HTTPS function calls.

``api.handle_bytes(account, body)`` / ``api.handle(account, request)`` answer
the API endpoint; ``session.build(account, base_url)`` is the session
resource. One module per data type (``mailbox``, ``email`` + ``emailquery``,
``thread``, ``identity``), the method table in ``api``, errors in ``errors``,
``/changes`` over the store's change log in ``changes``, the account view
(ids and states from the store's stable ids and change sequence) in
``index``. JMAP uses the store's primitives and ``postern.mailboxes`` as IMAP
does: no rule is written twice.

The seam with the HTTPS function (it authenticates; this package never sees a
password)::

    account = Account.for_user(user, store, directory,
                               submit=outbound.submitter(Spooler(settings, clients), settings.hostname))
    GET  /.well-known/jmap -> 200, session.build(account, base_url)
    POST /jmap/api         -> status, body = api.handle_bytes(account, request_body_bytes)
                              (200 with the Response, or 400 with an RFC 7807 problem:
                              Content-Type application/problem+json for a non-200)
    download               -> blobs.read(Call(account), blob_id) -> (bytes, type, name) or None (404)
"""
