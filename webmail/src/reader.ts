/**
 * The reader: one Email, its HTML sanitised into a sandboxed srcdoc frame (or its plain text as
 * text), attachments, inline images, remote images on request, the source and the .eml.
 *
 * In:   the JMAP client, an Email id, the user's remote-image choices (per message, per sender).
 * Out:  the `reader` section filled; {@link ReaderEmail} for the actions (reply, unsubscribe...).
 * Fails: an Email that is gone shows "This message no longer exists"; a failed part download
 *       leaves that image out and says so in the toast. Mail content never enters the app's DOM
 *       other than as text nodes: HTML goes only into the frame's srcdoc.
 */

import type { EmailAddress } from "./context";
import { h, clear, humanSize, saveBlob } from "./dom";
import { type Jmap, unwrap } from "./jmap";
import { frameDocument, normaliseCid, textAsHtml } from "./sanitize";
import { offersOneClick } from "./unsubscribe";

export interface BodyPart {
  partId: string | null;
  blobId: string;
  size: number;
  name: string | null;
  type: string;
  charset: string | null;
  disposition: string | null;
  cid: string | null;
}

export interface ReaderEmail {
  id: string;
  blobId: string;
  threadId: string;
  mailboxIds: Record<string, boolean>;
  keywords: Record<string, boolean>;
  from: EmailAddress[] | null;
  to: EmailAddress[] | null;
  cc: EmailAddress[] | null;
  replyTo: EmailAddress[] | null;
  subject: string | null;
  sentAt: string | null;
  receivedAt: string;
  size: number;
  htmlBody: BodyPart[];
  textBody: BodyPart[];
  attachments: BodyPart[];
  bodyValues: Record<string, { value: string; isTruncated: boolean }>;
  "header:List-Unsubscribe:asURLs": string[] | null;
  "header:List-Unsubscribe-Post:asText": string | null;
}

const PROPERTIES = ["id", "blobId", "threadId", "mailboxIds", "keywords", "from", "to", "cc", "replyTo", "subject",
  "sentAt", "receivedAt", "size", "htmlBody", "textBody", "attachments", "bodyValues",
  "header:List-Unsubscribe:asURLs", "header:List-Unsubscribe-Post:asText"];
const BODY_PROPERTIES = ["partId", "blobId", "size", "name", "type", "charset", "disposition", "cid"];
const MAX_BODY_VALUE = 2_000_000; // characters of each body part fetched inline
const MAX_INLINE_IMAGE = 8_000_000; // bytes: larger inline images stay attachments

export async function fetchEmail(jmap: Jmap, id: string): Promise<ReaderEmail | null> {
  const r = await jmap.call<{ list: ReaderEmail[] }>("Email/get", {
    ids: [id], properties: PROPERTIES, bodyProperties: BODY_PROPERTIES, fetchHTMLBodyValues: true,
    fetchTextBodyValues: true, maxBodyValueBytes: MAX_BODY_VALUE,
  });
  return r.list[0] || null;
}

export function formatAddresses(list: EmailAddress[] | null | undefined): string {
  if (!list || !list.length) return "";
  return list.map((a) => (a.name ? `${a.name} <${a.email}>` : a.email)).join(", ");
}

/** The user's remote-image choices: senders always allowed (kept in this browser, per user). */
export class RemoteImages {
  private messages = new Set<string>();
  private key: string;

  constructor(user: string) {
    this.key = `postern.remoteImages.${user}`;
  }

  private senders(): string[] {
    try {
      const v = JSON.parse(localStorage.getItem(this.key) || "[]");
      return Array.isArray(v) ? v.map(String) : [];
    } catch {
      return [];
    }
  }

  allowed(email: ReaderEmail): boolean {
    const from = (email.from?.[0]?.email || "").toLowerCase();
    return this.messages.has(email.id) || (!!from && this.senders().includes(from));
  }

  allowMessage(id: string): void {
    this.messages.add(id);
  }

  allowSender(address: string): void {
    const a = address.toLowerCase();
    const list = this.senders().filter((s) => s !== a);
    list.push(a);
    try {
      localStorage.setItem(this.key, JSON.stringify(list.slice(-1000)));
    } catch {
      /* storage full or disabled: this message only */
    }
  }
}

function isHtml(email: ReaderEmail): boolean {
  return email.htmlBody.some((p) => p.type === "text/html");
}

/** Inline parts the HTML refers to by Content-ID (RFC 2392), and images shown inline. */
function inlineParts(email: ReaderEmail): BodyPart[] {
  const html = isHtml(email);
  return [...email.attachments, ...email.htmlBody].filter((p) => html && p.type.startsWith("image/")
    && (p.cid || email.htmlBody.includes(p)) && p.size <= MAX_INLINE_IMAGE);
}

/** Parts to list as attachments: everything but the inline images the body shows. */
export function listedAttachments(email: ReaderEmail): BodyPart[] {
  const inline = new Set(inlineParts(email).filter((p) => p.disposition !== "attachment"));
  return email.attachments.filter((p) => !inline.has(p));
}

