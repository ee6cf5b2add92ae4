/**
 * Postern Mail: the browser app's shell. Signs in, then lays out the mailboxes, the message list,
 * the reader and the actions, and routes between them by the URL's hash (`#/mailbox/<id>`,
 * `#/email/<id>`), so deep links need no server rule.
 *
 * Sign-in to the first row is three requests: POST /auth/token, GET the session, and one API request
 * carrying Mailbox/get with the list's first page (Email/query + Email/get by result reference) of
 * the mailbox the URL names, or else of the inbox as this browser last saw its id (a mailbox id is
 * not secret; kept per account in localStorage). Without a remembered id (the first visit), or when
 * it is no longer the inbox, the page is a fourth request; if that API request fails, Mailbox/get
 * is asked alone and the list fetches (or reports) its page itself. Identities, the quota, the rows' previews
 * and push come after the first row is on screen (identities and quota in one request).
 *
 * In:   the page (static/index.html), the HTTPS front's JMAP API on this origin.
 * Out:  the running app. The bearer token lives in this module's memory only: a reload, a
 *       sign-out or the token's expiry goes back to the sign-in page.
 * Fails: a 401 anywhere (expired or revoked token) -> sign-in with "Your session expired";
 *       other failures are shown in the status toast and leave the app usable.
 */

import { openCompose } from "./compose/index";
import type { AppContext, Identity, Mailbox } from "./context";
import { h, clear, humanSize } from "./dom";
import { type Invocation, Jmap, JmapError, QUOTA, SUBMISSION, type Token, Unauthorized, CORE, MAIL, unwrap } from "./jmap";
import { byRole, displayName, mailboxCall, mailboxesOf, type Mailboxes, renderMailboxes, sortedTree } from "./mailboxes";
import { type ListQuery, MessageList, pageCalls } from "./list";
import { Reader, RemoteImages, type ReaderEmail } from "./reader";
import { parseSearch } from "./search";
import { showSignIn } from "./signin";
import { notify } from "./toast";
import * as actions from "./actions";
import { Push } from "./push";
import { installShortcuts } from "./keys";
import { openSettings } from "./settings/index";
import { unsubscribe } from "./unsubscribe";

const root = document.getElementById("app")!;

type View = "message" | "thread";

interface QuotaItem {
  used: number;
  hardLimit: number;
  resourceType: string;
  name?: string;
}

/** The inbox's id as this browser last saw it, per account: the first list rides with Mailbox/get. */
const INBOX_KEY = "postern.inbox.";

function rememberedInbox(accountId: string): string {
  try {
    return localStorage.getItem(INBOX_KEY + accountId) || "";
  } catch {
    return "";
  }
}

function rememberInbox(accountId: string, id: string): void {
  try {
    if (id) localStorage.setItem(INBOX_KEY + accountId, id);
    else localStorage.removeItem(INBOX_KEY + accountId);
  } catch {
    /* storage is optional: the next sign-in takes one request more */
  }
}

class App {
  readonly ctx: AppContext;
  private nav = h("nav", { className: "sidebar", testid: "mailbox-list", "aria-label": "Mailboxes", id: "mailboxes" });
  private list: MessageList;
  private reader: Reader;
  private push: Push;
  private mailboxId = "";
  private view: View;
  private search: Record<string, unknown> | null = null;
  private searchInput!: HTMLInputElement;
  private quota!: HTMLElement;
  private toolbar!: HTMLElement;
  private moveMenu!: HTMLElement;
  private expiry = 0;
  private expiryWarning = 0;
  private refreshTimer = 0;
  private stopped = false;
  private removeShortcuts: () => void = () => {};
  /** the first page of a list, fetched in the sign-in batch, until showMailbox takes it */
  private prefetched: { mailboxId: string; view: View; responses: Invocation[] } | null = null;
  /** the Mailbox state of the last Mailbox/get (what the push socket's opening is compared with) */
  private mailboxState = "";

