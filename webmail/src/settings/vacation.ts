/**
 * The vacation reply: JMAP VacationResponse (RFC 8621 §8), the managed Sieve script's vacation part.
 *
 * In:   VacationResponse/get (the singleton).  Out: the section; Save sends VacationResponse/set
 *       with isEnabled, subject, textBody and the optional first and last day.
 * Fails: the server's refusal (no text, a multi-line subject, an end before the start) is said in
 *       the status line.
 */

import type { AppContext } from "../context";
import { h } from "../dom";
import { CORE, JmapError, VACATION } from "../jmap";
import { reason, setFailure, type Status } from "./status";

interface Vacation {
  isEnabled: boolean;
  fromDate: string | null;
  toDate: string | null;
  subject: string | null;
  textBody: string | null;
  htmlBody: string | null;
}

/** "2026-12-24T00:00:00Z" -> "2026-12-24" (the date input's value), or "". */
export function dayOf(utc: string | null): string {
  return utc && /^\d{4}-\d{2}-\d{2}/.test(utc) ? utc.slice(0, 10) : "";
}

/** A date input's day as the UTCDate of that day's start (from) or end (to) in the user's time zone. */
export function utcOf(day: string, end: boolean): string | null {
  if (!/^\d{4}-\d{2}-\d{2}$/.test(day)) return null;
  const [y, m, d] = day.split("-").map(Number);
  const t = end ? new Date(y, m - 1, d, 23, 59, 59) : new Date(y, m - 1, d, 0, 0, 0);
  return t.toISOString().replace(/\.\d{3}Z$/, "Z");
}

export function vacationSection(ctx: AppContext, status: Status): HTMLElement {
  const using = [CORE, VACATION];
  const enabled = h("input", { type: "checkbox", testid: "vacation-enabled", id: "vacation-enabled" });
  const subject = h("input", { type: "text", testid: "vacation-subject", id: "vacation-subject", maxlength: 998 });
  const body = h("textarea", { testid: "vacation-body", id: "vacation-body", rows: 5 });
  const from = h("input", { type: "date", testid: "vacation-from", id: "vacation-from" });
  const to = h("input", { type: "date", testid: "vacation-to", id: "vacation-to" });
  const save = h("button", { type: "button", testid: "vacation-save", className: "primary" }, "Save vacation reply");
  let html: string | null = null;
  // what the user changed before the current values arrived is kept (the read may be slow)
  const touched = new Set<HTMLElement>();
  for (const el of [enabled, subject, body, from, to]) {
    el.addEventListener("input", () => touched.add(el));
    el.addEventListener("change", () => touched.add(el));
  }
  const fill = (el: HTMLInputElement | HTMLTextAreaElement, value: string): void => {
    if (!touched.has(el)) el.value = value;
  };

  const load = async (): Promise<void> => {
    try {
      const got = await ctx.jmap.call<{ list: Vacation[] }>("VacationResponse/get", { ids: ["singleton"] }, using);
      const v = got.list[0];
      if (!v) return;
      if (!touched.has(enabled)) enabled.checked = v.isEnabled;
      fill(subject, v.subject ?? "");
      fill(body, v.textBody ?? "");
      html = v.htmlBody;
      fill(from, dayOf(v.fromDate));
      fill(to, dayOf(v.toDate));
    } catch (e) {
      status.say(`Could not read the vacation reply: ${(e as Error).message}`, true);
    }
  };

  save.addEventListener("click", async () => {
    if (enabled.checked && !body.value.trim()) {
      status.say("The vacation reply needs a text", true);
      body.focus();
      return;
    }
    const patch: Record<string, unknown> = {
      isEnabled: enabled.checked,
      subject: subject.value.trim() || null,
      textBody: body.value || null,
      // a text the user edited here replaces an HTML version set elsewhere (it would say something else)
      htmlBody: body.value ? null : html,
      fromDate: utcOf(from.value, false),
      toDate: utcOf(to.value, true),
    };
    save.disabled = true;
    try {
      const out = await ctx.jmap.call<Record<string, unknown>>("VacationResponse/set",
        { update: { singleton: patch } }, using);
      const failed = setFailure(out, "singleton");
      if (failed) status.say(`Vacation reply not saved: ${reason(failed)}`, true);
      else status.say(enabled.checked ? "Vacation reply on" : "Vacation reply off");
    } catch (e) {
      status.say(`Vacation reply not saved: ${e instanceof JmapError ? e.description || e.type : (e as Error).message}`, true);
    } finally {
      save.disabled = false;
    }
  });
  void load();
  return h("section", { className: "settings-section", "aria-labelledby": "settings-vacation" },
    h("h3", { id: "settings-vacation" }, "Vacation reply"),
    h("p", { className: "hint" }, "Answers each sender once a week while it is on; never mailing lists or robots."),
    h("label", { className: "check", for: "vacation-enabled" }, enabled, " Send a vacation reply"),
    h("label", { for: "vacation-subject" }, "Subject"), subject,
    h("label", { for: "vacation-body" }, "Message"), body,
    h("div", { className: "row" },
      h("span", {}, h("label", { for: "vacation-from" }, "From (optional)"), from),
      h("span", {}, h("label", { for: "vacation-to" }, "Until (optional)"), to)),
    save);
}
