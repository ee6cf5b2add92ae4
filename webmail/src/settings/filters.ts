/**
 * Simple filters: "mail whose From / To / Subject contains (or is) X goes to folder F".
 *
 * In:   the Postern capability's Filter/get (objects {id, field, match, value, folder}; README "The
 *       Postern capability"), the mailbox names for the folder field.
 * Out:  the section: the filters in the order they run, each with Delete (`filter-delete`), and
 *       Add (`filter-add`) opening a row of `filter-field`, `filter-match`, `filter-value`,
 *       `filter-folder` saved by `filter-save` (Filter/set create; the server creates a folder that
 *       does not exist yet when the first message is filed).
 * Fails: the server's refusal (an empty value, a bad folder name, too many filters) is said in the
 *       status line and the row keeps what was typed.
 *
 * These rules live in the managed Sieve script, which runs before the user's own script and never
 * replaces it.
 */

import type { AppContext, Mailbox } from "../context";
import { clear, h } from "../dom";
import { CORE, JmapError, POSTERN } from "../jmap";
import { reason, setFailure, type Status } from "./status";

interface Filter {
  id: string;
  field: "from" | "to" | "subject";
  match: "contains" | "is";
  value: string;
  folder: string;
}

const FIELD_LABEL: Record<string, string> = { from: "From", to: "To or Cc", subject: "Subject" };
const MATCH_LABEL: Record<string, string> = { contains: "contains", is: "is" };

/** Mailbox paths as filters name them ("/" between levels), special-use ones left out but Archive. */
export function folderNames(mailboxes: Map<string, Mailbox>): string[] {
  const path = (m: Mailbox, depth = 0): string => {
    const parent = m.parentId ? mailboxes.get(m.parentId) : undefined;
    return parent && depth < 32 ? `${path(parent, depth + 1)}/${m.name}` : m.name;
  };
  return [...mailboxes.values()]
    .filter((m) => !m.role || m.role === "archive")
    .map((m) => path(m))
    .sort((a, b) => a.localeCompare(b));
}

export function describe(f: Filter): string {
  return `${FIELD_LABEL[f.field] ?? f.field} ${MATCH_LABEL[f.match] ?? f.match} “${f.value}” → ${f.folder}`;
}

export function filtersSection(ctx: AppContext, status: Status): HTMLElement {
  const using = [CORE, POSTERN];
  const list = h("ol", { testid: "filter-list", className: "filter-list", "aria-label": "Filters, in the order they run" });
  const editor = h("div", { className: "filter-editor", hidden: true });
  const fieldSel = h("select", { testid: "filter-field", "aria-label": "Field" },
    ...Object.entries(FIELD_LABEL).map(([v, l]) => h("option", { value: v }, l)));
  const matchSel = h("select", { testid: "filter-match", "aria-label": "Match" },
    ...Object.entries(MATCH_LABEL).map(([v, l]) => h("option", { value: v }, l)));
  const value = h("input", { type: "text", testid: "filter-value", "aria-label": "Text to look for", maxlength: 1024 });
  const folders = h("datalist", { id: "filter-folders" });
  const folder = h("input", { type: "text", testid: "filter-folder", "aria-label": "Folder", list: "filter-folders",
    placeholder: "Folder (created if missing)" });
  const save = h("button", { type: "button", testid: "filter-save", className: "primary" }, "Save filter");
  const cancel = h("button", { type: "button", testid: "filter-cancel" }, "Cancel");
  const add = h("button", { type: "button", testid: "filter-add" }, "Add a filter");
  editor.append(h("span", {}, "If"), fieldSel, matchSel, value, h("span", {}, "move to"), folder, folders, save, cancel);

  const render = (filters: Filter[]): void => {
    clear(list);
    if (!filters.length) list.append(h("li", { className: "empty" }, "No filters yet."));
    for (const f of filters) {
      const del = h("button", { type: "button", testid: "filter-delete", "aria-label": `Delete filter: ${describe(f)}` },
        "Delete");
      del.addEventListener("click", () => void remove(f));
      list.append(h("li", { testid: "filter", "data-filter-id": f.id, "data-field": f.field, "data-value": f.value,
        "data-folder": f.folder }, h("span", {}, describe(f)), " ", del));
    }
  };

  const load = async (): Promise<void> => {
    try {
      const got = await ctx.jmap.call<{ list: Filter[] }>("Filter/get", {}, using);
      render(got.list);
    } catch (e) {
      status.say(`Could not read the filters: ${(e as Error).message}`, true);
    }
  };

  const remove = async (f: Filter): Promise<void> => {
    try {
      const out = await ctx.jmap.call<Record<string, unknown>>("Filter/set", { destroy: [f.id] }, using);
      const failed = setFailure(out, f.id);
      status.say(failed ? `Filter not deleted: ${reason(failed)}` : "Filter deleted", !!failed);
    } catch (e) {
      status.say(`Filter not deleted: ${message(e)}`, true);
    }
    await load();
  };

  add.addEventListener("click", () => {
    folders.replaceChildren(...folderNames(ctx.mailboxes).map((n) => h("option", { value: n })));
    editor.hidden = false;
    value.focus();
  });
  cancel.addEventListener("click", () => {
    editor.hidden = true;
  });
  save.addEventListener("click", async () => {
    const f = { field: fieldSel.value, match: matchSel.value, value: value.value.trim(), folder: folder.value.trim() };
    if (!f.value || !f.folder) {
      status.say("A filter needs the text to look for and a folder", true);
      (f.value ? folder : value).focus();
      return;
    }
    save.disabled = true;
    try {
      const out = await ctx.jmap.call<Record<string, unknown>>("Filter/set", { create: { f } }, using);
      const failed = setFailure(out, "f");
      if (failed) {
        status.say(`Filter not saved: ${reason(failed)}`, true);
        return;
      }
      status.say("Filter saved");
      value.value = "";
      folder.value = "";
      editor.hidden = true;
      await load();
      ctx.refresh();
    } catch (e) {
      status.say(`Filter not saved: ${message(e)}`, true);
    } finally {
      save.disabled = false;
    }
  });
  void load();
  return h("section", { className: "settings-section", "aria-labelledby": "settings-filters" },
    h("h3", { id: "settings-filters" }, "Filters"),
    h("p", { className: "hint" }, "New mail that matches is moved to the folder. They run before your own Sieve " +
      "script, which they never change."),
    list, add, editor);
}

function message(e: unknown): string {
  return e instanceof JmapError ? e.description || e.type : (e as Error).message;
}
