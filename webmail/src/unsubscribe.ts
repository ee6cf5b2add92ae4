/**
 * Unsubscribe from a list the message came through (RFC 2369 List-Unsubscribe, RFC 8058 one-click).
 *
 * In:   the JMAP client, the Email (its List-Unsubscribe URLs and List-Unsubscribe-Post).
 * Out:  what happened, as a sentence for the toast.
 * Fails: JmapError from the server (its description says why: not DKIM-signed, the list refused).
 *
 * A one-click POST is made by the server (the Postern capability's `List/unsubscribe`, which reads
 * the stored message's own fields and checks their DKIM signature): the app's CSP allows no
 * third-party origin, and the user's browser never talks to the list. Without one-click, an https
 * link opens in a new tab (no referrer, no opener) and a mailto: address is named.
 */

import { CORE, type Jmap, MAIL, POSTERN } from "./jmap";
import type { ReaderEmail } from "./reader";

export function offersOneClick(email: ReaderEmail): boolean {
  const post = (email["header:List-Unsubscribe-Post:asText"] || "").replace(/\s+/g, "");
  return post === "List-Unsubscribe=One-Click"
    && (email["header:List-Unsubscribe:asURLs"] || []).some((u) => /^https:/i.test(u));
}

export async function unsubscribe(jmap: Jmap, email: ReaderEmail): Promise<string> {
  const urls = email["header:List-Unsubscribe:asURLs"] || [];
  if (offersOneClick(email) && jmap.accountCapability(POSTERN)?.unsubscribe) {
    await jmap.call("List/unsubscribe", { emailId: email.id }, [CORE, MAIL, POSTERN]);
    return "Unsubscribed: the list confirmed the request";
  }
  const https = urls.find((u) => /^https:/i.test(u));
  const mailto = urls.find((u) => /^mailto:/i.test(u));
  if (https) {
    window.open(https, "_blank", "noopener,noreferrer");
    return "The list's unsubscribe page opened in a new tab";
  }
  if (mailto) return `Unsubscribe by writing to ${mailto.replace(/^mailto:/i, "").split("?")[0]}`;
  return "This message offers no way to unsubscribe";
}
