// The message list's requests and length: one batch per page, no count of Threads, "more" by a full page.
import assert from "node:assert/strict";
import { test } from "node:test";
import { lengthAfter, PAGE, pageCalls } from "../src/list";

const ids = (n: number) => Array.from({ length: n }, (_, i) => `M${i}`);

test("a page is one batch: Email/get takes the query's ids by result reference", () => {
  const calls = pageCalls("A1", { filter: { inMailbox: "mb" }, collapseThreads: false, showTo: false }, 100);
  assert.deepEqual(calls.map((c) => c[0]), ["Email/query", "Email/get"]);
  const [, query, qid] = calls[0];
  assert.equal(query.position, 100);
  assert.equal(query.limit, PAGE);
  assert.equal(query.calculateTotal, true); // by message the server counts from the mailbox's counters
  assert.deepEqual(calls[1][1]["#ids"], { resultOf: qid, name: "Email/query", path: "/ids" });
  assert.ok(!("preview" in (calls[1][1].properties as string[])), "previews come after the rows");
});

test("by thread no total is asked (a count of Threads reads the whole account); Thread/get rides along", () => {
  const calls = pageCalls("A1", { filter: { inMailbox: "mb" }, collapseThreads: true, showTo: false }, 0, "x");
  assert.deepEqual(calls.map((c) => c[0]), ["Email/query", "Email/get", "Thread/get"]);
  assert.equal(calls[0][1].calculateTotal, false);
  assert.equal(calls[0][2], "xq");
  assert.deepEqual(calls[2][1]["#ids"], { resultOf: "xg", name: "Email/get", path: "/list/*/threadId" });
});

test("length: the server's total when it counted", () => {
  assert.equal(lengthAfter({ position: 0, ids: ids(PAGE), total: 10_000 }, -1), 10_000);
});

test("length without a total: a full page means at least one row more, a short page is the end", () => {
  assert.equal(lengthAfter({ position: 0, ids: ids(PAGE) }, -1), PAGE + 1);
  assert.equal(lengthAfter({ position: PAGE, ids: ids(PAGE) }, PAGE + 1), 2 * PAGE + 1);
  assert.equal(lengthAfter({ position: PAGE, ids: ids(7) }, 2 * PAGE + 1), PAGE + 7);
  assert.equal(lengthAfter({ position: 0, ids: [] }, -1), 0);
});

test("length without a total keeps the hint (the mailbox's totalThreads) and what was seen until the end", () => {
  assert.equal(lengthAfter({ position: 0, ids: ids(PAGE) }, -1, 4_000), 4_000);
  assert.equal(lengthAfter({ position: 0, ids: ids(PAGE) }, 4_000, 3_000), 4_000); // a later page knew more
  assert.equal(lengthAfter({ position: 0, ids: ids(3) }, -1, 4_000), 3); // the hint was stale
});
