/**
 * Address suggestions from past correspondents, and the suggestion list under an address field.
 *
 * In:   the JMAP client: the addresses the user wrote to (To/Cc/Bcc of the last messages in Sent)
 *       and heard from (From of the last messages received), read once per compose; then, for a
 *       query the recent ones do not answer, an `Email/query` on from/to for the typed text.
 * Out:  {@link Correspondents} (`match(text)`: the best candidates, most used first) and
 *       {@link attachSuggestions}: a listbox under an input that completes the address being typed.
 * Fails: a failed lookup leaves fewer suggestions; typing is never blocked.
 */

import type { AppContext } from "../context";
import { h } from "../dom";
import { SUBMISSION, MAIL, CORE } from "../jmap";
import { type EmailAddress, formatAddress, splitList } from "./model";

const RECENT = 250;
const SHOWN = 8;

interface Entry {
  address: EmailAddress;
  score: number;
}

const KEEP_MS = 10 * 60_000; // one read of the recent mail serves the composes of the next minutes
let cached: { accountId: string; at: number; people: Correspondents } | null = null;

export class Correspondents {
  /** The account's correspondents, read again after KEEP_MS (and never across accounts). */
  static of(ctx: AppContext): Correspondents {
    if (!cached || cached.accountId !== ctx.accountId || Date.now() - cached.at > KEEP_MS) {
      cached = { accountId: ctx.accountId, at: Date.now(), people: new Correspondents(ctx) };
    }
    return cached.people;
  }

  private entries = new Map<string, Entry>();
  private searched = new Set<string>();
  private loading: Promise<void> | null = null;

  constructor(private ctx: AppContext) {}

  private add(list: EmailAddress[] | null | undefined, weight: number, own: Set<string>): void {
    for (const a of list ?? []) {
      if (!a?.email) continue;
      const k = a.email.toLowerCase();
      if (own.has(k) || /^(no-?reply|mailer-daemon|postmaster)@/i.test(k)) continue;
      const e = this.entries.get(k);
      if (e) {
        e.score += weight;
        if (!e.address.name && a.name) e.address = { name: a.name, email: e.address.email };
      } else this.entries.set(k, { address: { name: a.name || null, email: a.email }, score: weight });
    }
  }

  private own(): Set<string> {
    return new Set(this.ctx.identities.map((i) => i.email.toLowerCase()));
  }

  /** Read the recent correspondents once (written-to counts more than heard-from). */
  load(): Promise<void> {
    if (this.loading) return this.loading;
    const sent = this.ctx.byRole.get("sent")?.id;
    const inbox = this.ctx.byRole.get("inbox")?.id;
    const acct = this.ctx.accountId;
    const calls: [string, Record<string, unknown>, string][] = [];
    const sort = [{ property: "receivedAt", isAscending: false }];
    if (sent) {
      calls.push(["Email/query", { accountId: acct, filter: { inMailbox: sent }, sort, limit: RECENT }, "s"],
        ["Email/get", { accountId: acct, "#ids": { resultOf: "s", name: "Email/query", path: "/ids" },
          properties: ["to", "cc", "bcc"] }, "sg"]);
    }
    if (inbox) {
      calls.push(["Email/query", { accountId: acct, filter: { inMailbox: inbox }, sort, limit: RECENT }, "i"],
        ["Email/get", { accountId: acct, "#ids": { resultOf: "i", name: "Email/query", path: "/ids" },
          properties: ["from", "replyTo"] }, "ig"]);
    }
    this.loading = calls.length ? this.ctx.jmap.request(calls, [CORE, MAIL, SUBMISSION]).then((out) => {
      const own = this.own();
      for (const [name, args, id] of out) {
        if (name !== "Email/get") continue;
        for (const e of (args.list as Record<string, EmailAddress[] | null>[]) ?? []) {
          if (id === "sg") {
            this.add(e.to, 3, own);
            this.add(e.cc, 2, own);
            this.add(e.bcc, 2, own);
          } else this.add(e.from, 1, own);
        }
      }
    }).catch(() => undefined) : Promise.resolve();
    return this.loading;
  }

  /** Ask the server about a prefix the recent mail did not answer (once per prefix). */
  async search(text: string): Promise<void> {
    const q = text.trim().toLowerCase();
    if (q.length < 2 || this.searched.has(q)) return;
    this.searched.add(q);
    try {
      const out = await this.ctx.jmap.request([
        ["Email/query", { accountId: this.ctx.accountId, filter: { operator: "OR", conditions: [{ from: q }, { to: q }] },
          sort: [{ property: "receivedAt", isAscending: false }], limit: 40 }, "q"],
        ["Email/get", { accountId: this.ctx.accountId, "#ids": { resultOf: "q", name: "Email/query", path: "/ids" },
          properties: ["from", "to", "cc"] }, "g"],
      ]);
      const own = this.own();
      const got = out.find((r) => r[0] === "Email/get");
      for (const e of (got?.[1].list as Record<string, EmailAddress[] | null>[]) ?? []) {
        for (const list of [e.from, e.to, e.cc]) {
          this.add((list ?? []).filter((a) => matches(a, q)), 0.5, own);
        }
      }
    } catch {
      /* no suggestions from the server this time */
    }
  }

