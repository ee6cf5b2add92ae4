/**
 * Change password: the Postern capability's Password/change.
 *
 * In:   the current and the new password (typed twice).
 * Out:  the section; on success every bearer token of the account is revoked by the server (a new
 *       credential generation), so the app is signed out and asks for the new password.
 * Fails: `forbidden` (the current password is wrong), `invalidArguments` (the new one breaks the
 *       policy: the description says why), `rateLimit` (locked out after failures) are said in the
 *       status line; the fields are cleared either way (no password lingers in the page).
 */

import type { AppContext } from "../context";
import { h } from "../dom";
import { CORE, JmapError, POSTERN } from "../jmap";
import type { Status } from "./status";

const WHY: Record<string, string> = {
  forbidden: "the current password is wrong",
  rateLimit: "too many failed attempts: try again later",
  accountNotSupportedByMethod: "passwords are changed by the administrator here",
};

export function passwordSection(ctx: AppContext, status: Status): HTMLElement {
  const current = h("input", { type: "password", testid: "password-current", id: "password-current",
    autocomplete: "current-password" });
  const next = h("input", { type: "password", testid: "password-new", id: "password-new", autocomplete: "new-password" });
  const again = h("input", { type: "password", testid: "password-confirm", id: "password-confirm",
    autocomplete: "new-password" });
  const save = h("button", { type: "button", testid: "password-save", className: "primary" }, "Change password");
  save.addEventListener("click", async () => {
    if (!current.value || !next.value) {
      status.say("Type the current password and the new one", true);
      return;
    }
    if (again.value && again.value !== next.value) {
      status.say("The new password and its repetition differ", true);
      again.focus();
      return;
    }
    save.disabled = true;
    try {
      await ctx.jmap.call("Password/change", { oldPassword: current.value, newPassword: next.value }, [CORE, POSTERN]);
      status.say("Password changed. Every session was signed out: sign in with the new password.");
      current.value = next.value = again.value = "";
      // the server revoked this token too: the next request is a 401, which returns to sign-in
      window.setTimeout(() => ctx.jmap.onUnauthorized(), 2500);
    } catch (e) {
      const why = e instanceof JmapError ? WHY[e.type] ?? (e.description || e.type) : (e as Error).message;
      status.say(`Password not changed: ${why}`, true);
      current.value = next.value = again.value = "";
      current.focus();
    } finally {
      save.disabled = false;
    }
  });
  return h("section", { className: "settings-section", "aria-labelledby": "settings-password" },
    h("h3", { id: "settings-password" }, "Password"),
    h("label", { for: "password-current" }, "Current password"), current,
    h("label", { for: "password-new" }, "New password"), next,
    h("label", { for: "password-confirm" }, "New password again"), again,
    save);
}
