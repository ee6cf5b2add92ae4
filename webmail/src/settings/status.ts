/**
 * The settings panel's status line (`settings-status`, role=status) and the one way a JMAP refusal
 * becomes a sentence there.
 *
 * In:   a message and whether it is an error.  Out: {@link Status}.  Fails: never.
 */

import { h } from "../dom";

export interface Status {
  element: HTMLElement;
  say(text: string, error?: boolean): void;
}

export function statusLine(): Status {
  const element = h("p", { testid: "settings-status", role: "status", "aria-live": "polite", className: "settings-status" });
  return {
    element,
    say(text: string, error = false) {
      element.textContent = text;
      element.dataset.kind = error ? "error" : "ok";
    },
  };
}

interface SetError {
  type: string;
  description?: string;
}

/** A SetError or method error as a short sentence. */
export function reason(err: SetError | undefined | null): string {
  if (!err) return "the server did not answer";
  return err.description ? err.description : err.type;
}

/** The one SetError of a /set response for `id` (created, updated or destroyed), or null when it worked. */
export function setFailure(out: Record<string, unknown>, id: string): SetError | null {
  for (const k of ["notCreated", "notUpdated", "notDestroyed"]) {
    const e = (out[k] as Record<string, SetError> | undefined)?.[id];
    if (e) return e;
  }
  return null;
}
