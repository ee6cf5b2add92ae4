/**
 * What the user does to messages, as JMAP writes (RFC 8621 §4.6 Email/set): keywords (read,
 * flagged), moves between mailboxes (archive, delete to Trash, spam, not spam: the server sets $junk /
 * $notjunk on a move into / out of Junk and teaches the filter),
 * destroy (delete from Trash or Junk, empty them).
 *
 * In:   the JMAP client, email ids, mailbox ids.
 * Out:  the ids the server changed; the caller updates the list and says what happened.
 * Fails: JmapError for a method-level error; per-email refusals (notUpdated / notDestroyed)
 *       raise {@link PartialFailure} naming how many failed.
 */

import { type Jmap, unwrap } from "./jmap";

export class PartialFailure extends Error {
  constructor(public done: string[], public failed: number, why: string) {
    super(`${failed} message(s) could not be changed: ${why}`);
  }
}

const CHUNK = 500; // maxObjectsInSet

async function setEmails(jmap: Jmap, args: { update?: Record<string, Record<string, unknown>>; destroy?: string[] }): Promise<string[]> {
  const done: string[] = [];
  let failed = 0;
  let why = "";
  const updates = Object.entries(args.update || {});
  const destroys = args.destroy || [];
  for (let i = 0; i < Math.max(updates.length, destroys.length); i += CHUNK) {
    const call: Record<string, unknown> = {};
    if (updates.length > i) call.update = Object.fromEntries(updates.slice(i, i + CHUNK));
    if (destroys.length > i) call.destroy = destroys.slice(i, i + CHUNK);
    const r = await jmap.call<any>("Email/set", call);
    done.push(...Object.keys(r.updated || {}), ...(r.destroyed || []));
    for (const errs of [r.notUpdated, r.notDestroyed]) {
      for (const e of Object.values(errs || {}) as { type: string; description?: string }[]) {
        failed++;
        why = e.description || e.type;
      }
    }
  }
  if (failed) throw new PartialFailure(done, failed, why);
  return done;
}

export function setKeyword(jmap: Jmap, ids: string[], keyword: string, on: boolean): Promise<string[]> {
  const update: Record<string, Record<string, unknown>> = {};
  for (const id of ids) update[id] = { [`keywords/${keyword}`]: on ? true : null };
  return setEmails(jmap, { update });
}

/** Move from one mailbox to another (null `from`: out of every mailbox it is in). */
export function move(jmap: Jmap, ids: string[], from: string | null, to: string,
                     keywords: Record<string, boolean | null> = {}): Promise<string[]> {
  const update: Record<string, Record<string, unknown>> = {};
  for (const id of ids) {
    const patch: Record<string, unknown> = from && from !== to
      ? { [`mailboxIds/${from}`]: null, [`mailboxIds/${to}`]: true }
      : { mailboxIds: { [to]: true } };
    for (const [k, v] of Object.entries(keywords)) patch[`keywords/${k}`] = v;
    update[id] = patch;
  }
  return setEmails(jmap, { update });
}

export function destroy(jmap: Jmap, ids: string[]): Promise<string[]> {
  return setEmails(jmap, { destroy: ids });
}

/** Every email in a mailbox, destroyed a window at a time (empty Trash, empty Junk). */
export async function emptyMailbox(jmap: Jmap, mailboxId: string): Promise<number> {
  let count = 0;
  for (let round = 0; round < 10_000; round++) {
    const q = await jmap.call<{ ids: string[] }>("Email/query", { filter: { inMailbox: mailboxId }, limit: CHUNK });
    if (!q.ids.length) break;
    const done = await destroy(jmap, q.ids);
    count += done.length;
    if (!done.length) break;
  }
  return count;
}

/** The emails behind thread rows: every email of each thread that is in `mailboxId` (all of them
 * when null), in one request (Email/get -> Thread/get -> Email/get by result reference). */
export async function expandThreads(jmap: Jmap, ids: string[], mailboxId: string | null): Promise<string[]> {
  const a = jmap.accountId;
  const responses = await jmap.request([
    ["Email/get", { accountId: a, ids, properties: ["threadId"] }, "e"],
    ["Thread/get", { accountId: a, "#ids": { resultOf: "e", name: "Email/get", path: "/list/*/threadId" } }, "t"],
    ["Email/get", {
      accountId: a, "#ids": { resultOf: "t", name: "Thread/get", path: "/list/*/emailIds" }, properties: ["mailboxIds"],
    }, "m"],
  ]);
  const list = unwrap(responses[2]).list as { id: string; mailboxIds: Record<string, boolean> }[];
  const out = list.filter((e) => !mailboxId || e.mailboxIds[mailboxId]).map((e) => e.id);
  return out.length ? out : ids;
}
