// The compose model (src/compose/model.ts): replies, forwards, drafts, addresses, the Email to create.
import assert from "node:assert/strict";
import { test } from "node:test";
import * as m from "../src/compose/model";

const ME = { id: "i1", name: "Alice", email: "alice@example.test", textSignature: "Alice\nexample.test" };
const ALIAS = { id: "i2", name: "Sales", email: "sales@example.test" };
const IDS = [ME, ALIAS];
const asText = (html: string) => html.replace(/<[^>]*>/g, "");

function original(over: Record<string, unknown> = {}): any {
  return {
    id: "E1", messageId: ["m1@remote.test"], inReplyTo: null, references: null,
    from: [{ name: "Bob", email: "bob@remote.test" }],
    to: [{ name: "Alice", email: "ALICE@example.test" }, { name: null, email: "carol@remote.test" }],
    cc: [{ name: null, email: "dave@remote.test" }, { name: null, email: "sales@example.test" }],
    bcc: null, replyTo: null, subject: "Plans", sentAt: "2026-12-01T10:00:00Z",
    textBody: [{ partId: "1", type: "text/plain" }], htmlBody: [{ partId: "2", type: "text/html" }],
    bodyValues: { 1: { value: "line one\n> earlier\n" }, 2: { value: "<p>line one</p>" } },
    attachments: [{ blobId: "B1-3", name: "a.pdf", type: "application/pdf", size: 10 }],
    ...over,
  };
}

test("addresses: names, quotes, commas inside quotes, what is not an address", () => {
  const got = m.parseAddresses('Bob <bob@remote.test>, "Last, First" <lf@x.test>; c@x.test, nonsense, ');
  assert.deepEqual(got.list, [{ name: "Bob", email: "bob@remote.test" }, { name: "Last, First", email: "lf@x.test" },
    { name: null, email: "c@x.test" }]);
  assert.deepEqual(got.bad, ["nonsense"]);
  assert.equal(m.formatAddresses(got.list), 'Bob <bob@remote.test>, "Last, First" <lf@x.test>, c@x.test');
  // what formatAddresses writes parses back to the same addresses
  assert.deepEqual(m.parseAddresses(m.formatAddresses(got.list)).list, got.list);
});

test("reply goes to Reply-To, else From; subject and threading headers (RFC 5322 §3.6.4)", () => {
  const s = m.startFrom("reply", original(), IDS, "alice@example.test", asText);
  assert.deepEqual(s.to, [{ name: "Bob", email: "bob@remote.test" }]);
  assert.deepEqual(s.cc, []);
  assert.equal(s.subject, "Re: Plans");
  assert.deepEqual(s.inReplyTo, ["m1@remote.test"]);
  assert.deepEqual(s.references, ["m1@remote.test"]);
  assert.equal(s.identityId, "i1"); // the identity the original was addressed to
  const r = m.startFrom("reply", original({ replyTo: [{ name: null, email: "list@remote.test" }],
    subject: "RE: Plans", references: ["m0@remote.test"], inReplyTo: ["m0@remote.test"] }), IDS, "", asText);
  assert.deepEqual(r.to, [{ name: null, email: "list@remote.test" }]);
  assert.equal(r.subject, "RE: Plans");
  assert.deepEqual(r.references, ["m0@remote.test", "m1@remote.test"]);
  const body = m.plainBody(s, ME.textSignature);
  assert.match(body, /^\n\n-- \nAlice\nexample.test\n\nOn .*Bob <bob@remote.test> wrote:\n> line one\n>> earlier\n$/);
});

test("reply all: everyone but me, once; Cc keeps the original Cc", () => {
  const s = m.startFrom("replyAll", original(), IDS, "alice@example.test", asText);
  assert.deepEqual(s.to.map((a) => a.email), ["bob@remote.test", "carol@remote.test"]);
  assert.deepEqual(s.cc.map((a) => a.email), ["dave@remote.test"]);
  // answering my own message (from Sent) goes to its recipients, not to me
  const mine = original({ from: [{ name: "Alice", email: "alice@example.test" }],
    to: [{ name: null, email: "bob@remote.test" }], cc: null });
  assert.deepEqual(m.startFrom("reply", mine, IDS, "", asText).to.map((a) => a.email), ["bob@remote.test"]);
  assert.deepEqual(m.startFrom("replyAll", mine, IDS, "", asText).to.map((a) => a.email), ["bob@remote.test"]);
});

