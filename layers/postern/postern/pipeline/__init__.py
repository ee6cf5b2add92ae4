"""The queue consumers' logic, kept here (testable, shared by nothing else) so the
Lambda handlers in ``functions/`` stay a few lines each.

``router``: Envelope -> StoreJob / OutboundJob / NoticeJob messages (qmgr).
``store``:  StoreJob -> one append into a mailbox (virtual).
``deliver``: OutboundJob -> one delivery attempt, per-recipient log, retry by visibility (smtp).
``ndr``:    NoticeJob -> an RFC 3464 report into the sender's mailbox or outbound (bounce).
"""
