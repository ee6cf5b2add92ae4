/**
 * Settings (placeholder: the webcompose engineer owns and replaces this module).
 *
 * In:   the app context.  Out: the settings view, opened.  Fails: says so in the toast until it lands.
 */

import type { AppContext } from "../context";

export function openSettings(ctx: AppContext): void {
  ctx.notify("Settings are not available yet");
}