function blobToDataUrl(blob: Blob, type: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const r = new FileReader();
    r.onload = () => resolve(String(r.result).replace(/^data:[^;,]*/, `data:${type}`));
    r.onerror = () => reject(r.error);
    r.readAsDataURL(blob);
  });
}

export interface ReaderHandlers {
  unsubscribe(email: ReaderEmail): void;
  back(): void;
}

export class Reader {
  readonly el: HTMLElement;
  email: ReaderEmail | null = null;
  private generation = 0;

  constructor(private jmap: Jmap, private remote: RemoteImages, private notify: (t: string) => void,
              private on: ReaderHandlers) {
    this.el = h("section", { className: "reader", testid: "reader", "aria-label": "Message", tabindex: "-1" });
    this.empty();
  }

  empty(text = "Select a message to read it."): void {
    this.generation++;
    this.email = null;
    clear(this.el);
    this.el.classList.add("is-empty");
    this.el.appendChild(h("p", { className: "reader-empty" }, text));
  }

  async open(id: string): Promise<ReaderEmail | null> {
    const generation = ++this.generation;
    this.el.classList.remove("is-empty");
    clear(this.el);
    this.el.appendChild(h("p", { className: "reader-empty" }, "Loading…"));
    const email = await fetchEmail(this.jmap, id);
    if (generation !== this.generation) return null;
    if (!email) {
      this.empty("This message no longer exists.");
      return null;
    }
    this.email = email;
    await this.show(email, generation);
    return email;
  }

  private async show(email: ReaderEmail, generation: number): Promise<void> {
    const allowRemote = this.remote.allowed(email);
    const cids = new Map<string, string>();
    const inline = inlineParts(email);
    const loaded = await Promise.allSettled(inline.map(async (p) => {
      const blob = await this.jmap.download(p.blobId, p.name || "image", p.type);
      return [p, await blobToDataUrl(blob, p.type)] as const;
    }));
    if (generation !== this.generation) return;
    const inlineByPart = new Map<BodyPart, string>();
    let failed = 0;
    for (const r of loaded) {
      if (r.status === "fulfilled") {
        const [p, url] = r.value;
        if (p.cid) cids.set(normaliseCid(p.cid), url);
        inlineByPart.set(p, url);
      } else {
        failed++;
      }
    }
    if (failed) this.notify(`${failed} inline image(s) could not be loaded`);

    clear(this.el);
    const subject = email.subject || "(no subject)";
    document.title = `${subject} - Postern Mail`;
    const head = h("header", { className: "reader-head" },
      h("button", { type: "button", className: "back", "aria-label": "Back to the list", onclick: () => this.on.back() }, "←"),
      h("h2", { testid: "reader-subject", id: "reader-subject" }, subject),
      h("dl", { className: "reader-meta" },
        h("dt", {}, "From"), h("dd", { className: "reader-from" }, formatAddresses(email.from)),
        h("dt", {}, "To"), h("dd", {}, formatAddresses(email.to)),
        email.cc?.length ? [h("dt", {}, "Cc"), h("dd", {}, formatAddresses(email.cc))] : null,
        h("dt", {}, "Date"), h("dd", {}, new Date(email.sentAt || email.receivedAt).toLocaleString())));
    this.el.setAttribute("aria-labelledby", "reader-subject");
    this.el.appendChild(head);
    const conversation = h("nav", { className: "reader-thread", "aria-label": "Other messages in this conversation" });
    conversation.hidden = true;
    this.el.appendChild(conversation);
    void this.showThread(email, conversation, generation);

    const tools = h("div", { className: "reader-tools", role: "group", "aria-label": "Message tools" });
    const unsub = email["header:List-Unsubscribe:asURLs"];
    if (unsub && unsub.length) {
      const oneClick = offersOneClick(email);
      tools.appendChild(h("button", {
        type: "button", testid: "reader-unsubscribe", "data-one-click": oneClick ? "true" : "false",
        onclick: () => this.on.unsubscribe(email),
      }, "Unsubscribe"));
    }
    const source = h("button", { type: "button", testid: "reader-source", "aria-pressed": "false" }, "View source");
    tools.appendChild(source);
    tools.appendChild(h("button", {
      type: "button", testid: "reader-download-eml", onclick: () => void this.downloadEml(email),
    }, "Download .eml"));
    this.el.appendChild(tools);

    let remoteBar: HTMLElement | null = null;
    const body = h("div", { className: "reader-body" });
    if (isHtml(email)) {
      const html = email.htmlBody.map((p) => {
        if (p.type === "text/html") return email.bodyValues[p.partId || ""]?.value || "";
        if (p.type.startsWith("text/")) return textAsHtml(email.bodyValues[p.partId || ""]?.value || "");
        const url = inlineByPart.get(p);
        return url && !p.cid ? `<p><img src="${url}" alt=""></p>` : "";
      }).join("\n");
      const doc = frameDocument(html, cids, allowRemote);
      const frame = h("iframe", {
        testid: "reader-frame", className: "reader-frame", title: `Message: ${subject}`,
        sandbox: "allow-popups allow-popups-to-escape-sandbox", referrerpolicy: "no-referrer",
      });
      frame.srcdoc = doc.srcdoc;
      body.appendChild(frame);
      if (doc.hasRemote && !allowRemote) {
        const sender = email.from?.[0]?.email || "";
        remoteBar = h("div", { className: "remote-bar", role: "note" },
          h("span", {}, "Remote images are blocked to protect your privacy."),
          h("button", {
            type: "button", testid: "reader-remote-images", onclick: () => {
              this.remote.allowMessage(email.id);
              void this.show(email, this.generation);
            },
          }, "Show images"),
          sender ? h("button", {
            type: "button", testid: "reader-remote-sender", onclick: () => {
              this.remote.allowSender(sender);
              void this.show(email, this.generation);
            },
          }, `Always from ${sender}`) : null);
      }
    } else {
      const text = email.textBody.filter((p) => p.type.startsWith("text/"))
        .map((p) => email.bodyValues[p.partId || ""]?.value || "").join("\n\n");
      body.appendChild(h("pre", { testid: "reader-text", className: "reader-text", tabindex: "0" }, text));
    }
    if (remoteBar) this.el.appendChild(remoteBar);

    const atts = listedAttachments(email);
    if (atts.length) {
      const list = h("ul", { className: "reader-attachments", testid: "reader-attachments", "aria-label": "Attachments" });
      for (const p of atts) {
        const name = p.name || `attachment-${p.partId || p.blobId}`;
        const link = h("a", {
          href: "#", testid: "attachment", "data-blob-id": p.blobId, "data-name": name, "data-type": p.type,
          download: name,
        }, `${name} (${humanSize(p.size)})`);
        link.addEventListener("click", (ev) => {
          ev.preventDefault();
          void this.save(p.blobId, name, p.type);
        });
        list.appendChild(h("li", {}, link));
      }
      this.el.appendChild(list);
    }
    this.el.appendChild(body);

    const sourceView = h("pre", { className: "reader-source", "aria-label": "Message source", tabindex: "0" });
    sourceView.hidden = true;
    this.el.appendChild(sourceView);
    source.addEventListener("click", async () => {
      const showing = source.getAttribute("aria-pressed") === "true";
      if (showing) {
        sourceView.hidden = true;
        body.hidden = false;
        source.setAttribute("aria-pressed", "false");
        source.textContent = "View source";
        return;
      }
      try {
        if (!sourceView.textContent) {
          const blob = await this.jmap.download(email.blobId, "message.eml", "message/rfc822");
          sourceView.textContent = await blob.text();
        }
        sourceView.hidden = false;
        body.hidden = true;
        source.setAttribute("aria-pressed", "true");
        source.textContent = "View message";
      } catch {
        this.notify("Could not load the message source");
      }
    });
  }

