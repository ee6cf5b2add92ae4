"""The queue consumers' logic, kept here (testable, shared by nothing else) so the
Lambda handlers in ``functions/`` stay a few lines each.

``router``: Envelope -> StoreJob / OutboundJob / NoticeJob messages (qmgr).
``store``:  StoreJob -> one append into a mailbox (virtual).
"""
