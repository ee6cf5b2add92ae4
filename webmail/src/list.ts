/**
 * The message list: Email/query windows (newest first, by message or by thread) rendered as a
 * virtualised list, so a 10,000-message mailbox costs what a 10-message one does: only the rows
 * on screen exist in the DOM, and only the pages of ids around them are fetched (one request per
 * page: Email/query + Email/get by result reference, + Thread/get in thread view; {@link pageCalls}).
 * The first page may come prefetched, batched by the caller with its own calls (the shell sends it
 * beside Mailbox/get: sign-in to the first row in one API request).
 *
 * How long the list is: by message, the query's `total` (the server has it from the mailbox's
 * counters). By thread, no `calculateTotal` (the mailbox's `totalThreads` is the same number, already in
 * hand: a server without a counter for it would count Threads over the whole account): the length is the caller's hint (the mailbox's `totalThreads`) or what has been seen,
 * plus one "Loading…" row after a full page, whose coming into view fetches the next page; a short
 * page says where the list ends.
 *
 * In:   the JMAP client, a {@link ListQuery} (and optionally its first page's responses), scrolling,
 *       clicks and keys.
 * Out:  `message-list` with `message-row`s; selection (`selected`), the cursor, `open(id)` calls;
 *       {@link MessageList.shown} resolves once the query's first page is on screen (or failed).
 * Fails: a failed page load is shown in the list and retried on the next scroll or refresh.
 */

import type { EmailAddress } from "./context";
import { h, shortDate } from "./dom";
import { type Invocation, type Jmap, unwrap } from "./jmap";

export interface EmailSummary {
  id: string;
  threadId: string;
  mailboxIds: Record<string, boolean>;
  keywords: Record<string, boolean>;
  from: EmailAddress[] | null;
  to: EmailAddress[] | null;
  subject: string | null;
  receivedAt: string;
  preview?: string; // fetched after the row (see LIST_PROPERTIES)
  hasAttachment: boolean;
  size: number;
  threadSize?: number;
}

export interface ListQuery {
  filter: Record<string, unknown>;
  collapseThreads: boolean;
  /** the sent/drafts lists show recipients instead of senders */
  showTo: boolean;
  /** by thread: how many rows to expect (the mailbox's totalThreads), corrected by what pages say */
  totalHint?: number;
}

export interface ListHandlers {
  open(id: string): void;
  selectionChanged(): void;
  dragIds(id: string): string[];
}

// No "preview" here: the server makes it from the message body (a read of each whole message), so
// rows come first and their previews in a second request that never holds up the list.
const LIST_PROPERTIES = ["id", "threadId", "mailboxIds", "keywords", "from", "to", "subject", "receivedAt",
  "hasAttachment", "size"];
export const PAGE = 50;
const OVERSCAN = 8;

/** One page of a list as one batch: Email/query (newest first) + Email/get of the rows' properties by
 * result reference (RFC 8620 §3.7), + Thread/get of their threads in thread view. A total is asked
 * only by message (see the module's note). Call ids are prefixed so a caller can batch two lists. */
export function pageCalls(accountId: string, q: ListQuery, position: number, prefix = "l"): Invocation[] {
  const calls: Invocation[] = [
    ["Email/query", {
      accountId, filter: q.filter, sort: [{ property: "receivedAt", isAscending: false }],
      collapseThreads: q.collapseThreads, position, limit: PAGE, calculateTotal: !q.collapseThreads,
    }, `${prefix}q`],
    ["Email/get", {
      accountId, "#ids": { resultOf: `${prefix}q`, name: "Email/query", path: "/ids" }, properties: LIST_PROPERTIES,
    }, `${prefix}g`],
  ];
  if (q.collapseThreads) {
    calls.push(["Thread/get", {
      accountId, "#ids": { resultOf: `${prefix}g`, name: "Email/get", path: "/list/*/threadId" },
    }, `${prefix}t`]);
  }
  return calls;
}

/** How many rows the list has, from a page's answer: `total` when the server counted, the end when the
 * page is short, else at least one row past it ("more"), and at least the hint while not at the end. */
export function lengthAfter(page: { position: number; ids: string[]; total?: number }, known: number,
                            hint = 0): number {
  if (typeof page.total === "number") return page.total;
  const end = page.position + page.ids.length;
  if (page.ids.length < PAGE) return end;
  return Math.max(known, hint, end + 1);
}

export function addressLabel(list: EmailAddress[] | null | undefined): string {
  if (!list || !list.length) return "";
  return list.map((a) => a.name || a.email).join(", ");
}