test("the answer comes from the alias the original was sent to", () => {
  const s = m.startFrom("reply", original({ to: [{ name: null, email: "sales@example.test" }], cc: null }), IDS, "", asText);
  assert.equal(s.identityId, "i2");
  assert.equal(m.startFrom("new", null, IDS, "alice@example.test", asText).identityId, "i1");
});

test("forward: Fwd subject, a header block, the text, the original's attachments by blobId, no threading", () => {
  const s = m.startFrom("forward", original({ subject: "Fwd: Plans" }), IDS, "", asText);
  assert.equal(s.subject, "Fwd: Plans");
  assert.deepEqual(s.to, []);
  assert.equal(s.inReplyTo, null);
  assert.equal(s.quote.intro[0], "---------- Forwarded message ---------");
  assert.ok(s.quote.intro.includes("From: Bob <bob@remote.test>"));
  assert.equal(s.quote.asQuote, false);
  assert.deepEqual(s.attachments.map((a) => a.blobId), ["B1-3"]);
  assert.equal(m.forwardSubject("Plans"), "Fwd: Plans");
});

test("an HTML-only original is quoted as text, never as markup", () => {
  const o = original({ textBody: [{ partId: "2", type: "text/html" }],
    bodyValues: { 2: { value: "<p>hi <img src=x onerror=alert(1)></p>" } } });
  const s = m.startFrom("reply", o, IDS, "", asText);
  assert.equal(s.quote.text, "hi ");
});

test("a draft opens as it was saved", () => {
  const d = original({ from: [{ name: "Sales", email: "sales@example.test" }], subject: "Draft subject",
    inReplyTo: ["x@y"], references: ["x@y"], bcc: [{ name: null, email: "e@x.test" }] });
  const s = m.startFrom("draft", d, IDS, "", asText);
  assert.equal(s.identityId, "i2");
  assert.equal(s.subject, "Draft subject");
  assert.deepEqual(s.body, { text: "line one\n> earlier\n", html: "<p>line one</p>" });
  assert.deepEqual(s.bcc, [{ name: null, email: "e@x.test" }]);
  assert.deepEqual(s.inReplyTo, ["x@y"]);
  assert.equal(s.attachments.length, 1);
});

test("the Email/set create object: Drafts, $draft, text and HTML alternatives, attachments", () => {
  const draft = { identityId: "i1", to: [{ name: "Bob", email: "bob@remote.test" }], cc: [], bcc: [],
    subject: "Hi", text: "hello\n", html: "<p>hello</p>", inReplyTo: ["m1@remote.test"],
    references: ["m1@remote.test"], attachments: [{ blobId: "P1", name: "a.bin", type: "", size: 3 }] };
  const obj = m.emailCreate(draft, { name: "Alice", email: "alice@example.test" }, "drafts-id",
    [{ name: null, email: "replies@example.test" }]);
  assert.deepEqual(obj.mailboxIds, { "drafts-id": true });
  assert.deepEqual(obj.keywords, { $draft: true, $seen: true });
  assert.deepEqual(obj.from, [{ name: "Alice", email: "alice@example.test" }]);
  assert.deepEqual(obj.replyTo, [{ name: null, email: "replies@example.test" }]);
  assert.equal(obj.cc, undefined);
  assert.equal(obj.bodyValues.text.value, "hello\n");
  assert.match(obj.bodyValues.html.value, /^<!DOCTYPE html>.*<p>hello<\/p><\/body><\/html>$/);
  assert.deepEqual(obj.inReplyTo, ["m1@remote.test"]);
  assert.deepEqual(obj.attachments, [{ blobId: "P1", type: "application/octet-stream", name: "a.bin" }]);
  const plain = m.emailCreate({ ...draft, html: null, attachments: [], inReplyTo: null, references: null },
    { name: null, email: "alice@example.test" }, "d");
  assert.equal(plain.htmlBody, undefined);
  assert.equal(plain.attachments, undefined);
  assert.equal(plain.inReplyTo, undefined);
});

test("quoting and signatures", () => {
  assert.equal(m.quoteLines("a\r\n> b\n\n"), "> a\n>> b");
  assert.equal(m.signatureBlock("Me\n"), "-- \nMe");
  assert.equal(m.signatureBlock("-- \nMe"), "-- \nMe");
  assert.equal(m.replySubject("Aw: x"), "Aw: x");
  assert.equal(m.replySubject(null), "Re:");
});

test("a long References field keeps its first and last ids", () => {
  const refs = Array.from({ length: 30 }, (_, i) => `r${i}@x`);
  const t = m.threadHeaders(original({ references: refs }));
  assert.equal(t.references.length, 20);
  assert.equal(t.references[0], "r0@x");
  assert.equal(t.references[19], "m1@remote.test");
});
