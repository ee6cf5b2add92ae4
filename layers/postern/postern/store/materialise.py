"""Roll a committed change forward into the items readers use, and release deleted mailboxes.

In:   a change log record (``records``: what the change is, self-described) and,
      from the writer that committed it, the header blocks it already holds; the
      item layer and the blob layer.
Out:  :meth:`Materialiser.apply`: the message entries, blob references, dedup
      markers, thread index, email-id index (in the same BatchWriteItem as the
      dedup marker and thread index: no extra request; removed at expunge and
      by the sweeper), name entries, mailbox state and, last, the account
      item (its ``ms`` is the marker "materialised through this change") written;
      :meth:`Materialiser.sweep`: the messages of deleted mailboxes released.
Fails: StoreUnavailable / BlobMissing from the layers; nothing is lost by it,
      since every step is idempotent and conditioned on the change being newer
      than what the item records: whoever comes next (the next writer of the
      account, a reader missing a message) applies the change again, completely.

Ordering: a change numbered n+1 is committed only after n is materialised (the
writer reads the account marker first, and its log write fails while n+1 is
taken), so at most the newest change of an account is ever unmaterialised.
That is what makes "materialised?" a single GetItem and repair a single replay.

Blob references: a delivered message's blob is its spool object, referenced in
place (no copy: one S3 write per message); ``B#<key>`` holds the set of
"<mailbox id>/<uid>" references, across accounts (set operations commute and
repeat harmlessly). A blob under the message prefix (IMAP APPEND, older
deliveries) has one owner unless COPY shared it, and then the same set. The last
reference to go deletes the S3 object, except a spool object still inside the
spool window (SPOOL_RETENTION_DAYS from its queue id's time: deliver, NDR and
other recipients may still read it); the spool sweep (``spoolsweep``) deletes it
after the window when no mailbox references it. An entry is written only after
its reference, so a referenced blob never has an empty set; a replay that finds
its entry expunged since drops the reference it re-added (``_settle``).
"""

from __future__ import annotations

import logging
import time

from .. import keys
from ..errors import BlobMissing
from ..items import ConditionFailed, Update, absent, newer, present
from ..queueid import spooled_at
from . import counts as C
from . import records as R
from .summary import HEADER_CAP

log = logging.getLogger("postern.store")

DEDUP_TTL = 15 * 86400  # longer than SQS's 14-day maximum retention


def ref(mbid: str, uid: int) -> str:
    return f"{mbid}/{uid}"