  constructor(readonly jmap: Jmap, private onSignOut: (message: string) => void) {
    this.view = (localStorage.getItem("postern.view") as View) === "thread" ? "thread" : "message";
    this.ctx = {
      jmap, session: jmap.session, accountId: jmap.accountId, mailboxes: new Map(), byRole: new Map(),
      identities: [], notify, refresh: () => this.refresh(), openEmail: (id) => this.go(`#/email/${encodeURIComponent(id)}`),
    };
    this.list = new MessageList(jmap, {
      open: (id) => {
        // a draft opens in compose (webcompose's "draft" mode), everything else in the reader
        if (!this.search && this.ctx.mailboxes.get(this.mailboxId)?.role === "drafts") {
          openCompose(this.ctx, { mode: "draft", emailId: id });
        } else {
          this.go(`#/email/${encodeURIComponent(id)}`);
        }
      },
      selectionChanged: () => this.updateToolbar(),
      dragIds: (id) => (this.list.selected.has(id) ? [...this.list.selected] : [id]),
    });
    this.reader = new Reader(jmap, new RemoteImages(jmap.username), notify, {
      unsubscribe: (email) => void this.unsubscribe(email),
      back: () => this.go(`#/mailbox/${encodeURIComponent(this.mailboxId)}`),
    });
    this.push = new Push(jmap, () => this.refreshSoon(), () => void this.catchUp());
  }

  async start(): Promise<void> {
    this.layout();
    const left = Math.max(0, this.jmap.expiresAt - Date.now());
    this.expiry = window.setTimeout(() => this.signOut("Your session expired: sign in again."), left);
    if (left > 3 * 60_000) {
      this.expiryWarning = window.setTimeout(() => notify("Your session ends in 2 minutes: you will need to sign in again."),
        left - 2 * 60_000);
    }
    await this.loadFirst();
    window.addEventListener("hashchange", this.onHash);
    this.removeShortcuts = installShortcuts(this.shortcuts());
    await this.route();
    await this.list.shown();
    if (this.stopped) return;
    void this.loadAccount();
    this.push.start();
  }

