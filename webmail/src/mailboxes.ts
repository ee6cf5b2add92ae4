/**
 * Mailboxes: fetched with Mailbox/get, ordered special-use first then by sortOrder and name,
 * nested by parentId, each with its unread count.
 *
 * In:   the account id; a Mailbox/get response; the selected mailbox id; callbacks for selecting and
 *       dropping emails.
 * Out:  {@link mailboxCall} (the Mailbox/get invocation, for the caller's batch), {@link mailboxesOf}
 *       (its response as the list by id), {@link sortedTree} (display order with depth),
 *       {@link renderMailboxes} (the `mailbox-list` nav).
 * Fails: Mailbox/get errors propagate (the caller shows them).
 */

import type { Mailbox } from "./context";
import { h, clear } from "./dom";
import { type Invocation, unwrap } from "./jmap";

/** Special-use mailboxes first, in the order people expect them (RFC 8621 §2 roles). */
const ROLE_ORDER = ["inbox", "drafts", "sent", "archive", "junk", "trash"];

const PROPERTIES = ["id", "name", "parentId", "role", "sortOrder", "totalEmails", "unreadEmails", "totalThreads",
  "unreadThreads", "myRights", "isSubscribed"];

export interface Mailboxes {
  mailboxes: Map<string, Mailbox>;
  state: string;
}

/** Mailbox/get of every mailbox, as one invocation of a batch (the first list rides with it). */
export function mailboxCall(accountId: string, callId = "m"): Invocation {
  return ["Mailbox/get", { accountId, ids: null, properties: PROPERTIES }, callId];
}

/** A Mailbox/get response as the mailboxes by id; a JmapError for an "error" response. */
export function mailboxesOf(resp: Invocation): Mailboxes {
  const r = unwrap(resp) as { list: Mailbox[]; state: string };
  return { mailboxes: new Map(r.list.map((m) => [m.id, m])), state: r.state };
}

export function byRole(mailboxes: Map<string, Mailbox>): Map<string, Mailbox> {
  const out = new Map<string, Mailbox>();
  for (const m of mailboxes.values()) if (m.role && !out.has(m.role)) out.set(m.role, m);
  return out;
}

function rank(m: Mailbox): number {
  const i = m.role ? ROLE_ORDER.indexOf(m.role) : -1;
  return i < 0 ? ROLE_ORDER.length : i;
}

function compare(a: Mailbox, b: Mailbox): number {
  return rank(a) - rank(b) || a.sortOrder - b.sortOrder || a.name.localeCompare(b.name);
}

export interface TreeItem {
  mailbox: Mailbox;
  depth: number;
  path: string; // names from the top, "/" between levels
}

/** Display order: each mailbox followed by its children, depth-first; orphans (parent unknown) at the top level. */
export function sortedTree(mailboxes: Map<string, Mailbox>): TreeItem[] {
  const children = new Map<string | null, Mailbox[]>();
  for (const m of mailboxes.values()) {
    const parent = m.parentId && mailboxes.has(m.parentId) ? m.parentId : null;
    if (!children.has(parent)) children.set(parent, []);
    children.get(parent)!.push(m);
  }
  const out: TreeItem[] = [];
  const walk = (parent: string | null, depth: number, prefix: string) => {
    for (const m of (children.get(parent) || []).sort(compare)) {
      const path = prefix ? `${prefix}/${m.name}` : m.name;
      out.push({ mailbox: m, depth, path });
      if (depth < 32) walk(m.id, depth + 1, path); // maxMailboxDepth: a cycle cannot recurse forever
    }
  };
  walk(null, 0, "");
  return out;
}

/** The name people see: INBOX as "Inbox". */
export function displayName(m: Mailbox): string {
  return m.role === "inbox" ? "Inbox" : m.name;
}

export interface MailboxListHandlers {
  select(id: string): void;
  drop(mailboxId: string, emailIds: string[]): void;
}

interface Rendered {
  list: HTMLUListElement;
  items: Map<string, HTMLLIElement>;
  on: MailboxListHandlers;
}

const rendered = new WeakMap<HTMLElement, Rendered>();

/** The `mailbox-list`: one link per mailbox, kept by id and updated in place (so an element, and
 * a test's reference to it, survives a refresh), in {@link sortedTree} order, indented by depth. */
export function renderMailboxes(nav: HTMLElement, mailboxes: Map<string, Mailbox>, selected: string,
                                on: MailboxListHandlers): void {
  let r = rendered.get(nav);
  if (!r) {
    clear(nav);
    r = { list: h("ul", { className: "mailboxes", role: "list" }), items: new Map(), on };
    nav.appendChild(r.list);
    rendered.set(nav, r);
  }
  r.on = on;
  const state = r;
  const keep = new Map<string, HTMLLIElement>();
  const wanted: HTMLLIElement[] = [];
  for (const { mailbox: m, depth, path } of sortedTree(mailboxes)) {
    let li = state.items.get(m.id);
    if (!li) li = makeItem(m.id, state);
    updateItem(li, m, depth, path, m.id === selected);
    keep.set(m.id, li);
    wanted.push(li);
  }
  for (const [id, li] of state.items) if (!keep.has(id)) li.remove();
  state.items = keep;
  wanted.forEach((li, k) => {
    if (state.list.children[k] !== li) state.list.insertBefore(li, state.list.children[k] || null);
  });
}

function makeItem(id: string, state: Rendered): HTMLLIElement {
  const link = h("a", { href: `#/mailbox/${encodeURIComponent(id)}`, className: "mailbox", testid: "mailbox", "data-id": id },
    h("span", { className: "mailbox-name" }),
    h("span", { className: "mailbox-unread", testid: "mailbox-unread", "aria-hidden": "true" }));
  link.addEventListener("click", (ev) => {
    ev.preventDefault();
    state.on.select(id);
  });
  // Drag and drop: message rows carry their ids as "application/x-postern-emails"
  link.addEventListener("dragover", (ev) => {
    if (ev.dataTransfer?.types.includes("application/x-postern-emails")) {
      ev.preventDefault();
      link.classList.add("drop-target");
    }
  });
  link.addEventListener("dragleave", () => link.classList.remove("drop-target"));
  link.addEventListener("drop", (ev) => {
    ev.preventDefault();
    link.classList.remove("drop-target");
    const raw = ev.dataTransfer?.getData("application/x-postern-emails") || "[]";
    try {
      const ids = JSON.parse(raw);
      if (Array.isArray(ids) && ids.length) state.on.drop(id, ids.map(String));
    } catch {
      /* not ours */
    }
  });
  return h("li", {}, link);
}

function updateItem(li: HTMLLIElement, m: Mailbox, depth: number, path: string, selected: boolean): void {
  const link = li.firstElementChild as HTMLAnchorElement;
  const unread = m.unreadEmails || 0;
  link.className = `mailbox${selected ? " selected" : ""}${unread ? " has-unread" : ""}`;
  link.dataset.role = m.role || "";
  link.dataset.name = m.name;
  link.dataset.path = path;
  if (selected) link.setAttribute("aria-current", "page");
  else link.removeAttribute("aria-current");
  link.setAttribute("aria-label", unread ? `${displayName(m)}, ${unread} unread` : displayName(m));
  link.style.paddingLeft = `${0.75 + depth}rem`;
  const name = link.querySelector(".mailbox-name")!;
  if (name.textContent !== displayName(m)) name.textContent = displayName(m);
  const count = link.querySelector<HTMLElement>(".mailbox-unread")!;
  count.dataset.count = String(unread);
  const text = unread ? String(unread) : "";
  if (count.textContent !== text) count.textContent = text;
}
