/**
 * Compose (placeholder: the webcompose engineer owns and replaces this module).
 *
 * In:   the app context and what to compose.  Out: the compose view, opened.
 * Fails: says so in the toast until compose lands.
 */

import type { AppContext } from "../context";

export interface ComposeOptions {
  mode: "new" | "reply" | "replyAll" | "forward" | "draft";
  emailId?: string;
}

export function openCompose(ctx: AppContext, opts: ComposeOptions): void {
  ctx.notify(`Compose (${opts.mode}) is not available yet`);
}
