/**
 * What a reply, reply-all, forward or re-opened draft starts with, and the JMAP Email a compose
 * form becomes: pure functions, no DOM and no network (the dialog and the requests are elsewhere).
 *
 * In:   the original Email as Email/get gives it (headers, text body value, attachments), the
 *       user's identities (Identity/get), the compose form's values.
 * Out:  {@link startFrom} -> the form's initial values; {@link emailCreate} -> the Email/set
 *       create object; {@link parseAddresses} / {@link formatAddresses} for the address fields.
 * Fails: parseAddresses returns the pieces it could not read as `bad` (the dialog shows them);
 *       nothing here throws for mail content.
 */

import type { EmailAddress, Identity as ServerIdentity } from "../context";

export type { EmailAddress };

/** What compose reads of an Identity (the app context's, fetched with Identity/get): the rest may be absent. */
export type Identity = Pick<ServerIdentity, "id" | "name" | "email">
  & Partial<Pick<ServerIdentity, "replyTo" | "bcc" | "textSignature" | "htmlSignature">>;

export interface Attachment {
  blobId: string;
  name: string | null;
  type: string;
  size: number;
  disposition?: string | null;
  cid?: string | null;
}

/** The properties of an Email compose reads (Email/get with these properties and fetchTextBodyValues). */
export interface Original {
  id: string;
  threadId?: string;
  mailboxIds?: Record<string, boolean>;
  keywords?: Record<string, boolean>;
  messageId: string[] | null;
  inReplyTo: string[] | null;
  references: string[] | null;
  from: EmailAddress[] | null;
  to: EmailAddress[] | null;
  cc: EmailAddress[] | null;
  bcc: EmailAddress[] | null;
  replyTo: EmailAddress[] | null;
  subject: string | null;
  sentAt: string | null;
  receivedAt?: string;
  textBody?: { partId: string; type: string }[];
  htmlBody?: { partId: string; type: string }[];
  bodyValues?: Record<string, { value: string; isTruncated?: boolean }>;
  attachments?: Attachment[];
}

export const ORIGINAL_PROPERTIES = ["id", "threadId", "mailboxIds", "keywords", "messageId", "inReplyTo",
  "references", "from", "to", "cc", "bcc", "replyTo", "subject", "sentAt", "receivedAt", "textBody", "htmlBody",
  "bodyValues", "attachments"];

export type Mode = "new" | "reply" | "replyAll" | "forward" | "draft";

/** The compose form's contents (what a draft saves and a send sends). */
export interface Draft {
  identityId: string;
  to: EmailAddress[];
  cc: EmailAddress[];
  bcc: EmailAddress[];
  subject: string;
  /** plain text (always: the text/plain part, or the only part) */
  text: string;
  /** HTML when composed as rich text, else null */
  html: string | null;
  attachments: Attachment[];
  inReplyTo: string[] | null;
  references: string[] | null;
}

// --- addresses ------------------------------------------------------------------------------

const SIMPLE_ADDRESS = /^[^\s@<>(),;:"]+@[^\s@<>(),;:"]+\.[^\s@<>(),;:"]+$|^[^\s@<>(),;:"]+@[^\s@<>(),;:".]+$/;

/** `Name <a@example.com>, "Last, First" <b@example.com>; c@example.com` -> addresses (and what is not one). */
export function parseAddresses(text: string): { list: EmailAddress[]; bad: string[] } {
  const list: EmailAddress[] = [];
  const bad: string[] = [];
  for (const piece of splitList(text)) {
    const s = piece.trim();
    if (!s) continue;
    const angle = /^(.*)<([^<>]*)>\s*$/.exec(s);
    let name: string | null = null;
    let email = s;
    if (angle) {
      name = angle[1].trim().replace(/^"(.*)"$/, "$1").replace(/\\(.)/g, "$1") || null;
      email = angle[2].trim();
    }
    if (SIMPLE_ADDRESS.test(email)) list.push({ name, email });
    else bad.push(s);
  }
  return { list, bad };
}

/** Split at commas and semicolons outside quotes and angle brackets (RFC 5322 §3.4 address-list). */
export function splitList(text: string): string[] {
  const out: string[] = [];
  let cur = "";
  let quoted = false;
  let angle = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (quoted && c === "\\" && i + 1 < text.length) {
      cur += c + text[++i];
      continue;
    }
    if (c === '"') quoted = !quoted;
    else if (!quoted && c === "<") angle = true;
    else if (!quoted && c === ">") angle = false;
    if (!quoted && !angle && (c === "," || c === ";")) {
      out.push(cur);
      cur = "";
    } else cur += c;
  }
  out.push(cur);
  return out;
}

