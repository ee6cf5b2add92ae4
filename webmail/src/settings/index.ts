/**
 * Settings (webmail contract: `openSettings`): vacation reply, simple filters, signatures, password.
 *
 * In:   the app context. Each section reads its current values when the panel opens:
 *       VacationResponse/get (RFC 8621 §8), the Postern capability's Filter/get, Identity/get.
 * Out:  the settings panel (`data-testid=settings`) with one section per setting; every save says
 *       what happened in `settings-status` (role=status). The sections appear only when the account
 *       offers them (the session's account capabilities).
 * Fails: a refused save shows the server's reason in `settings-status` and keeps what was typed.
 *
 * Filters are the managed Sieve script's filter part (the server writes it; the user's own
 * Sieve script is never read or replaced from here).
 */

import "./settings.css";
import type { AppContext } from "../context";
import { h } from "../dom";
import { POSTERN, VACATION } from "../jmap";
import { filtersSection } from "./filters";
import { passwordSection } from "./password";
import { signaturesSection } from "./signatures";
import { type Status, statusLine } from "./status";
import { vacationSection } from "./vacation";

let open: HTMLElement | null = null;

export function openSettings(ctx: AppContext): void {
  if (open) {
    open.querySelector<HTMLElement>("h2")?.focus();
    return;
  }
  const status: Status = statusLine();
  const postern = ctx.jmap.accountCapability(POSTERN) as { filters?: boolean; passwordChange?: boolean } | undefined;
  const sections: HTMLElement[] = [];
  if (ctx.jmap.has(VACATION)) sections.push(vacationSection(ctx, status));
  if (postern?.filters) sections.push(filtersSection(ctx, status));
  sections.push(signaturesSection(ctx, status));
  if (postern?.passwordChange) sections.push(passwordSection(ctx, status));
  const close = (): void => {
    panel.remove();
    open = null;
  };
  const panel = h("section", { testid: "settings", className: "settings", role: "dialog", "aria-label": "Settings",
    "aria-modal": "false" },
  h("header", { className: "settings-head" },
    h("h2", { tabindex: -1 }, "Settings"),
    h("button", { type: "button", testid: "settings-close", "aria-label": "Close settings", onclick: close }, "×")),
  status.element,
  ...sections);
  panel.addEventListener("keydown", (e) => {
    if (e.key === "Escape") {
      e.preventDefault();
      close();
    }
    e.stopPropagation(); // the app's single-key shortcuts do not fire while typing here
  });
  document.body.appendChild(panel);
  open = panel;
  panel.querySelector<HTMLElement>("h2")?.focus();
}
