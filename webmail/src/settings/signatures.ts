/**
 * Sender names and signatures of the user's identities (JMAP Identity, RFC 8621 §6).
 *
 * In:   the identities in the app context (Identity/get: the user's address and aliases, and the
 *       identities they created).
 * Out:  the section: pick an identity (`signature-identity`), edit its name (`signature-name`) and
 *       plain-text signature (`signature-text`), save (`signature-save`: Identity/set update). The
 *       context's identity is updated too, so the next compose uses it at once.
 * Fails: the server's refusal is said in the status line.
 */

import type { AppContext } from "../context";
import { h } from "../dom";
import { CORE, JmapError, SUBMISSION } from "../jmap";
import { reason, setFailure, type Status } from "./status";

export function signaturesSection(ctx: AppContext, status: Status): HTMLElement {
  const using = [CORE, SUBMISSION];
  const pick = h("select", { testid: "signature-identity", id: "signature-identity" },
    ...ctx.identities.map((i) => h("option", { value: i.id }, i.email)));
  const name = h("input", { type: "text", testid: "signature-name", id: "signature-name", maxlength: 256 });
  const text = h("textarea", { testid: "signature-text", id: "signature-text", rows: 4 });
  const save = h("button", { type: "button", testid: "signature-save", className: "primary" }, "Save");
  const show = (): void => {
    const i = ctx.identities.find((x) => x.id === pick.value);
    name.value = i?.name ?? "";
    text.value = i?.textSignature ?? "";
  };
  pick.addEventListener("change", show);
  save.addEventListener("click", async () => {
    const id = pick.value;
    const patch = { name: name.value.replace(/[\r\n]+/g, " ").trim(), textSignature: text.value };
    save.disabled = true;
    try {
      const out = await ctx.jmap.call<Record<string, unknown>>("Identity/set", { update: { [id]: patch } }, using);
      const failed = setFailure(out, id);
      if (failed) {
        status.say(`Not saved: ${reason(failed)}`, true);
        return;
      }
      const i = ctx.identities.find((x) => x.id === id);
      if (i) Object.assign(i, patch);
      status.say("Name and signature saved");
    } catch (e) {
      status.say(`Not saved: ${e instanceof JmapError ? e.description || e.type : (e as Error).message}`, true);
    } finally {
      save.disabled = false;
    }
  });
  show();
  return h("section", { className: "settings-section", "aria-labelledby": "settings-signatures" },
    h("h3", { id: "settings-signatures" }, "Name and signature"),
    h("label", { for: "signature-identity" }, "Address"), pick,
    h("label", { for: "signature-name" }, "Your name, as recipients see it"), name,
    h("label", { for: "signature-text" }, "Signature (added below new messages)"), text,
    save);
}