export class MessageList {
  readonly el: HTMLElement;
  private spacer: HTMLElement;
  private rows: HTMLElement;
  private status: HTMLElement;
  private query: ListQuery | null = null;
  private ids: (string | undefined)[] = [];
  private total = -1;
  private queryState = "";
  private firstShown: Promise<void> = Promise.resolve();
  private firstDone: () => void = () => {};
  private generation = 0;
  private loading = new Set<number>();
  private fresh = new Set<number>(); // pages fetched in this generation
  private failedPages = new Set<number>(); // not retried until the next scroll or refresh
  private failed = false;
  private frame = 0;
  private rowHeight = 70;
  private rowEls = new Map<string, HTMLElement>();
  readonly emails = new Map<string, EmailSummary>();
  readonly selected = new Set<string>();
  cursor = -1;
  openId = "";

  constructor(private jmap: Jmap, private on: ListHandlers) {
    this.spacer = h("div", { className: "list-spacer", "aria-hidden": "true" });
    this.rows = h("div", { className: "list-rows", role: "list", "aria-label": "Messages" });
    this.status = h("p", { className: "list-status", "aria-live": "polite" });
    this.el = h("div", { className: "message-list", testid: "message-list", tabindex: "-1" },
      this.spacer, this.rows, this.status);
    this.el.addEventListener("scroll", () => {
      this.failedPages.clear();
      this.schedule();
    }, { passive: true });
    window.addEventListener("resize", () => this.schedule());
  }

  get size(): number {
    return Math.max(this.total, 0);
  }

  /** A new query: everything is dropped and the first page fetched, or taken from `first` (the
   * responses to {@link pageCalls}(q, 0) that the caller fetched in its own batch). */
  setQuery(q: ListQuery, first?: Invocation[]): void {
    this.query = q;
    this.selected.clear();
    this.cursor = -1;
    this.el.scrollTop = 0;
    this.firstDone(); // whoever waited for the previous query's first page waits no longer
    this.firstShown = new Promise((resolve) => (this.firstDone = resolve));
    this.reset(!first); // a first page handed in is drawn by apply() below
    if (first) {
      this.loading.add(0);
      this.apply(0, q, this.generation, first);
    }
    this.on.selectionChanged();
  }

  /** Resolves once the current query's first page is on screen (or failed to load). */
  shown(): Promise<void> {
    return this.firstShown;
  }

  /** The same query again (new mail, a change elsewhere): the pages on screen are refetched. */
  refresh(): void {
    if (!this.query) return;
    this.generation++;
    this.loading.clear();
    this.fresh.clear();
    this.failedPages.clear();
    this.queryState = "";
    this.render(); // the rows on screen stay until their page is back
  }

  /** Forget the previous query's pages; ``draw``: show the empty list now. */
  private reset(draw = true): void {
    this.generation++;
    this.ids = [];
    this.loading.clear();
    this.fresh.clear();
    this.failedPages.clear();
    this.total = -1;
    this.queryState = "";
    if (draw) this.render();
  }

  /** Ids at positions [from, to) that are known. */
  idAt(i: number): string | undefined {
    return this.ids[i];
  }

  indexOf(id: string): number {
    return this.ids.indexOf(id);
  }

  /** Local change before the server confirms (a flag, read state): the row updates at once. */
  patch(id: string, keywords: Record<string, boolean>): void {
    const e = this.emails.get(id);
    if (e) e.keywords = keywords;
    this.render();
  }

  /** Rows gone from this list (moved, deleted): dropped now; the next refresh confirms. */
  removeLocally(ids: string[]): void {
    const gone = new Set(ids);
    const before = this.ids.length;
    this.ids = this.ids.filter((id) => id === undefined || !gone.has(id));
    if (this.total >= 0) this.total = Math.max(0, this.total - (before - this.ids.length));
    for (const id of ids) this.selected.delete(id);
    this.render();
    this.on.selectionChanged();
  }

  private schedule(): void {
    if (this.frame) return;
    this.frame = requestAnimationFrame(() => {
      this.frame = 0;
      this.render();
    });
  }

  private range(): [number, number] {
    const height = this.el.clientHeight || 600;
    const first = Math.max(0, Math.floor(this.el.scrollTop / this.rowHeight) - OVERSCAN);
    const last = Math.min(this.total < 0 ? PAGE : this.total, Math.ceil((this.el.scrollTop + height) / this.rowHeight) + OVERSCAN);
    return [Math.min(first, last), last];
  }