  /** One request: Mailbox/get and the first page of the list the app is about to show (the mailbox
   * in the URL, else the remembered inbox), so the first rows need no request of their own. */
  private async loadFirst(): Promise<void> {
    const m = /^#\/mailbox\/(.+)$/.exec(location.hash);
    const guess = m ? decodeURIComponent(m[1]) : rememberedInbox(this.jmap.accountId);
    const calls: Invocation[] = [mailboxCall(this.jmap.accountId)];
    if (guess) calls.push(...pageCalls(this.jmap.accountId, this.listQuery(guess), 0));
    let responses: Invocation[];
    try {
      responses = await this.jmap.request(calls);
    } catch (e) {
      // the list's part may be what failed (e.g. past the function's timeout in a huge mailbox):
      // the mailboxes alone, and the list asks for its page itself (and says if it cannot)
      if (e instanceof Unauthorized || calls.length === 1) throw e;
      responses = await this.jmap.request(calls.slice(0, 1));
    }
    this.setMailboxes(mailboxesOf(responses[0]));
    const inbox = this.ctx.byRole.get("inbox")?.id || "";
    rememberInbox(this.jmap.accountId, inbox);
    // an "error" response (a mailbox since deleted) is not taken: the list asks again by itself
    if (guess && this.ctx.mailboxes.has(guess) && responses.slice(1).every((r) => r[0] !== "error")) {
      this.prefetched = { mailboxId: guess, view: this.view, responses: responses.slice(1) };
    }
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.expiry);
    clearTimeout(this.expiryWarning);
    clearTimeout(this.refreshTimer);
    this.push.stop();
    this.removeShortcuts();
    window.removeEventListener("hashchange", this.onHash);
  }

  async signOut(message = ""): Promise<void> {
    if (this.stopped) return;
    this.stop();
    if (!message) await this.jmap.signOut();
    this.onSignOut(message);
  }

  // --- layout ------------------------------------------------------------------------------
  private layout(): void {
    clear(root);
    document.title = "Postern Mail";
    this.searchInput = h("input", {
      type: "search", testid: "search-input", id: "search", placeholder: "Search mail", "aria-label": "Search mail",
      autocomplete: "off", title: "from: to: subject: has:attachment after:YYYY-MM-DD before:YYYY-MM-DD",
    });
    const searchForm = h("form", { className: "search", role: "search" }, this.searchInput);
    searchForm.addEventListener("submit", (ev) => {
      ev.preventDefault();
      this.runSearch(this.searchInput.value);
    });
    this.searchInput.addEventListener("keydown", (ev) => {
      if (ev.key === "Escape") {
        this.searchInput.value = "";
        this.runSearch("");
      }
    });
    this.quota = h("span", { className: "quota", testid: "quota", "aria-label": "Storage used" });
    const top = h("header", { className: "topbar" },
      h("button", {
        type: "button", className: "menu-toggle", "aria-label": "Mailboxes", "aria-controls": "mailboxes",
        "aria-expanded": "false", onclick: (ev: Event) => this.toggleMenu(ev.currentTarget as HTMLElement),
      }, "☰"),
      h("span", { className: "brand" }, "Postern Mail"),
      searchForm,
      this.quota,
      h("span", { className: "user", title: this.jmap.username }, this.jmap.username),
      h("button", { type: "button", testid: "action-settings", onclick: () => openSettings(this.ctx) }, "Settings"),
      h("button", { type: "button", testid: "signout", onclick: () => void this.signOut() }, "Sign out"));

    this.toolbar = h("div", { className: "toolbar", role: "toolbar", "aria-label": "Message actions" });
    this.moveMenu = h("ul", { className: "menu", role: "menu", "aria-label": "Move to", id: "move-menu" });
    this.moveMenu.hidden = true;
    const listPane = h("section", { className: "list-pane", "aria-label": "Message list" },
      h("div", { className: "list-head" },
        h("input", {
          type: "checkbox", className: "select-all", "aria-label": "Select all loaded messages",
          onchange: (ev: Event) => this.list.selectAll((ev.target as HTMLInputElement).checked),
        }),
        h("h1", { className: "list-title", id: "list-title" }, ""),
        h("label", { className: "view-toggle" }, h("input", {
          type: "checkbox", checked: this.view === "thread", "aria-label": "Group by conversation",
          onchange: (ev: Event) => this.setView((ev.target as HTMLInputElement).checked ? "thread" : "message"),
        }), " Conversations")),
      this.list.el);
    const side = h("div", { className: "side" },
      h("button", { type: "button", className: "primary compose-button", testid: "action-compose",
        onclick: () => openCompose(this.ctx, { mode: "new" }) }, "Compose"),
      this.nav);
    const skip = h("a", { href: "#", className: "skip-link" }, "Skip to the message list");
    skip.addEventListener("click", (ev) => {
      ev.preventDefault();
      this.list.focusCursor();
      if (!this.list.el.contains(document.activeElement)) this.list.el.focus();
    });
    root.appendChild(h("div", { className: "shell" }, skip, top,
      h("div", { className: "main" }, side,
        h("div", { className: "content" }, this.toolbar, this.moveMenu,
          h("div", { className: "panes" }, listPane, this.reader.el)))));
    this.buildToolbar();
  }

  private toggleMenu(button: HTMLElement): void {
    const open = !document.body.classList.contains("menu-open");
    document.body.classList.toggle("menu-open", open);
    button.setAttribute("aria-expanded", String(open));
    if (open) this.nav.querySelector<HTMLElement>("a.mailbox")?.focus();
  }

  private buildToolbar(): void {
    const b = (testid: string, label: string, run: () => void, title = "") =>
      h("button", { type: "button", testid, title: title || label, onclick: run }, label);
    clear(this.toolbar);
    this.toolbar.append(
      b("action-reply", "Reply", () => this.compose("reply"), "Reply (r)"),
      b("action-reply-all", "Reply all", () => this.compose("replyAll"), "Reply all (a)"),
      b("action-forward", "Forward", () => this.compose("forward"), "Forward (f)"),
      b("action-edit-draft", "Edit draft", () => this.compose("draft"), "Edit this draft"),
      h("span", { className: "sep", "aria-hidden": "true" }),
      b("action-archive", "Archive", () => void this.archive(), "Archive (e)"),
      b("action-delete", "Delete", () => void this.remove(), "Delete (#)"),
      b("action-spam", "Spam", () => void this.spam(true), "Spam (!)"),
      b("action-notspam", "Not spam", () => void this.spam(false), "Not spam"),
      h("button", {
        type: "button", testid: "action-move", "aria-haspopup": "menu", "aria-controls": "move-menu",
        "aria-expanded": "false", title: "Move to (v)", onclick: () => this.openMoveMenu(),
      }, "Move…"),
      b("action-flag", "Flag", () => void this.toggleKeyword("$flagged"), "Flag (s)"),
      b("action-read-toggle", "Mark unread", () => void this.toggleKeyword("$seen"), "Read / unread (u)"),
      b("action-empty", "Empty", () => void this.empty(), "Empty this mailbox"),
    );
    this.updateToolbar();
  }

  private updateToolbar(): void {
    const all = document.querySelector<HTMLInputElement>(".select-all");
    if (all) {
      const n = this.list.selected.size;
      all.checked = n > 0 && n >= this.list.size;
      all.indeterminate = n > 0 && n < this.list.size;
    }
    const targets = this.targets();
    const mb = this.ctx.mailboxes.get(this.mailboxId);
    const role = this.search ? "" : mb?.role || "";
    const one = this.reader.email;
    const set = (id: string, enabled: boolean, visible = true, label?: string) => {
      const el = this.toolbar.querySelector<HTMLButtonElement>(`[data-testid="${id}"]`);
      if (!el) return;
      el.disabled = !enabled;
      el.hidden = !visible;
      if (label) el.textContent = label;
    };
    const any = targets.length > 0;
    set("action-reply", !!one && this.list.selected.size === 0);
    set("action-reply-all", !!one && this.list.selected.size === 0);
    set("action-forward", !!one && this.list.selected.size === 0);
    set("action-edit-draft", !!one && this.list.selected.size === 0, !!one?.keywords["$draft"]);
    set("action-archive", any && role !== "archive" && this.ctx.byRole.has("archive"));
    set("action-delete", any);
    set("action-spam", any, role !== "junk");
    set("action-notspam", any, role === "junk" || role === "");
    set("action-move", any);
    const emails = targets.map((id) => this.list.emails.get(id) || (one?.id === id ? one : undefined));
    const allFlagged = any && emails.every((e) => e?.keywords["$flagged"]);
    const allRead = any && emails.every((e) => e?.keywords["$seen"]);
    set("action-flag", any, true, allFlagged ? "Unflag" : "Flag");
    set("action-read-toggle", any, true, allRead ? "Mark unread" : "Mark read");
    set("action-empty", this.list.size > 0, role === "trash" || role === "junk",
      role === "junk" ? "Empty Junk" : "Empty Trash");
  }

  // --- data ----------------------------------------------------------------------------------
  /** Mailbox/get, with Quota/get in the same request when the account has quotas. */
  private async loadMailboxes(withQuota = false): Promise<void> {
    const calls: Invocation[] = [mailboxCall(this.jmap.accountId)];
    const quota = withQuota && this.jmap.has(QUOTA);
    if (quota) calls.push(["Quota/get", { accountId: this.jmap.accountId, ids: null }, "qu"]);
    const responses = await this.jmap.request(calls, quota ? [CORE, MAIL, QUOTA] : [CORE, MAIL]);
    this.setMailboxes(mailboxesOf(responses[0]));
    if (quota) this.showQuotaOf(responses[1]);
  }

  private setMailboxes({ mailboxes, state }: Mailboxes): void {
    this.mailboxState = state;
    this.ctx.mailboxes.clear();
    for (const [k, v] of mailboxes) this.ctx.mailboxes.set(k, v);
    this.ctx.byRole.clear();
    for (const [k, v] of byRole(mailboxes)) this.ctx.byRole.set(k, v);
    this.renderMailboxes();
  }

  private renderMailboxes(): void {
    renderMailboxes(this.nav, this.ctx.mailboxes, this.search ? "" : this.mailboxId, {
      select: (id) => {
        document.body.classList.remove("menu-open");
        this.go(`#/mailbox/${encodeURIComponent(id)}`);
      },
      drop: (to, ids) => void this.moveTo(to, ids),
    });
    const inbox = this.ctx.byRole.get("inbox");
    const unread = inbox?.unreadEmails || 0;
    document.title = unread ? `(${unread}) Postern Mail` : "Postern Mail";
  }

  /** What the shell needs beside the list, once the list is on screen: identities and the quota, one request. */
  private async loadAccount(): Promise<void> {
    const quota = this.jmap.has(QUOTA);
    const calls: Invocation[] = [["Identity/get", { accountId: this.jmap.accountId, ids: null }, "id"]];
    if (quota) calls.push(["Quota/get", { accountId: this.jmap.accountId, ids: null }, "qu"]);
    try {
      const responses = await this.jmap.request(calls, quota ? [CORE, MAIL, SUBMISSION, QUOTA] : [CORE, MAIL, SUBMISSION]);
      try {
        const r = unwrap(responses[0]) as { list: Identity[] };
        this.ctx.identities.splice(0, this.ctx.identities.length, ...r.list);
      } catch (e) {
        console.warn("Identity/get failed", e);
      }
      if (quota) this.showQuotaOf(responses[1]);
    } catch (e) {
      if (!(e instanceof Unauthorized)) console.warn("Identity/get, Quota/get failed", e);
    }
  }

  private showQuotaOf(resp: Invocation): void {
    try {
      const r = unwrap(resp) as { list: QuotaItem[] };
      const q = r.list.find((x) => x.resourceType === "octets") || r.list[0];
      if (!q) {
        this.quota.textContent = "";
        return;
      }
      const pct = q.hardLimit ? Math.min(100, Math.round((q.used / q.hardLimit) * 100)) : 0;
      const text = q.resourceType === "octets"
        ? `${humanSize(q.used)} of ${q.hardLimit ? humanSize(q.hardLimit) : "unlimited"}`
        : `${q.used} of ${q.hardLimit || "unlimited"}`;
      clear(this.quota);
      const meter = h("meter", { min: "0", max: "100", value: String(pct), "aria-hidden": "true" });
      this.quota.append(meter, h("span", {}, text));
      this.quota.setAttribute("aria-label", `Storage: ${text} used`);
      this.quota.dataset.used = String(q.used);
      this.quota.dataset.limit = String(q.hardLimit);
      this.quota.classList.toggle("full", pct >= 90);
    } catch (e) {
      console.warn("Quota/get failed", e);
    }
  }

  /** Something changed on the server (push, or our own write): mailboxes and quota (one request), the list. */
  refresh(): void {
    void this.loadMailboxes(true).catch(this.fail);
    this.list.refresh();
  }

  /** The push socket opened: refresh only when something changed since the mailboxes were read
   * (Mailbox/changes: new mail and flag changes change a mailbox's counts), not after every
   * sign-in, when the app has just read everything. */
  private async catchUp(): Promise<void> {
    if (!this.mailboxState) return this.refresh();
    try {
      const r = await this.jmap.call<{ created: string[]; updated: string[]; destroyed: string[]; hasMoreChanges: boolean }>(
        "Mailbox/changes", { sinceState: this.mailboxState, maxChanges: 256 });
      if (r.hasMoreChanges || r.created.length || r.updated.length || r.destroyed.length) this.refresh();
    } catch (e) {
      if (!(e instanceof Unauthorized)) this.refresh(); // cannotCalculateChanges and the like: read it all
    }
  }

  private refreshSoon(): void {
    clearTimeout(this.refreshTimer);
    this.refreshTimer = window.setTimeout(() => this.refresh(), 150);
  }

  // --- routing -------------------------------------------------------------------------------
  private onHash = () => void this.route();

  private go(hash: string): void {
    if (location.hash === hash) void this.route();
    else location.hash = hash;
  }

  private async route(): Promise<void> {
    const m = /^#\/(mailbox|email)\/(.+)$/.exec(location.hash);
    const kind = m?.[1];
    const id = m ? decodeURIComponent(m[2]) : "";
    if (kind === "email") {
      if (!this.mailboxId && !this.search) {
        this.showMailbox(this.ctx.byRole.get("inbox")?.id || "");
      }
      await this.openEmail(id);
      return;
    }
    const mailbox = kind === "mailbox" && this.ctx.mailboxes.has(id) ? id : this.ctx.byRole.get("inbox")?.id || "";
    if (mailbox !== this.mailboxId || this.search) {
      this.showMailbox(mailbox);
    }
    document.body.classList.remove("reading");
    this.reader.empty();
    this.list.setOpen("");
    this.updateToolbar();
  }

  /** The list of a mailbox in the current view (the same query whether prefetched or not). */
  private listQuery(id: string): ListQuery {
    const mb = this.ctx.mailboxes.get(id);
    return {
      filter: id ? { inMailbox: id } : {}, collapseThreads: this.view === "thread",
      showTo: mb?.role === "sent" || mb?.role === "drafts", totalHint: mb?.totalThreads,
    };
  }

  private showMailbox(id: string): void {
    this.mailboxId = id;
    this.search = null;
    this.searchInput.value = "";
    const mb = this.ctx.mailboxes.get(id);
    document.getElementById("list-title")!.textContent = mb ? displayName(mb) : "";
    const first = this.prefetched?.mailboxId === id && this.prefetched.view === this.view ? this.prefetched.responses : undefined;
    this.prefetched = null;
    this.list.setQuery(this.listQuery(id), first);
    this.renderMailboxes();
  }

  private runSearch(text: string): void {
    const filter = parseSearch(text);
    if (!filter) {
      this.showMailbox(this.mailboxId || this.ctx.byRole.get("inbox")?.id || "");
      return;
    }
    this.search = filter;
    document.getElementById("list-title")!.textContent = `Search: ${text}`;
    this.list.setQuery({ filter, collapseThreads: this.view === "thread", showTo: false });
    this.renderMailboxes();
    this.reader.empty();
    document.body.classList.remove("reading");
  }

  private setView(view: View): void {
    this.view = view;
    try {
      localStorage.setItem("postern.view", view);
    } catch {
      /* preferences are optional */
    }
    if (this.search) {
      this.list.setQuery({ filter: this.search, collapseThreads: view === "thread", showTo: false });
    } else {
      this.showMailbox(this.mailboxId);
    }
  }

  private async openEmail(id: string): Promise<void> {
    document.body.classList.add("reading");
    this.list.setOpen(id);
    try {
      const email = await this.reader.open(id);
      this.updateToolbar();
      if (email && !email.keywords["$seen"]) {
        email.keywords = { ...email.keywords, $seen: true };
        this.list.patch(id, email.keywords);
        this.updateToolbar();
        await actions.setKeyword(this.jmap, [id], "$seen", true);
        void this.loadMailboxes().catch(this.fail); // the unread count, before push says so
      }
    } catch (e) {
      this.fail(e);
    }
    this.updateToolbar();
  }

  // --- actions -------------------------------------------------------------------------------
  /** What an action applies to: the selected rows, or else the open message. */
  private targets(): string[] {
    if (this.list.selected.size) return [...this.list.selected];
    return this.reader.email ? [this.reader.email.id] : [];
  }

  /** The emails an action changes: in conversation view, every email of the selected threads here. */
  private async emailTargets(): Promise<string[]> {
    const ids = this.targets();
    if (this.view !== "thread" || !ids.length || !this.list.selected.size) return ids;
    return actions.expandThreads(this.jmap, ids, this.search ? null : this.mailboxId);
  }

  private fail = (e: unknown) => {
    if (e instanceof Unauthorized) return;
    notify(e instanceof JmapError || e instanceof actions.PartialFailure ? e.message : `Something went wrong: ${String(e)}`);
    console.warn(e);
  };

  private compose(mode: "reply" | "replyAll" | "forward" | "draft"): void {
    const email = this.reader.email;
    if (email) openCompose(this.ctx, { mode, emailId: email.id });
  }

  private afterRemoval(ids: string[], message: string): void {
    const openGone = this.reader.email && ids.includes(this.reader.email.id);
    let next: string | undefined;
    if (openGone) {
      const i = this.list.indexOf(this.reader.email!.id);
      next = this.list.idAt(i + 1) || this.list.idAt(i - 1);
    }
    this.list.removeLocally(ids);
    notify(message);
    if (openGone) {
      if (next && !ids.includes(next)) this.go(`#/email/${encodeURIComponent(next)}`);
      else this.go(`#/mailbox/${encodeURIComponent(this.mailboxId)}`);
    }
    this.updateToolbar();
    this.refreshSoon();
  }

  /** The mailbox the targets are in, for a move (null in a search: out of every mailbox). */
  private fromMailbox(): string | null {
    return this.search ? null : this.mailboxId || null;
  }

  async moveTo(to: string, ids?: string[], keywords: Record<string, boolean | null> = {}, verb = "Moved"): Promise<void> {
    try {
      const targets = ids || (await this.emailTargets());
      if (!targets.length) return;
      const done = await actions.move(this.jmap, targets, this.fromMailbox(), to, keywords);
      const name = this.ctx.mailboxes.get(to);
      const where = name ? displayName(name) : "";
      if (to !== this.mailboxId || this.search) this.afterRemoval(done, `${verb} ${done.length} message(s)${where ? ` to ${where}` : ""}`);
      else this.refreshSoon();
    } catch (e) {
      this.fail(e);
      this.refreshSoon();
    }
  }

  private async archive(): Promise<void> {
    const archive = this.ctx.byRole.get("archive");
    if (archive) await this.moveTo(archive.id, undefined, {}, "Archived");
  }

  private async remove(): Promise<void> {
    const trash = this.ctx.byRole.get("trash");
    const here = this.ctx.mailboxes.get(this.mailboxId);
    if (!this.search && (here?.role === "trash" || !trash)) {
      const ids = await this.emailTargets();
      if (!ids.length || !confirm(`Delete ${ids.length} message(s) for ever?`)) return;
      try {
        const done = await actions.destroy(this.jmap, ids);
        this.afterRemoval(done, `Deleted ${done.length} message(s)`);
      } catch (e) {
        this.fail(e);
        this.refreshSoon();
      }
      return;
    }
    await this.moveTo(trash!.id, undefined, {}, "Moved");
  }

  private async spam(isSpam: boolean): Promise<void> {
    const target = isSpam ? this.ctx.byRole.get("junk") : this.ctx.byRole.get("inbox");
    if (!target) return notify(isSpam ? "There is no Junk mailbox" : "There is no Inbox");
    // The move is the whole message: the server sets $junk / $notjunk on it and teaches the spam filter
    // (postern/junk.py, the rule IMAP moves follow too)
    await this.moveTo(target.id, undefined, {}, isSpam ? "Marked as spam:" : "Not spam:");
  }

  private async toggleKeyword(keyword: string): Promise<void> {
    const ids = this.targets();
    if (!ids.length) return;
    const emails = ids.map((id) => this.list.emails.get(id) || (this.reader.email?.id === id ? this.reader.email : undefined));
    const on = !emails.every((e) => e?.keywords[keyword]);
    try {
      const targets = await this.emailTargets();
      for (const e of emails) {
        if (!e) continue;
        const kw = { ...e.keywords };
        if (on) kw[keyword] = true;
        else delete kw[keyword];
        e.keywords = kw;
        this.list.patch(e.id, kw);
        if (this.reader.email?.id === e.id) this.reader.email.keywords = kw;
      }
      this.updateToolbar();
      await actions.setKeyword(this.jmap, targets, keyword, on);
      this.refreshSoon();
    } catch (e) {
      this.fail(e);
      this.refreshSoon();
    }
  }

  private async empty(): Promise<void> {
    const mb = this.ctx.mailboxes.get(this.mailboxId);
    if (!mb || (mb.role !== "trash" && mb.role !== "junk")) return;
    if (!confirm(`Delete every message in ${displayName(mb)} for ever?`)) return;
    try {
      const n = await actions.emptyMailbox(this.jmap, mb.id);
      notify(`Deleted ${n} message(s) from ${displayName(mb)}`);
      this.reader.empty();
      this.refresh();
    } catch (e) {
      this.fail(e);
      this.refreshSoon();
    }
  }

  private openMoveMenu(): void {
    const button = this.toolbar.querySelector<HTMLElement>('[data-testid="action-move"]')!;
    if (!this.moveMenu.hidden) return this.closeMoveMenu();
    clear(this.moveMenu);
    for (const { mailbox: m, depth, path } of sortedTree(this.ctx.mailboxes)) {
      if (m.id === this.mailboxId && !this.search) continue;
      const item = h("button", {
        type: "button", role: "menuitem", testid: "move-target", "data-name": m.name, "data-path": path,
        "data-role": m.role || "", "data-id": m.id, tabindex: "-1",
        onclick: () => {
          this.closeMoveMenu();
          void this.moveTo(m.id);
        },
      }, displayName(m));
      item.style.paddingLeft = `${0.75 + depth}rem`;
      this.moveMenu.appendChild(h("li", { role: "none" }, item));
    }
    this.moveMenu.hidden = false;
    button.setAttribute("aria-expanded", "true");
    const outside = (ev: MouseEvent) => {
      if (this.moveMenu.contains(ev.target as Node) || button.contains(ev.target as Node)) return;
      document.removeEventListener("mousedown", outside, true);
      this.closeMoveMenu();
    };
    document.addEventListener("mousedown", outside, true);
    const items = [...this.moveMenu.querySelectorAll<HTMLElement>("[role=menuitem]")];
    items[0]?.focus();
    this.moveMenu.onkeydown = (ev) => {
      const i = items.indexOf(document.activeElement as HTMLElement);
      if (ev.key === "ArrowDown") items[(i + 1) % items.length]?.focus();
      else if (ev.key === "ArrowUp") items[(i - 1 + items.length) % items.length]?.focus();
      else if (ev.key === "Escape") {
        this.closeMoveMenu();
        button.focus();
      } else return;
      ev.preventDefault();
    };
  }

  private closeMoveMenu(): void {
    this.moveMenu.hidden = true;
    this.toolbar.querySelector('[data-testid="action-move"]')?.setAttribute("aria-expanded", "false");
  }

  private async unsubscribe(email: ReaderEmail): Promise<void> {
    try {
      if (!confirm("Unsubscribe from this list?")) return;
      notify(await unsubscribe(this.jmap, email));
    } catch (e) {
      this.fail(e);
    }
  }

  private shortcuts(): Record<string, () => void> {
    const click = (id: string) => () => {
      const el = document.querySelector<HTMLButtonElement>(`[data-testid="${id}"]`);
      if (el && !el.disabled && !el.hidden) el.click();
    };
    return {
      ArrowDown: () => {
        if (document.activeElement?.closest?.(".message-list")) this.list.move(1);
      },
      ArrowUp: () => {
        if (document.activeElement?.closest?.(".message-list")) this.list.move(-1);
      },
      j: () => {
        const id = this.list.move(1);
        if (id && document.body.classList.contains("reading")) this.go(`#/email/${encodeURIComponent(id)}`);
      },
      k: () => {
        const id = this.list.move(-1);
        if (id && document.body.classList.contains("reading")) this.go(`#/email/${encodeURIComponent(id)}`);
      },
      o: () => {
        const id = this.list.idAt(this.list.cursor);
        if (id) this.go(`#/email/${encodeURIComponent(id)}`);
      },
      Enter: () => {
        const id = this.list.idAt(this.list.cursor);
        if (id && document.activeElement?.closest?.(".message-list")) this.go(`#/email/${encodeURIComponent(id)}`);
      },
      u: () => this.go(`#/mailbox/${encodeURIComponent(this.mailboxId)}`),
      Escape: () => {
        if (!this.moveMenu.hidden) this.closeMoveMenu();
        else if (document.body.classList.contains("reading")) this.go(`#/mailbox/${encodeURIComponent(this.mailboxId)}`);
      },
      x: () => {
        const id = this.list.idAt(this.list.cursor);
        if (id) this.list.toggle(id, this.list.cursor, false);
      },
      c: click("action-compose"),
      r: click("action-reply"),
      a: click("action-reply-all"),
      f: click("action-forward"),
      e: click("action-archive"),
      "#": click("action-delete"),
      Delete: click("action-delete"),
      "!": click("action-spam"),
      s: click("action-flag"),
      m: click("action-read-toggle"),
      v: click("action-move"),
      "/": () => this.searchInput.focus(),
      "?": () => notify("Keys: j/k next/previous, o open, u back, r reply, a reply all, f forward, c compose, "
        + "e archive, # delete, ! spam, s flag, m read/unread, v move, x select, / search"),
    };
  }
}

// --- boot ------------------------------------------------------------------------------------
let app: App | null = null;

async function boot(message = ""): Promise<void> {
  app?.stop();
  app = null;
  const token: Token = await showSignIn(root, message);
  const jmap = new Jmap(token);
  jmap.onUnauthorized = () => void app?.signOut("Your session expired: sign in again.");
  try {
    await jmap.loadSession();
  } catch (e) {
    return boot(e instanceof Unauthorized ? "Your session expired: sign in again." : "Cannot load your account: try again.");
  }
  const current = new App(jmap, (msg) => void boot(msg));
  app = current;
  try {
    await current.start();
  } catch (e) {
    if (!(e instanceof Unauthorized)) {
      console.warn(e);
      notify("Could not load your mailboxes: try again.");
    }
  }
}

export type { Mailbox };
void boot();