export function formatAddress(a: EmailAddress): string {
  if (!a.name) return a.email;
  const name = /[",;<>@()\\]/.test(a.name) ? `"${a.name.replace(/(["\\])/g, "\\$1")}"` : a.name;
  return `${name} <${a.email}>`;
}

export function formatAddresses(list: EmailAddress[] | null | undefined): string {
  return (list ?? []).map(formatAddress).join(", ");
}

function sameAddress(a: string, b: string): boolean {
  return a.toLowerCase() === b.toLowerCase();
}

/** Addresses without duplicates and without those in `drop` (case-insensitive, first one kept). */
export function uniqueAddresses(list: EmailAddress[], drop: string[] = []): EmailAddress[] {
  const seen = new Set(drop.map((d) => d.toLowerCase()));
  const out: EmailAddress[] = [];
  for (const a of list) {
    const k = a.email.toLowerCase();
    if (seen.has(k)) continue;
    seen.add(k);
    out.push(a);
  }
  return out;
}

// --- reply and forward ------------------------------------------------------------------------

const REPLY_PREFIX = /^\s*(re|aw|sv|antw)(\[\d+\])?\s*:\s*/i;
const FORWARD_PREFIX = /^\s*(fwd?|wg|tr|fw)(\[\d+\])?\s*:\s*/i;

export function replySubject(subject: string | null): string {
  const s = subject ?? "";
  return REPLY_PREFIX.test(s) ? s.trim() : `Re: ${s.trim()}`.trim();
}

export function forwardSubject(subject: string | null): string {
  const s = subject ?? "";
  return FORWARD_PREFIX.test(s) ? s.trim() : `Fwd: ${s.trim()}`.trim();
}

/** RFC 5322 §3.6.4: References = the parent's References (or its In-Reply-To) + the parent's Message-ID. */
export function threadHeaders(o: Original): { inReplyTo: string[] | null; references: string[] | null } {
  const parent = o.messageId && o.messageId.length ? [o.messageId[0]] : null;
  if (!parent) return { inReplyTo: null, references: null };
  const before = o.references && o.references.length ? o.references
    : o.inReplyTo && o.inReplyTo.length === 1 ? o.inReplyTo : [];
  // bounded: a References field that keeps growing along a long thread keeps the first and the last ones
  let refs = [...before.filter((r) => r !== parent[0]), parent[0]];
  if (refs.length > 20) refs = [refs[0], ...refs.slice(refs.length - 19)];
  return { inReplyTo: parent, references: refs };
}

/** The identity an answer goes out from: the one the original was addressed to, else the first. */
export function identityFor(o: Original | null, identities: Identity[], fallback?: string): Identity | undefined {
  if (o) {
    const rcpts = [...(o.to ?? []), ...(o.cc ?? []), ...(o.bcc ?? []), ...(o.from ?? [])];
    for (const r of rcpts) {
      const hit = identities.find((i) => sameAddress(i.email, r.email));
      if (hit) return hit;
    }
  }
  return identities.find((i) => fallback && sameAddress(i.email, fallback)) ?? identities[0];
}

/** The text of the original: its text/plain body, else its HTML as text (never as markup). */
export function originalText(o: Original, htmlToText: (html: string) => string): string {
  const part = (o.textBody ?? [])[0];
  const value = part && o.bodyValues?.[part.partId]?.value;
  if (value === undefined || value === null) return "";
  return part.type === "text/html" ? htmlToText(value) : value;
}

export function quoteLines(text: string): string {
  return text.replace(/\r\n/g, "\n").replace(/\n+$/, "").split("\n").map((l) => (l.startsWith(">") ? `>${l}` : `> ${l}`))
    .join("\n");
}

function who(list: EmailAddress[] | null): string {
  const a = (list ?? [])[0];
  return a ? (a.name ? `${a.name} <${a.email}>` : a.email) : "(unknown sender)";
}

function when(o: Original): string {
  const t = o.sentAt || o.receivedAt;
  if (!t) return "";
  const d = new Date(t);
  return Number.isNaN(d.getTime()) ? t : d.toUTCString();
}

export function attribution(o: Original): string {
  const date = when(o);
  return date ? `On ${date}, ${who(o.from)} wrote:` : `${who(o.from)} wrote:`;
}

export function forwardHeader(o: Original): string[] {
  const lines = ["---------- Forwarded message ---------", `From: ${formatAddresses(o.from)}`];
  const date = when(o);
  if (date) lines.push(`Date: ${date}`);
  lines.push(`Subject: ${o.subject ?? ""}`);
  if (o.to?.length) lines.push(`To: ${formatAddresses(o.to)}`);
  if (o.cc?.length) lines.push(`Cc: ${formatAddresses(o.cc)}`);
  return lines;
}

/** The start of a reply/forward/draft: recipients, subject, threading, the quoted or forwarded body. */
export interface Start {
  identityId: string;
  to: EmailAddress[];
  cc: EmailAddress[];
  bcc: EmailAddress[];
  subject: string;
  /** the original's text, to be quoted (reply) or shown below a header (forward) */
  quote: { intro: string[]; text: string; asQuote: boolean } | null;
  /** the body text as it was (draft) */
  body: { text: string; html: string | null } | null;
  attachments: Attachment[];
  inReplyTo: string[] | null;
  references: string[] | null;
}

export function startFrom(mode: Mode, o: Original | null, identities: Identity[], username: string,
                          htmlToText: (html: string) => string): Start {
  const ident = identityFor(mode === "new" ? null : o, identities, username);
  const start: Start = { identityId: ident?.id ?? "", to: [], cc: [], bcc: [], subject: "", quote: null, body: null,
    attachments: [], inReplyTo: null, references: null };
  if (!o || mode === "new") return start;
  const mine = identities.map((i) => i.email);
  if (mode === "reply" || mode === "replyAll") {
    const fromMe = (o.from ?? []).some((f) => mine.some((m) => sameAddress(m, f.email)));
    // RFC 5322 §3.6.3: replies go to Reply-To when present, else From; answering one's own message
    // (from Sent) goes to its recipients again
    const primary = fromMe ? (o.to ?? []) : (o.replyTo?.length ? o.replyTo : (o.from ?? []));
    if (mode === "reply") {
      start.to = uniqueAddresses(primary);
    } else {
      start.to = uniqueAddresses([...primary, ...(fromMe ? [] : (o.to ?? []))], mine);
      if (!start.to.length) start.to = uniqueAddresses(primary);
      start.cc = uniqueAddresses(o.cc ?? [], [...mine, ...start.to.map((a) => a.email)]);
    }
    start.subject = replySubject(o.subject);
    Object.assign(start, threadHeaders(o));
    start.quote = { intro: [attribution(o)], text: originalText(o, htmlToText), asQuote: true };
  } else if (mode === "forward") {
    start.subject = forwardSubject(o.subject);
    start.quote = { intro: forwardHeader(o), text: originalText(o, htmlToText), asQuote: false };
    // the original's attachments go along by blobId: nothing is uploaded again
    start.attachments = (o.attachments ?? []).filter((a) => a.blobId).map((a) => ({ ...a }));
  } else if (mode === "draft") {
    start.to = o.to ?? [];
    start.cc = o.cc ?? [];
    start.bcc = o.bcc ?? [];
    start.subject = o.subject ?? "";
    start.inReplyTo = o.inReplyTo;
    start.references = o.references;
    const textPart = (o.textBody ?? [])[0];
    const htmlPart = (o.htmlBody ?? [])[0];
    const text = textPart && textPart.type !== "text/html" ? o.bodyValues?.[textPart.partId]?.value ?? "" : "";
    const html = htmlPart && htmlPart.type === "text/html" ? o.bodyValues?.[htmlPart.partId]?.value ?? null : null;
    start.body = { text: text || (html !== null ? htmlToText(html) : ""), html };
    start.attachments = (o.attachments ?? []).map((a) => ({ ...a }));
    const sender = (o.from ?? [])[0];
    const byFrom = sender && identities.find((i) => sameAddress(i.email, sender.email));
    if (byFrom) start.identityId = byFrom.id;
  }
  return start;
}

/** The plain-text body of a reply or forward: signature above the quote (the usual top-post). */
export function plainBody(start: Start, signature: string): string {
  const parts = ["", ""];
  if (signature) parts.push(signatureBlock(signature), "");
  if (start.quote) {
    parts.push(...start.quote.intro);
    parts.push(start.quote.asQuote ? quoteLines(start.quote.text) : start.quote.text);
  }
  return parts.join("\n").replace(/\n*$/, "\n");
}

/** RFC 3676 §4.3: the signature separator "-- " on a line of its own. */
export function signatureBlock(signature: string): string {
  const s = signature.replace(/\r\n/g, "\n").replace(/\n+$/, "");
  return s.startsWith("-- \n") ? s : `-- \n${s}`;
}

// --- the Email to store ----------------------------------------------------------------------

export const HTML_WRAPPER_START = '<!DOCTYPE html><html><head><meta charset="utf-8"></head><body>';
export const HTML_WRAPPER_END = "</body></html>";

/** The Email/set create object of a draft (in Drafts, with $draft and $seen). */
export function emailCreate(d: Draft, from: EmailAddress, draftsId: string, replyTo?: EmailAddress[] | null):
  Record<string, unknown> {
  const obj: Record<string, unknown> = {
    mailboxIds: { [draftsId]: true },
    keywords: { $draft: true, $seen: true },
    from: [from],
    subject: d.subject,
    textBody: [{ partId: "text", type: "text/plain" }],
    bodyValues: { text: { value: d.text } } as Record<string, { value: string }>,
  };
  if (d.to.length) obj.to = d.to;
  if (d.cc.length) obj.cc = d.cc;
  if (d.bcc.length) obj.bcc = d.bcc;
  if (replyTo && replyTo.length) obj.replyTo = replyTo;
  if (d.html !== null) {
    obj.htmlBody = [{ partId: "html", type: "text/html" }];
    (obj.bodyValues as Record<string, { value: string }>).html = { value: HTML_WRAPPER_START + d.html + HTML_WRAPPER_END };
  }
  if (d.inReplyTo?.length) obj.inReplyTo = d.inReplyTo;
  if (d.references?.length) obj.references = d.references;
  if (d.attachments.length) {
    obj.attachments = d.attachments.map((a) => {
      const out: Record<string, unknown> = { blobId: a.blobId, type: a.type || "application/octet-stream" };
      if (a.name) out.name = a.name;
      if (a.disposition === "inline" && a.cid) {
        out.disposition = "inline";
        out.cid = a.cid;
      }
      return out;
    });
  }
  return obj;
}