  render(): void {
    const css = getComputedStyle(this.el).getPropertyValue("--row-height");
    const px = parseFloat(css);
    if (px > 0) this.rowHeight = px;
    this.spacer.style.height = `${this.size * this.rowHeight}px`;
    const [first, last] = this.range();
    for (let page = Math.floor(first / PAGE); page * PAGE < Math.max(last, 1); page++) {
      if (!this.fresh.has(page) && !this.loading.has(page) && !this.failedPages.has(page)) void this.load(page);
    }
    const focused = document.activeElement instanceof HTMLElement && this.rows.contains(document.activeElement);
    // Rows are kept by email id and updated in place, so an element (and a test's reference to it)
    // lives as long as its row stays on screen; only rows scrolling in or out are made or dropped.
    const wanted: HTMLElement[] = [];
    const keep = new Map<string, HTMLElement>();
    for (let i = first; i < last; i++) {
      const id = this.ids[i];
      const email = id ? this.emails.get(id) : undefined;
      const key = email ? `e:${email.id}` : `p:${i}`;
      let row = this.rowEls.get(key);
      if (!row) row = email ? this.makeRow(email) : h("div", { className: "row placeholder", "aria-hidden": "true" }, "Loading…");
      if (email) this.updateRow(row, email, i);
      row.style.top = `${i * this.rowHeight}px`;
      keep.set(key, row);
      wanted.push(row);
    }
    for (const [key, row] of this.rowEls) if (!keep.has(key)) row.remove();
    this.rowEls = keep;
    wanted.forEach((row, k) => {
      if (this.rows.children[k] !== row) this.rows.insertBefore(row, this.rows.children[k] || null);
    });
    if (this.total === 0) this.status.textContent = "No messages";
    else if (this.failed) this.status.textContent = "Could not load messages: scroll or refresh to retry";
    else this.status.textContent = "";
    if (focused) this.focusCursor();
  }

  /** A row's elements, made once; {@link updateRow} fills them. */
  private makeRow(e: EmailSummary): HTMLElement {
    const box = h("input", { type: "checkbox", className: "row-select", tabindex: "-1" });
    const row = h("div", { role: "listitem", testid: "message-row", "data-email-id": e.id, draggable: "true" },
      box,
      h("span", { className: "row-from" }, h("span", { className: "row-people" }), h("span", { className: "row-count" })),
      h("span", { className: "row-date" }),
      h("span", { className: "row-subject", testid: "message-subject" }),
      h("span", { className: "row-icons", "aria-hidden": "true" },
        h("span", { className: "badge", title: "Has attachments" }, "att"),
        h("span", { className: "star", title: "Flagged" }, "★")),
      h("span", { className: "row-preview" }));
    const index = () => Number(row.dataset.index);
    box.addEventListener("click", (ev) => {
      ev.stopPropagation();
      this.toggle(e.id, index(), (ev as MouseEvent).shiftKey);
    });
    row.addEventListener("click", (ev) => {
      const m = ev as MouseEvent;
      if (m.ctrlKey || m.metaKey) return this.toggle(e.id, index(), false);
      if (m.shiftKey) return this.toggle(e.id, index(), true);
      this.cursor = index();
      this.on.open(e.id);
    });
    row.addEventListener("dragstart", (ev) => {
      const ids = this.on.dragIds(e.id);
      ev.dataTransfer?.setData("application/x-postern-emails", JSON.stringify(ids));
      ev.dataTransfer?.setData("text/plain", `${ids.length} message(s)`);
      if (ev.dataTransfer) ev.dataTransfer.effectAllowed = "move";
    });
    return row;
  }

  private updateRow(row: HTMLElement, e: EmailSummary, index: number): void {
    const unread = !e.keywords["$seen"];
    const flagged = !!e.keywords["$flagged"];
    const people = (this.query?.showTo ? addressLabel(e.to) : addressLabel(e.from)) || "(nobody)";
    const selected = this.selected.has(e.id);
    const subject = e.subject || "(no subject)";
    const when = shortDate(e.receivedAt);
    row.className = `row${unread ? " unread" : ""}${flagged ? " flagged" : ""}${selected ? " checked" : ""}${e.id === this.openId ? " open" : ""}`;
    row.dataset.threadId = e.threadId;
    row.dataset.unread = unread ? "true" : "false";
    row.dataset.flagged = flagged ? "true" : "false";
    row.dataset.index = String(index);
    row.tabIndex = index === this.cursor || (this.cursor < 0 && index === 0) ? 0 : -1;
    row.setAttribute("aria-label", `${unread ? "Unread. " : ""}${flagged ? "Flagged. " : ""}${people}: ${subject}, ${when}`);
    if (e.id === this.openId) row.setAttribute("aria-current", "true");
    else row.removeAttribute("aria-current");
    const box = row.querySelector<HTMLInputElement>(".row-select")!;
    box.checked = selected;
    box.setAttribute("aria-label", `Select: ${subject}`);
    const text = (sel: string, value: string) => {
      const el = row.querySelector(sel)!;
      if (el.textContent !== value) el.textContent = value;
    };
    text(".row-people", people);
    text(".row-count", e.threadSize && e.threadSize > 1 ? ` ${e.threadSize}` : "");
    text(".row-date", when);
    text(".row-subject", subject);
    text(".row-preview", e.preview || "");
    (row.querySelector(".badge") as HTMLElement).hidden = !e.hasAttachment;
    (row.querySelector(".star") as HTMLElement).hidden = !flagged;
  }

