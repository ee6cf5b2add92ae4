/**
 * Mail HTML made safe to show: DOMPurify, then a srcdoc document for an `<iframe sandbox>` whose
 * first element is its own Content-Security-Policy (webmail contract, "Reader frame").
 *
 * In:   the message's HTML, the inline parts' data: URLs by Content-ID, whether remote images
 *       are allowed for this message.
 * Out:  {@link frameDocument}: the srcdoc string and whether the message refers to remote
 *       images (so the reader can offer the toggle).
 * Fails: never; what DOMPurify cannot make safe is dropped.
 *
 * Layers, each enough on its own for scripts: DOMPurify removes scripts, event handlers and
 * javascript: URLs; the frame's sandbox has no allow-scripts; the frame's CSP is
 * `default-src 'none'` (no script, no fetch, no font, no form target). Remote content (images,
 * CSS url()) is blocked by the CSP's img-src until the user allows it, and remote `src`s are
 * parked in data-remote-src so a blocked message does not even try.
 */

import DOMPurify from "dompurify";

export const FRAME_CSP_BASE = "default-src 'none'; style-src 'unsafe-inline'; img-src data: blob:";

const REMOTE = /^\s*(https?:)?\/\//i;

export interface FrameDocument {
  srcdoc: string;
  hasRemote: boolean;
}

let hooked = false;
let current: { cids: Map<string, string>; allowRemote: boolean; remote: number } = {
  cids: new Map(), allowRemote: false, remote: 0,
};

function install(): void {
  if (hooked) return;
  hooked = true;
  DOMPurify.addHook("afterSanitizeAttributes", (node) => {
    const el = node as Element;
    if (el.tagName === "A" || el.tagName === "AREA") {
      const href = el.getAttribute("href") || "";
      if (href && !href.startsWith("#")) {
        el.setAttribute("target", "_blank");
        el.setAttribute("rel", "noopener noreferrer");
      }
    }
    for (const attr of ["src", "background", "poster"]) {
      const value = el.getAttribute(attr);
      if (value === null) continue;
      if (/^\s*cid:/i.test(value)) {
        const data = current.cids.get(normaliseCid(value.replace(/^\s*cid:/i, "")));
        if (data) el.setAttribute(attr, data);
        else el.removeAttribute(attr);
      } else if (REMOTE.test(value)) {
        current.remote++;
        if (!current.allowRemote) {
          el.setAttribute(`data-remote-${attr}`, value);
          el.removeAttribute(attr);
        }
      }
    }
    if (el.hasAttribute("srcset")) {
      if (REMOTE.test(el.getAttribute("srcset") || "")) current.remote++;
      if (!current.allowRemote) el.removeAttribute("srcset");
    }
    const style = el.getAttribute("style");
    if (style && /url\s*\(/i.test(style) && /url\s*\(\s*['"]?\s*(https?:)?\/\//i.test(style)) current.remote++;
  });
}

export function normaliseCid(cid: string): string {
  let c = cid.trim();
  try {
    c = decodeURIComponent(c); // RFC 2392: cid: URLs are %-encoded
  } catch {
    /* leave it */
  }
  return c.replace(/^<|>$/g, "").toLowerCase();
}

/** The srcdoc for a sanitised message body. */
export function frameDocument(html: string, cids: Map<string, string>, allowRemote: boolean): FrameDocument {
  install();
  current = { cids, allowRemote, remote: 0 };
  const body = DOMPurify.sanitize(html, {
    WHOLE_DOCUMENT: false,
    FORCE_BODY: true, // a leading <style> stays in the body instead of being dropped
    ADD_TAGS: ["style"],
    FORBID_TAGS: ["form", "input", "button", "select", "textarea", "base", "link", "meta", "object", "embed",
      "iframe", "frame", "frameset", "svg", "math", "audio", "video", "source", "track"],
    FORBID_ATTR: ["action", "formaction", "ping"],
    ALLOW_DATA_ATTR: false,
    ADD_ATTR: ["target"],
  }) as string;
  const hasRemote = current.remote > 0 || /url\s*\(\s*['"]?\s*(https?:)?\/\//i.test(body);
  const csp = allowRemote ? `${FRAME_CSP_BASE} https:` : FRAME_CSP_BASE;
  const srcdoc = `<meta http-equiv="Content-Security-Policy" content="${csp}">`
    + `<meta name="referrer" content="no-referrer"><meta charset="utf-8">`
    + `<style>body{margin:0;padding:12px;font:15px/1.45 system-ui,sans-serif;color:#111;background:#fff;`
    + `overflow-wrap:anywhere}img{max-width:100%;height:auto}pre{white-space:pre-wrap}</style>`
    + body;
  current = { cids: new Map(), allowRemote: false, remote: 0 };
  return { srcdoc, hasRemote };
}

/** Plain text shown as HTML in the frame (for text/plain parts inside an HTML body). */
export function textAsHtml(text: string): string {
  const div = document.createElement("div");
  div.textContent = text;
  return `<pre>${div.innerHTML}</pre>`;
}
