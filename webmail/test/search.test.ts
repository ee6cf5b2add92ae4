// The search box's language (webmail contract): from:, to:, subject:, has:attachment, after:, before:, free text.
import assert from "node:assert/strict";
import { test } from "node:test";
import { parseSearch } from "../src/search";

test("free text searches text", () => {
  assert.deepEqual(parseSearch("  invoice  march "), { text: "invoice march" });
  assert.equal(parseSearch("   "), null);
});

test("fields, quoted values and attachments", () => {
  assert.deepEqual(parseSearch('from:bob subject:"q3 report" has:attachment'), {
    operator: "AND",
    conditions: [{ from: "bob" }, { subject: "q3 report" }, { hasAttachment: true }],
  });
  assert.deepEqual(parseSearch("to:carol@example.com"), { to: "carol@example.com" });
});

test("dates are UTC days: after is inclusive, before exclusive", () => {
  assert.deepEqual(parseSearch("after:2024-01-31 before:2024-02-02"), {
    operator: "AND",
    conditions: [{ after: "2024-01-31T00:00:00Z" }, { before: "2024-02-02T00:00:00Z" }],
  });
  assert.deepEqual(parseSearch("on:2024-02-29"), {
    operator: "AND", conditions: [{ after: "2024-02-29T00:00:00Z" }, { before: "2024-03-01T00:00:00Z" }],
  });
  assert.equal(parseSearch("after:yesterday"), null); // a malformed date is ignored, not sent
});

test("unknown keys are text; is: keywords", () => {
  assert.deepEqual(parseSearch("foo:bar"), { text: "foo:bar" });
  assert.deepEqual(parseSearch("is:unread"), { notKeyword: "$seen" });
  assert.deepEqual(parseSearch("is:flagged"), { hasKeyword: "$flagged" });
});