  /** The conversation around the message: the other Emails of its Thread, oldest first, as links. */
  private async showThread(email: ReaderEmail, nav: HTMLElement, generation: number): Promise<void> {
    try {
      const a = this.jmap.accountId;
      const responses = await this.jmap.request([
        ["Thread/get", { accountId: a, ids: [email.threadId] }, "t"],
        ["Email/get", {
          accountId: a, "#ids": { resultOf: "t", name: "Thread/get", path: "/list/*/emailIds" },
          properties: ["id", "from", "receivedAt", "keywords", "mailboxIds"],
        }, "e"],
      ]);
      if (generation !== this.generation) return;
      const list = (unwrap(responses[1]).list as { id: string; from: EmailAddress[] | null; receivedAt: string;
        keywords: Record<string, boolean> }[]);
      if (list.length < 2) return;
      list.sort((x, y) => x.receivedAt.localeCompare(y.receivedAt));
      const items = list.map((e) => {
        const who = e.from?.[0]?.name || e.from?.[0]?.email || "(nobody)";
        const label = `${who}, ${new Date(e.receivedAt).toLocaleString()}`;
        return h("li", {}, e.id === email.id
          ? h("span", { className: "current", "aria-current": "true" }, label)
          : h("a", { href: `#/email/${encodeURIComponent(e.id)}`, className: e.keywords["$seen"] ? "" : "unread" }, label));
      });
      nav.append(h("span", { className: "reader-thread-title" }, `Conversation (${list.length})`), h("ol", {}, items));
      nav.hidden = false;
    } catch {
      /* the message itself is shown; its conversation is a bonus */
    }
  }

  private async save(blobId: string, name: string, type: string): Promise<void> {
    try {
      saveBlob(await this.jmap.download(blobId, name, type), name);
    } catch {
      this.notify(`Could not download ${name}`);
    }
  }

  private async downloadEml(email: ReaderEmail): Promise<void> {
    const base = (email.subject || "message").replace(/[\\/:*?"<>|\x00-\x1f]+/g, "_").slice(0, 80).trim() || "message";
    await this.save(email.blobId, `${base}.eml`, "message/rfc822");
  }
}
