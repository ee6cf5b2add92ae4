/**
 * Mailboxes: fetched with Mailbox/get, ordered special-use first then by sortOrder and name,
 * nested by parentId, each with its unread count.
 *
 * In:   the JMAP client; the selected mailbox id; callbacks for selecting and dropping emails.
 * Out:  {@link loadMailboxes} (the list by id), {@link sortedTree} (display order with depth),
 *       {@link renderMailboxes} (the `mailbox-list` nav).
 * Fails: Mailbox/get errors propagate (the caller shows them).
 */

import type { Mailbox } from "./context";
import { h, clear } from "./dom";
import type { Jmap } from "./jmap";

/** Special-use mailboxes first, in the order people expect them (RFC 8621 §2 roles). */
const ROLE_ORDER = ["inbox", "drafts", "sent", "archive", "junk", "trash"];

const PROPERTIES = ["id", "name", "parentId", "role", "sortOrder", "totalEmails", "unreadEmails", "totalThreads",
  "unreadThreads", "myRights", "isSubscribed"];

export async function loadMailboxes(jmap: Jmap): Promise<{ mailboxes: Map<string, Mailbox>; state: string }> {
  const r = await jmap.call<{ list: Mailbox[]; state: string }>("Mailbox/get", { ids: null, properties: PROPERTIES });
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

export function renderMailboxes(nav: HTMLElement, mailboxes: Map<string, Mailbox>, selected: string,
                                on: MailboxListHandlers): void {
  clear(nav);
  const list = h("ul", { className: "mailboxes", role: "list" });
  for (const { mailbox: m, depth, path } of sortedTree(mailboxes)) {
    const unread = m.unreadEmails || 0;
    const link = h("a", {
      href: `#/mailbox/${encodeURIComponent(m.id)}`,
      className: `mailbox${m.id === selected ? " selected" : ""}${unread ? " has-unread" : ""}`,
      testid: "mailbox",
      "data-role": m.role || "",
      "data-name": m.name,
      "data-path": path,
      "data-id": m.id,
      "aria-current": m.id === selected ? "page" : null,
      "aria-label": unread ? `${displayName(m)}, ${unread} unread` : displayName(m),
    },
    h("span", { className: "mailbox-name" }, displayName(m)),
    h("span", { className: "mailbox-unread", testid: "mailbox-unread", "data-count": unread, "aria-hidden": "true" },
      unread ? String(unread) : ""));
    link.style.paddingLeft = `${0.75 + depth * 1}rem`;
    link.addEventListener("click", (ev) => {
      ev.preventDefault();
      on.select(m.id);
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
        if (Array.isArray(ids) && ids.length) on.drop(m.id, ids.map(String));
      } catch {
        /* not ours */
      }
    });
    list.appendChild(h("li", {}, link));
  }
  nav.appendChild(list);
}