class Materialiser:
    def __init__(self, items, blobs, *, spool_prefix: str = "spool/", spool_window: float = 14 * 86400.0):
        self.items = items
        self.blobs = blobs
        self.spool_prefix = spool_prefix
        self.spool_window = spool_window  # seconds the pipeline may still read a spool object

    def in_spool_window(self, blob: str, now: float | None = None) -> bool:
        """A spool object younger than the window: the pipeline may still read it, whoever references it."""
        if not blob.startswith(self.spool_prefix):
            return False
        at = spooled_at(blob)
        return at is not None and (time.time() if now is None else now) - at < self.spool_window

    def apply(self, rec: dict, payload: dict[int, bytes | None] | None = None) -> None:
        k = rec["k"]
        if k == "append":
            self._append(rec, payload or {})
        elif k == "flags":
            self._flags(rec)
        elif k == "expunge":
            self._expunge(rec)
        elif k == "count":
            self._count(rec)
        else:
            self._structural(rec)
        if k in R.MESSAGE_KINDS:
            self._members(rec)
            self._state(rec)
        self._account(rec)

    # --- messages -----------------------------------------------------------------
    def _append(self, rec: dict, payload: dict[int, bytes | None]) -> None:
        user, mbid, h = rec["u"], rec["mb"], int(rec["ms"])
        side: list[dict] = []
        # A COPY's references, per blob: one conditional update per blob and change (two copies of one blob in
        # one change, e.g. a message and its self-copy copied together, each need their reference: the
        # condition on "ms" passes only once per change)
        copied: dict[str, set[str]] = {}
        for m in rec.get("m", ()):
            if m.get("src") and not self._in_place(m):
                copied.setdefault(m["bl"], set()).update({ref(mbid, int(m["uid"])), m["src"]})
        for m in rec.get("m", ()):
            uid = int(m["uid"])
            shared = self._in_place(m)  # references counted in B#, across accounts
            if m.get("sp") and not shared:
                self._adopt(m["sp"], m["bl"])
                if m.get("sx"):  # the spool object was this change's alone (IMAP APPEND): done with it
                    self.blobs.delete(m["sp"])
            refs = {ref(mbid, uid)} | ({m["src"]} if m.get("src") else set())
            if shared:  # before the entry: an entry is never without its reference
                marker = {R.dedup_attr(m["dd"]): R.dedup_marker(m, rec.get("uv", 0), h, mbid, rec.get("t"))} \
                    if m.get("db") else {}
                self.items.update(keys.blob_key(m["bl"]), Update(add={"refs": refs}, set=marker))
            if m.get("src"):
                prefix, header = self._copy_source(user, m)
                if not shared and m["bl"] in copied:
                    try:
                        self.items.update(keys.blob_key(m["bl"]), Update(add={"refs": copied.pop(m["bl"])},
                                                                         set={"ms": h}), cond=newer("ms", h))
                    except ConditionFailed:
                        pass  # this change (or a later one) already counted it
            else:
                prefix = bytes(m.get("pf", b""))
                header = payload[uid] if uid in payload else self._header(m, prefix)
            item = R.message_item(user, mbid, m, h, prefix, header)
            try:
                self.items.put(item, cond=newer("ms", h))
            except ConditionFailed:
                if shared:
                    self._settle(user, m["bl"], refs)
                elif m.get("sp"):
                    self._unresurrect(user, mbid, uid, m["bl"])
            if m.get("dd") and not m.get("db"):
                side.append({**keys.dedup_key(m["dd"]), **R.dedup_marker(m, rec.get("uv", 0), h, mbid, rec.get("t")),
                             "e": m.get("e", ""), "expires": int(time.time()) + DEDUP_TTL})
            if m.get("mi") and m.get("th"):
                side.append({**keys.thread_key(user, m["mi"]), "th": m["th"]})
            if m.get("e"):  # the email-id index (readers check the entry: a stale item is only a wasted read)
                side.append({**keys.email_key(user, m["e"], mbid, uid), "ms": h})
        if side:
            self.items.batch_put(side)

    def _in_place(self, m: dict) -> bool:
        """The message's blob is the spool object itself (a delivery), or a blob so shared (COPY of one)."""
        return m["bl"].startswith(self.spool_prefix)

    def _settle(self, user: str, blob: str, refs: set[str]) -> None:
        """A replay found its entry written by a later change: drop each reference it re-added whose
        entry is not live (expunged since, so its release already ran)."""
        for r in refs:
            mbid, _, uid = r.partition("/")
            cur = self.items.get(keys.message_key(user, mbid, int(uid)))
            if not (R.live(cur) and cur.get("bl") == blob):
                self.release(blob, r, 0)

    def _adopt(self, spool: str, blob: str) -> None:
        """The spool object becomes the mailbox blob (CopyObject; repeating it is harmless)."""
        try:
            self.blobs.copy(spool, blob)
        except BlobMissing:
            if not self.blobs.exists(blob):
                log.error("message bytes lost: spool object %s expired before %s was written", spool, blob)

    def _unresurrect(self, user: str, mbid: str, uid: int, blob: str) -> None:
        """We adopted after someone else had materialised this change: if the message has been expunged
        since (and its blob deleted), our copy brought the blob back. Delete it again."""
        cur = self.items.get(keys.message_key(user, mbid, uid))
        if cur is not None and not cur.get("x"):
            return
        b = self.items.get(keys.blob_key(blob))
        if b is None or not b.get("refs"):
            self.blobs.delete(blob)

    def _header(self, m: dict, prefix: bytes) -> bytes | None:
        """The header block for a replayed append: the trace prefix, then the blob's own header section."""
        hl = int(m["hl"])
        if hl > HEADER_CAP:
            return None
        try:
            return prefix + self.blobs.read(m["bl"], 0, hl - len(prefix))
        except BlobMissing:
            return None

    def _copy_source(self, user: str, m: dict) -> tuple[bytes, bytes | None]:
        smb, _, suid = m["src"].partition("/")
        src = self.items.get(keys.message_key(user, smb, int(suid)))
        if R.live(src):
            return bytes(src.get("pf", b"")), R.header_of(src)
        prefix = bytes(m.get("pf", b""))
        return prefix, self._header(m, prefix)

    def _flags(self, rec: dict) -> None:
        user, mbid, h = rec["u"], rec["mb"], int(rec["ms"])
        cond = present("uid") & absent("x") & newer("ms", h)
        for g in rec.get("g", ()):
            fl = set(g.get("f") or ())
            for uid in g["u"]:
                try:
                    self.items.update(keys.message_key(user, mbid, int(uid)), Update(set={"fl": fl or None, "ms": h}),
                                      cond=cond)
                except ConditionFailed:
                    pass  # already applied, or expunged meanwhile

    def _expunge(self, rec: dict) -> None:
        user, mbid, h = rec["u"], rec["mb"], int(rec["ms"])
        for x in rec.get("x", ()):
            uid = int(x["uid"])
            try:
                self.items.put(R.tombstone_item(user, mbid, uid, h), cond=newer("ms", h))
            except ConditionFailed:
                pass
            if x.get("e"):
                self.items.delete(keys.email_key(user, x["e"], mbid, uid))
            self.release(x["bl"], ref(mbid, uid), h)

    def release(self, blob: str, reference: str, h: int) -> None:
        """Drop one reference to a blob; the last reference deletes the S3 object."""
        if not blob:
            return
        b = self.items.get(keys.blob_key(blob))
        if b is not None and b.get("refs"):
            b = self.items.update(keys.blob_key(blob), Update(delete={"refs": {reference}}), returns="ALL_NEW")
            if b.get("refs"):
                return
        if b is not None and R.dedup_markers(b) and self.in_spool_window(blob):
            return  # its delivery markers answer a store job run again; the spool sweep deletes the item
        if b is not None:
            try:
                self.items.delete(keys.blob_key(blob), cond=absent("refs"))
            except ConditionFailed:
                return  # shared again meanwhile (a COPY of another reference)
        if self.in_spool_window(blob):
            return  # the pipeline may still read it: the spool sweep deletes it after the window
        self.blobs.delete(blob)

    # --- mailboxes ----------------------------------------------------------------
    def _structural(self, rec: dict) -> None:
        user, h, k = rec["u"], int(rec["ms"]), rec["k"]
        for box in rec.get("b", ()):
            try:
                self.items.put(R.state_item(user, box, h), cond=newer("ms", h))
            except ConditionFailed:
                pass
        for w in R.name_writes(user, rec):
            try:
                self.items.put(w, cond=newer("ms", h))
            except ConditionFailed:
                pass
        for mv in rec.get("mv", ()):
            try:
                self.items.update(keys.state_key(user, mv["mb"]), Update(set={"n": mv["n"], "ms": h}),
                                  cond=present("mb") & newer("ms", h))
            except ConditionFailed:
                pass
        if k == "destroy":
            try:
                self.items.update(keys.state_key(user, rec["mb"]), Update(set={"gone": True, "ms": h}),
                                  cond=present("mb") & newer("ms", h))
            except ConditionFailed:
                pass
            self.items.put({**keys.sweep_key(user, rec["mb"]), "mb": rec["mb"], "n": rec["n"], "ms": h,
                            "at": rec.get("t", time.time())})

    def _members(self, rec: dict) -> None:
        """The thread members items a change moves (``counts``), each applied once."""
        user, mbid, h = rec["u"], rec["mb"], int(rec["ms"])
        for entry in rec.get("tc", ()):
            try:
                self.items.update(keys.members_key(user, entry["th"], mbid, rec["tg"]),
                                  C.members_update(entry, h, R.expires(rec.get("t"))), cond=newer("ms", h))
            except ConditionFailed:
                pass  # applied already (this change rolled forward twice)

    def _count(self, rec: dict) -> None:
        """A mailbox starts counting threads (``counts``: its members items are written already)."""
        st, h = rec["st"], int(rec["ms"])
        try:
            self.items.update(keys.state_key(rec["u"], rec["mb"]),
                              Update(set={"tt": st["tt"], "ut": st["ut"], "tg": st["tg"], "dp": st.get("dp", False),
                                          "ms": h}),
                              cond=present("mb") & newer("ms", h))
        except ConditionFailed:
            pass

    def _state(self, rec: dict) -> None:
        st = rec["st"]
        h = int(rec["ms"])
        upd = Update(set={"un": st["un"], "hm": h, "ex": st["ex"], "sz": st["sz"], "us": st["us"], "ms": h,
                          **{k: st[k] for k in ("ri", "rb", "dp", "tt", "ut") if k in st}})  # order_fields, counts
        if rec.get("ka"):
            upd.add["kw"] = set(rec["ka"])
        try:
            self.items.update(keys.state_key(rec["u"], rec["mb"]), upd, cond=present("mb") & newer("ms", h))
        except ConditionFailed:
            pass

    def _account(self, rec: dict) -> None:
        h = int(rec["ms"])
        upd = Update(set={"ms": h})
        if rec.get("ud"):
            upd.add["used"] = int(rec["ud"])
        uvs = [int(b["uv"]) for b in rec.get("b", ())]
        if uvs:
            upd.set["uv"] = max(uvs)
        try:
            self.items.update(keys.account_key(rec["u"]), upd, cond=newer("ms", h))
        except ConditionFailed:
            pass

    # --- the sweeper --------------------------------------------------------------
    def sweep(self, user: str) -> int:
        """Release the messages of deleted mailboxes (resumable: run it again after a crash)."""
        released = 0
        for sw in list(self.items.query(keys.user_pk(user), keys.SWEEP_PREFIX)):
            mbid, h = sw["mb"], int(sw["ms"])
            st = self.items.get(keys.state_key(user, mbid)) or {}
            for it in self.items.query(keys.messages_pk(user, mbid), gt=keys.uid_sk(0)):
                if it.get("x"):
                    continue
                uid = int(it["uid"])
                if C.counting(st):
                    self.items.delete(keys.members_key(user, C.thread_of_entry(mbid, it), mbid, C.generation(st)))
                try:
                    self.items.put(R.tombstone_item(user, mbid, uid, h), cond=newer("ms", h))
                except ConditionFailed:
                    pass
                if it.get("e"):
                    self.items.delete(keys.email_key(user, it["e"], mbid, uid))
                self.release(it.get("bl", ""), ref(mbid, uid), h)
                released += 1
            try:
                self.items.update(keys.state_key(user, mbid), Update(set={"expires": R.expires()}), cond=present("mb"))
            except ConditionFailed:
                pass
            self.items.delete({"pk": sw["pk"], "sk": sw["sk"]})
        return released