  match(text: string, exclude: string[] = []): EmailAddress[] {
    const q = text.trim().toLowerCase();
    if (!q) return [];
    const skip = new Set(exclude.map((e) => e.toLowerCase()));
    return [...this.entries.values()]
      .filter((e) => !skip.has(e.address.email.toLowerCase()) && matches(e.address, q))
      .sort((a, b) => b.score - a.score || a.address.email.localeCompare(b.address.email))
      .slice(0, SHOWN)
      .map((e) => e.address);
  }
}

function matches(a: EmailAddress, q: string): boolean {
  const email = a.email.toLowerCase();
  if (email.startsWith(q) || email.includes(`.${q}`) || email.split("@")[1]?.startsWith(q)) return true;
  return (a.name ?? "").toLowerCase().split(/[\s,."']+/).some((w) => w && w.startsWith(q)) ||
    (a.name ?? "").toLowerCase().startsWith(q);
}

/** The piece of an address field being typed: after the last comma or semicolon. */
function current(value: string): { head: string; tail: string } {
  const pieces = splitList(value);
  const tail = pieces[pieces.length - 1] ?? "";
  return { head: value.slice(0, value.length - tail.length), tail };
}

let listboxes = 0;

/** A listbox of suggestions under `input` (ARIA combobox pattern); returns the element to place after it. */
export function attachSuggestions(input: HTMLInputElement, people: Correspondents, onPick: () => void): HTMLElement {
  const id = `compose-suggestions-${++listboxes}`;
  const box = h("ul", { id, role: "listbox", className: "compose-suggestions", testid: "compose-suggestions", hidden: true });
  input.setAttribute("role", "combobox");
  input.setAttribute("aria-autocomplete", "list");
  input.setAttribute("aria-controls", id);
  input.setAttribute("aria-expanded", "false");
  input.autocomplete = "off";
  let shown: EmailAddress[] = [];
  let active = -1;
  let timer = 0;

  const close = (): void => {
    box.hidden = true;
    shown = [];
    active = -1;
    input.setAttribute("aria-expanded", "false");
    input.removeAttribute("aria-activedescendant");
  };
  const pick = (a: EmailAddress): void => {
    const { head } = current(input.value);
    input.value = `${head}${head && !/\s$/.test(head) ? " " : ""}${formatAddress(a)}, `;
    close();
    input.focus();
    onPick();
  };
  const render = (): void => {
    box.replaceChildren(...shown.map((a, i) => {
      const li = h("li", { id: `${id}-${i}`, role: "option", testid: "compose-suggestion", "data-email": a.email,
        "aria-selected": i === active ? "true" : "false", className: i === active ? "active" : "" },
      a.name ? `${a.name} <${a.email}>` : a.email);
      li.addEventListener("mousedown", (e) => {
        e.preventDefault(); // before the input's blur
        pick(a);
      });
      return li;
    }));
    box.hidden = shown.length === 0;
    input.setAttribute("aria-expanded", String(!box.hidden));
    if (active >= 0) input.setAttribute("aria-activedescendant", `${id}-${active}`);
    else input.removeAttribute("aria-activedescendant");
  };
  const update = (): void => {
    const { head, tail } = current(input.value);
    const typed = tail.trim();
    if (typed.length < 1) return close();
    const already = splitList(head).map((p) => (/<([^>]*)>/.exec(p)?.[1] ?? p).trim());
    shown = people.match(typed, already);
    active = shown.length ? 0 : -1;
    render();
    if (shown.length < 3 && typed.length >= 2) {
      window.clearTimeout(timer);
      timer = window.setTimeout(() => {
        void people.search(typed).then(() => {
          if (current(input.value).tail.trim() !== typed || document.activeElement !== input) return;
          shown = people.match(typed, already);
          active = shown.length ? 0 : -1;
          render();
        });
      }, 250);
    }
  };
  input.addEventListener("focus", () => void people.load());
  input.addEventListener("input", () => {
    void people.load().then(update);
  });
  input.addEventListener("blur", () => close());
  input.addEventListener("keydown", (e) => {
    if (box.hidden || !shown.length) return;
    if (e.key === "ArrowDown" || e.key === "ArrowUp") {
      e.preventDefault();
      active = (active + (e.key === "ArrowDown" ? 1 : shown.length - 1)) % shown.length;
      render();
    } else if ((e.key === "Enter" || e.key === "Tab") && active >= 0) {
      e.preventDefault();
      pick(shown[active]);
    } else if (e.key === "Escape") {
      e.stopPropagation();
      close();
    }
  });
  return box;
}