  /** Select or unselect a row; with `range`, everything between the cursor and it. */
  toggle(id: string, index: number, range: boolean): void {
    if (range && this.cursor >= 0) {
      const [a, b] = [Math.min(this.cursor, index), Math.max(this.cursor, index)];
      for (let i = a; i <= b; i++) {
        const x = this.ids[i];
        if (x) this.selected.add(x);
      }
    } else if (this.selected.has(id)) {
      this.selected.delete(id);
    } else {
      this.selected.add(id);
    }
    this.cursor = index;
    this.render();
    this.on.selectionChanged();
  }

  selectAll(on: boolean): void {
    this.selected.clear();
    if (on) for (const id of this.ids) if (id) this.selected.add(id);
    this.render();
    this.on.selectionChanged();
  }

  /** Move the cursor by `delta` rows, scrolling it into view; returns the id under it. */
  move(delta: number): string | undefined {
    if (this.size === 0) return undefined;
    this.cursor = Math.max(0, Math.min(this.size - 1, (this.cursor < 0 ? -1 : this.cursor) + delta));
    const top = this.cursor * this.rowHeight;
    if (top < this.el.scrollTop) this.el.scrollTop = top;
    else if (top + this.rowHeight > this.el.scrollTop + this.el.clientHeight) {
      this.el.scrollTop = top + this.rowHeight - this.el.clientHeight;
    }
    this.render();
    this.focusCursor();
    return this.ids[this.cursor];
  }

  focusCursor(): void {
    const row = this.rows.querySelector<HTMLElement>(`[data-index="${this.cursor}"]`);
    row?.focus({ preventScroll: true });
  }

  setOpen(id: string): void {
    this.openId = id;
    const i = this.ids.indexOf(id);
    if (i >= 0) this.cursor = i;
    this.render();
  }

  private async loadPreviews(ids: string[]): Promise<void> {
    try {
      const r = await this.jmap.call<{ list: { id: string; preview: string }[] }>("Email/get", { ids, properties: ["preview"] });
      for (const p of r.list) {
        const e = this.emails.get(p.id);
        if (e) e.preview = p.preview || "";
      }
      this.render();
    } catch {
      /* rows without previews are still rows */
    }
  }

  private async load(page: number): Promise<void> {
    const q = this.query;
    if (!q) return;
    const generation = this.generation;
    this.loading.add(page);
    let responses: Invocation[] | null = null;
    try {
      responses = await this.jmap.request(pageCalls(this.jmap.accountId, q, page * PAGE));
    } catch (e) {
      if (generation !== this.generation) return;
      this.failed = true;
      this.failedPages.add(page);
      this.loading.delete(page);
      console.warn("message list page failed", e);
      this.render();
      if (page === 0) this.firstDone();
      return;
    }
    this.apply(page, q, generation, responses);
  }

  /** A page's responses ({@link pageCalls}, in that order) into the list, then the rows on screen. */
  private apply(page: number, q: ListQuery, generation: number, responses: Invocation[]): void {
    if (generation !== this.generation) return;
    let needPreview: string[] = [];
    try {
      const qr = unwrap(responses[0]);
      const gr = unwrap(responses[1]);
      const sizes = new Map<string, number>();
      if (q.collapseThreads && responses[2]) {
        for (const t of unwrap(responses[2]).list as { id: string; emailIds: string[] }[]) sizes.set(t.id, t.emailIds.length);
      }
      for (const e of gr.list as EmailSummary[]) {
        e.threadSize = sizes.get(e.threadId);
        const known = this.emails.get(e.id);
        e.preview = known?.preview ?? "";
        if (known?.preview === undefined) needPreview.push(e.id);
        this.emails.set(e.id, e);
      }
      if (this.queryState && qr.queryState !== this.queryState) {
        this.ids = []; // the query changed under us: other pages are stale
        this.fresh.clear();
      }
      this.fresh.add(page);
      this.queryState = qr.queryState;
      this.total = lengthAfter(qr, this.total, q.totalHint);
      qr.ids.forEach((id: string, i: number) => {
        this.ids[qr.position + i] = id;
      });
      if (this.ids.length > this.total) this.ids.length = this.total;
      this.failed = false;
      if (this.openId) this.cursor = Math.max(this.cursor, this.ids.indexOf(this.openId));
    } catch (e) {
      this.failed = true;
      this.failedPages.add(page);
      needPreview = [];
      console.warn("message list page failed", e);
    } finally {
      this.loading.delete(page);
    }
    this.render();
    this.on.selectionChanged();
    if (page === 0) this.firstDone();
    // previews after the rows are on screen: they never hold up the list
    if (needPreview.length) window.setTimeout(() => void this.loadPreviews(needPreview), 0);
  }
}
