/**
 * Unsubscribe from a list the message came through (RFC 2369 List-Unsubscribe, RFC 8058 one-click).
 *
 * In:   the JMAP client, the Email (its List-Unsubscribe URLs and List-Unsubscribe-Post).
 * Out:  what happened, as a sentence for the toast.
 * Fails: JmapError from the server. A one-click POST (RFC 8058) must come from the mail service,
 *       not from the browser (the app's CSP allows no third-party origin): until the server offers
 *       it, an https: URL opens in a new tab and a mailto: one is named.
 */

import type { Jmap } from "./jmap";
import type { ReaderEmail } from "./reader";

export async function unsubscribe(_jmap: Jmap, email: ReaderEmail): Promise<string> {
  const urls = email["header:List-Unsubscribe:asURLs"] || [];
  const https = urls.find((u) => /^https:/i.test(u));
  const mailto = urls.find((u) => /^mailto:/i.test(u));
  if (https) {
    window.open(https, "_blank", "noopener,noreferrer");
    return "The list's unsubscribe page opened in a new tab";
  }
  if (mailto) return `Unsubscribe by writing to ${mailto.replace(/^mailto:/i, "").split("?")[0]}`;
  return "This message offers no way to unsubscribe";
}
