/**
 * Saving a draft and sending: the JMAP requests behind the compose buttons.
 *
 * In:   the app context and a {@link Draft} (model.ts), the draft this compose saved last (an
 *       Email is immutable, RFC 8621 §4: each save creates a new one and destroys the previous).
 * Out:  {@link saveDraft} -> the new draft's id; {@link send} -> the sent Email's id. Sending is
 *       one request: `Email/set` creates the message in Drafts (with `$draft`), `EmailSubmission/set`
 *       sends it, and its `onSuccessUpdateEmail` moves it to Sent and clears `$draft` (RFC 8621
 *       §7.5: Postern's server files no copy itself, the client does, as IMAP clients APPEND to Sent).
 *       A reply marks the original `$answered`, a forward `$forwarded` (RFC 5788 registry).
 * Fails: {@link SendError} with a sentence for the user (the SetError's type and description);
 *       when the message was stored but not sent, `draftId` names it (it stays in Drafts).
 */

import type { AppContext } from "../context";
import { CORE, MAIL, SUBMISSION } from "../jmap";
import { type Draft, type EmailAddress, type Identity, emailCreate, uniqueAddresses } from "./model";

export class SendError extends Error {
  constructor(message: string, public draftId: string | null = null) {
    super(message);
  }
}

interface SetError {
  type: string;
  description?: string;
  properties?: string[];
}

const EXPLAIN: Record<string, string> = {
  forbiddenFrom: "you may not send from that address",
  forbiddenMailFrom: "you may not send from that address",
  noRecipients: "add at least one recipient",
  tooManyRecipients: "too many recipients",
  tooLarge: "the message is too large",
  overQuota: "your mailbox is full",
  blobNotFound: "an attachment is no longer available: attach it again",
  invalidEmail: "the message cannot be sent as it is",
  forbidden: "sending is not possible here",
};

export function explain(err: SetError | undefined): string {
  if (!err) return "the server did not answer";
  const why = EXPLAIN[err.type] ?? err.type;
  const props = err.properties?.length ? ` (${err.properties.join(", ")})` : "";
  return err.description && err.description !== err.type ? `${why}${props}: ${err.description}` : `${why}${props}`;
}

/** The mailbox with this role: the app's list, else asked of the server (the list may still be loading). */
async function mailbox(ctx: AppContext, role: string): Promise<string | null> {
  const known = ctx.byRole.get(role)?.id;
  if (known) return known;
  const got = await ctx.jmap.call<{ list: { id: string; role: string | null }[] }>("Mailbox/get",
    { ids: null, properties: ["id", "role"] });
  return got.list.find((m) => m.role === role)?.id ?? null;
}

function identityOf(ctx: AppContext, d: Draft): Identity {
  const ident = ctx.identities.find((i) => i.id === d.identityId) ?? ctx.identities[0];
  if (!ident) throw new SendError("you have no identity to send from");
  return ident;
}

function createObject(ctx: AppContext, d: Draft, drafts: string): Record<string, unknown> {
  const ident = identityOf(ctx, d);
  const from: EmailAddress = { name: ident.name || null, email: ident.email };
  // the identity's default Bcc (RFC 8621 §6.1) goes along with what the user typed
  const withBcc = { ...d, bcc: uniqueAddresses([...d.bcc, ...(ident.bcc ?? [])]) };
  return emailCreate(withBcc, from, drafts, ident.replyTo);
}

const USING = [CORE, MAIL, SUBMISSION];

/** Store the draft in Drafts (replacing the previous save); the new Email's id. */
export async function saveDraft(ctx: AppContext, d: Draft, previous: string | null): Promise<string> {
  const drafts = await mailbox(ctx, "drafts");
  if (!drafts) throw new SendError("there is no Drafts mailbox");
  const args: Record<string, unknown> = { accountId: ctx.accountId, create: { draft: createObject(ctx, d, drafts) } };
  if (previous) args.destroy = [previous];
  const [[name, out]] = await ctx.jmap.request([["Email/set", args, "0"]], USING);
  if (name === "error") throw new SendError(`the draft was not saved: ${explain(out as unknown as SetError)}`, previous);
  const made = (out.created as Record<string, { id: string }> | undefined)?.draft;
  if (!made) {
    throw new SendError(`the draft was not saved: ${explain((out.notCreated as Record<string, SetError>)?.draft)}`, previous);
  }
  return made.id;
}

export interface SendContext {
  /** the draft saved before (destroyed once this message is stored) */
  previous: string | null;
  /** the Email answered or forwarded: marked $answered / $forwarded after the send */
  original: { id: string; keyword: "$answered" | "$forwarded" } | null;
}

/** Send: store, submit, file in Sent. Resolves to the sent Email's id. */
export async function send(ctx: AppContext, d: Draft, sc: SendContext): Promise<string> {
  const drafts = await mailbox(ctx, "drafts");
  if (!drafts) throw new SendError("there is no Drafts mailbox");
  if (!d.to.length && !d.cc.length && !d.bcc.length) throw new SendError("add at least one recipient");
  const ident = identityOf(ctx, d);
  const sent = await mailbox(ctx, "sent");
  const filed: Record<string, unknown> = { "keywords/$draft": null };
  if (sent && sent !== drafts) {
    filed[`mailboxIds/${drafts}`] = null;
    filed[`mailboxIds/${sent}`] = true;
  }
  const create: Record<string, unknown> = { accountId: ctx.accountId, create: { msg: createObject(ctx, d, drafts) } };
  const calls: [string, Record<string, unknown>, string][] = [
    ["Email/set", create, "0"],
    ["EmailSubmission/set", { accountId: ctx.accountId, create: { send: { identityId: ident.id, emailId: "#msg" } },
      onSuccessUpdateEmail: { "#send": filed } }, "1"],
  ];
  const out = await ctx.jmap.request(calls, USING);
  const [setName, setOut] = out[0];
  if (setName === "error") throw new SendError(`not sent: ${explain(setOut as unknown as SetError)}`, sc.previous);
  const made = (setOut.created as Record<string, { id: string }> | undefined)?.msg;
  if (!made) throw new SendError(`not sent: ${explain((setOut.notCreated as Record<string, SetError>)?.msg)}`, sc.previous);
  const sub = out.find((r) => r[2] === "1" && r[0] !== "Email/set");
  const submitted = sub && sub[0] === "EmailSubmission/set" && (sub[1].created as Record<string, unknown>)?.send;
  if (!submitted) {
    // stored but not sent: it is the draft now (the previous save can go)
    if (sc.previous) await destroy(ctx, sc.previous);
    const why = sub?.[0] === "error" ? explain(sub[1] as unknown as SetError)
      : explain((sub?.[1].notCreated as Record<string, SetError> | undefined)?.send);
    throw new SendError(`not sent: ${why}`, made.id);
  }
  const followUp: Record<string, unknown> = {};
  if (sc.original) followUp[sc.original.id] = { [`keywords/${sc.original.keyword}`]: true };
  const tidy: [string, Record<string, unknown>, string][] = [];
  if (sc.previous || sc.original) {
    tidy.push(["Email/set", { accountId: ctx.accountId, update: followUp, destroy: sc.previous ? [sc.previous] : [] }, "t"]);
    try {
      await ctx.jmap.request(tidy, USING);
    } catch {
      /* sent already: a stale draft or a missing $answered is not worth an error */
    }
  }
  return made.id;
}

export async function destroy(ctx: AppContext, id: string): Promise<void> {
  await ctx.jmap.request([["Email/set", { accountId: ctx.accountId, destroy: [id] }, "0"]], USING);
}
