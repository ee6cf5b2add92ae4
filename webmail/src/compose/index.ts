/**
 * Compose: new mail, reply, reply all, forward and re-opened drafts (webmail contract: `openCompose`).
 *
 * In:   the app context (JMAP client, account, mailboxes by role, identities, toast) and
 *       `{mode, emailId?}`; for reply/forward/draft the Email is read with Email/get.
 * Out:  the compose panel (`data-testid=compose`) on the page: From (any identity: the user's
 *       address and aliases), To/Cc/Bcc with suggestions from past correspondents, Subject,
 *       plain or rich text with the identity's signature, attachments uploaded as they are picked
 *       (presigned POSTs straight to S3, with progress), Save draft, Send, Discard.
 * Fails: what the server refuses is shown in `compose-error` (role=alert) and the panel stays
 *       open with everything typed; a message that was stored but not sent stays in Drafts.
 *
 * One compose panel at a time: opening another saves the open one as a draft first (if it changed).
 */

import "./compose.css";
import type { AppContext } from "../context";
import { h, humanSize } from "../dom";
import { CORE, MAIL, SUBMISSION } from "../jmap";
import { attachSuggestions, Correspondents } from "./autocomplete";
import { cleanSignature, Editor, htmlToText, textNodes } from "./editor";
import {
  type Attachment, type Draft, type Identity, type Mode, type Original, ORIGINAL_PROPERTIES, type Start,
  formatAddresses, parseAddresses, plainBody, signatureBlock, startFrom,
} from "./model";
import { destroy, saveDraft, send, SendError } from "./submit";
import { maxFileSize, startUpload, UPLOAD_CAPABILITY, type UploadEnv } from "./upload";

export interface ComposeOptions {
  mode: Mode;
  emailId?: string;
}

const AUTOSAVE_MS = 30_000;

let open: ComposeView | null = null;

export async function openCompose(ctx: AppContext, opts: ComposeOptions): Promise<void> {
  if (open) await open.close(true);
  if (!ctx.identities.length) {
    // the app reads them after the mailboxes: a compose opened at once asks for them itself
    try {
      const got = await ctx.jmap.call<{ list: AppContext["identities"] }>("Identity/get", {}, [CORE, SUBMISSION]);
      if (!ctx.identities.length) ctx.identities.push(...got.list);
    } catch (e) {
      ctx.notify(`Could not read your addresses: ${(e as Error).message}`);
      return;
    }
  }
  let original: Original | null = null;
  if (opts.mode !== "new") {
    if (!opts.emailId) {
      ctx.notify("Select a message first");
      return;
    }
    try {
      original = await readOriginal(ctx, opts.emailId);
    } catch (e) {
      ctx.notify(`Could not open the message: ${(e as Error).message}`);
      return;
    }
    if (!original) {
      ctx.notify("That message is gone");
      return;
    }
  }
  open = new ComposeView(ctx, opts.mode, original);
  open.mount();
}

async function readOriginal(ctx: AppContext, id: string): Promise<Original | null> {
  const out = await ctx.jmap.call<{ list: Original[] }>("Email/get", {
    ids: [id], properties: ORIGINAL_PROPERTIES, fetchTextBodyValues: true, fetchHTMLBodyValues: true,
    maxBodyValueBytes: 256 * 1024,
  });
  return out.list[0] ?? null;
}

/** The attachments one message can carry (RFC 8621 maxSizeAttachmentsPerEmail: Postern says what fits
 * in the SMTP size limit once base64-encoded); else what the upload limit leaves after encoding. */
function attachmentsLimit(ctx: AppContext): number {
  const mail = ctx.jmap.accountCapability(MAIL) as { maxSizeAttachmentsPerEmail?: number | null } | undefined;
  if (typeof mail?.maxSizeAttachmentsPerEmail === "number" && mail.maxSizeAttachmentsPerEmail > 0) {
    return mail.maxSizeAttachmentsPerEmail;
  }
  const up = ctx.jmap.accountCapability(UPLOAD_CAPABILITY) as { maxSize?: number } | undefined;
  return Math.floor(((up?.maxSize ?? 25 * 1024 * 1024) * 57) / 78);
}

interface Item {
  el: HTMLElement;
  att: Attachment | null;
  size: number;
  abort: () => void;
  done: Promise<unknown>;
}

class ComposeView {
  private readonly root: HTMLElement;
  private readonly from: HTMLSelectElement;
  private readonly to: HTMLInputElement;
  private readonly cc: HTMLInputElement;
  private readonly bcc: HTMLInputElement;
  private readonly subject: HTMLInputElement;
  private readonly richToggle: HTMLInputElement;
  private readonly editor = new Editor();
  private readonly error: HTMLElement;
  private readonly saved: HTMLElement;
  private readonly list: HTMLElement;
  private readonly sendButton: HTMLButtonElement;
  private readonly items: Item[] = [];
  private readonly people: Correspondents;
  private readonly start: Start;
  private draftId: string | null = null;
  private dirty = false;
  private busy: Promise<unknown> = Promise.resolve();
  private timer = 0;
  private closed = false;
  private signature = "";

  constructor(private ctx: AppContext, private mode: Mode, private original: Original | null) {
    this.people = Correspondents.of(ctx);
    this.start = startFrom(mode, original, ctx.identities, ctx.jmap.username, htmlToText);
    if (mode === "draft" && original) this.draftId = original.id;

    const changed = (): void => this.touch();
    this.from = h("select", { testid: "compose-from", "aria-label": "From", onchange: () => this.swapSignature() },
      ...ctx.identities.map((i) => h("option", { value: i.id }, i.name ? `${i.name} <${i.email}>` : i.email)));
    this.from.value = this.start.identityId;
    this.to = h("input", { type: "text", testid: "compose-to", "aria-label": "To", oninput: changed });
    this.cc = h("input", { type: "text", testid: "compose-cc", "aria-label": "Cc", oninput: changed });
    this.bcc = h("input", { type: "text", testid: "compose-bcc", "aria-label": "Bcc", oninput: changed });
    this.subject = h("input", { type: "text", testid: "compose-subject", "aria-label": "Subject", oninput: changed,
      maxlength: 998 });
    this.to.value = joinField(formatAddresses(this.start.to));
    this.cc.value = joinField(formatAddresses(this.start.cc));
    this.bcc.value = joinField(formatAddresses(this.start.bcc));
    this.subject.value = this.start.subject;
    this.richToggle = h("input", { type: "checkbox", testid: "compose-rich", onchange: () => this.toggleRich() });
    this.editor.onInput = changed;
    this.error = h("div", { testid: "compose-error", role: "alert", className: "compose-error", hidden: true });
    this.saved = h("span", { testid: "compose-saved", className: "compose-saved", role: "status", "aria-live": "polite" });
    this.list = h("ul", { testid: "compose-attachments", className: "compose-attachments", "aria-label": "Attachments" });
    const picker = h("input", { type: "file", multiple: true, testid: "compose-attach", "aria-label": "Attach files",
      className: "compose-attach-input" }) as HTMLInputElement;
    picker.addEventListener("change", () => {
      for (const f of Array.from(picker.files ?? [])) this.attach(f);
      picker.value = "";
    });
    this.sendButton = h("button", { type: "button", testid: "compose-send", className: "primary",
      onclick: () => void this.send() }, "Send");
    const field = (label: string, input: HTMLElement, extra?: HTMLElement): HTMLElement =>
      h("label", { className: "compose-field" }, h("span", {}, label), input, extra);
    const title = { new: "New message", reply: "Reply", replyAll: "Reply all", forward: "Forward", draft: "Draft" }[mode];
    this.root = h("section", { testid: "compose", className: "compose", role: "dialog", "aria-label": title,
      "aria-modal": "false" },
    h("header", { className: "compose-head" }, h("h2", {}, title),
      h("button", { type: "button", className: "compose-close", "aria-label": "Close (saves a draft)",
        title: "Close (saves a draft)", testid: "compose-close", onclick: () => void this.close(true) }, "×")),
    h("div", { className: "compose-fields" },
      field("From", this.from),
      field("To", this.to, attachSuggestions(this.to, this.people, changed)),
      field("Cc", this.cc, attachSuggestions(this.cc, this.people, changed)),
      field("Bcc", this.bcc, attachSuggestions(this.bcc, this.people, changed)),
      field("Subject", this.subject)),
    h("div", { className: "compose-options" },
      h("label", { className: "compose-rich-toggle" }, this.richToggle, " Rich text")),
    this.editor.element,
    this.list,
    this.error,
    h("footer", { className: "compose-actions" },
      this.sendButton,
      h("button", { type: "button", testid: "compose-save-draft", onclick: () => void this.save(true) }, "Save draft"),
      h("label", { className: "compose-attach button" }, "Attach…", picker),
      this.saved,
      h("button", { type: "button", testid: "compose-discard", className: "danger", onclick: () => void this.discard() },
        "Discard")));
    this.root.addEventListener("keydown", (e) => {
      if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) {
        e.preventDefault();
        void this.send();
      } else if (e.key === "Escape") {
        e.preventDefault();
        void this.close(true);
      }
      e.stopPropagation(); // the app's single-key shortcuts do not fire while typing here
    });
    this.fillBody();
    for (const a of this.start.attachments) this.addDone(a);
  }

  mount(): void {
    document.body.appendChild(this.root);
    (this.mode === "reply" || this.mode === "replyAll" ? this.editor : this.to.value ? this.subject : this.to).focus();
    if ((this.mode === "reply" || this.mode === "replyAll") && !this.to.value) this.to.focus();
  }

  private identity(): Identity | undefined {
    return this.ctx.identities.find((i) => i.id === this.from.value);
  }

  private fillBody(): void {
    const ident = this.identity();
    const html = this.start.body?.html;
    if (this.start.body) {
      if (html) {
        this.richToggle.checked = true;
        this.editor.setRichHtml(html);
      } else this.editor.setPlain(this.start.body.text);
      return;
    }
    this.signature = ident?.textSignature ?? "";
    const rich = !!ident?.htmlSignature && !this.start.quote;
    if (rich) {
      this.richToggle.checked = true;
      this.editor.setRich(this.richContent(ident));
    } else this.editor.setPlain(plainBody(this.start, this.signature));
  }

  /** The rich body: an empty line, the signature, the quote (as text: never the original's markup). */
  private richContent(ident: Identity | undefined): DocumentFragment {
    const frag = document.createDocumentFragment();
    frag.append(h("div", {}, h("br")), h("div", {}, h("br")));
    if (ident && (ident.htmlSignature || ident.textSignature)) {
      const sig = h("div", { className: "signature", "data-signature": "1" }, "-- ", h("br"));
      sig.append(ident.htmlSignature ? cleanSignature(ident.htmlSignature) : textNodes(ident.textSignature ?? ""));
      frag.append(sig);
    }
    const q = this.start.quote;
    if (q) {
      frag.append(h("div", {}, textNodes(q.intro.join("\n"))));
      frag.append(q.asQuote ? h("blockquote", { type: "cite" }, textNodes(q.text)) : h("div", {}, textNodes(q.text)));
    }
    return frag;
  }

  private toggleRich(): void {
    this.editor.setMode(this.richToggle.checked ? "rich" : "plain");
    this.touch();
  }

  /** A new From: its signature replaces the previous identity's in a plain body (when it is still there). */
  private swapSignature(): void {
    const ident = this.identity();
    const next = ident?.textSignature ?? "";
    if (this.editor.mode === "plain") {
      const text = this.editor.text();
      const old = this.signature ? signatureBlock(this.signature) : "";
      if (old && text.includes(old)) this.editor.setPlain(text.replace(old, next ? signatureBlock(next) : ""));
      else if (!old && next && !this.dirty) this.editor.setPlain(plainBody(this.start, next));
    }
    this.signature = next;
    this.touch();
  }

  private touch(): void {
    this.dirty = true;
    if (!this.timer) this.timer = window.setTimeout(() => {
      this.timer = 0;
      if (this.dirty && !this.closed && !this.uploading()) void this.save(false);
    }, AUTOSAVE_MS);
  }

  private uploading(): boolean {
    return this.items.some((i) => !i.att);
  }

  private showError(text: string | null): void {
    this.error.textContent = text ?? "";
    this.error.hidden = !text;
  }

  // --- attachments -----------------------------------------------------------------------------

  private uploadEnv(): UploadEnv {
    const core = this.ctx.session.capabilities[CORE] as { maxSizeUpload?: number };
    const presign = this.ctx.jmap.accountCapability(UPLOAD_CAPABILITY) as UploadEnv["presign"] | undefined;
    return {
      accountId: this.ctx.accountId,
      presign: presign ?? null,
      maxSizeUpload: core?.maxSizeUpload ?? 4_000_000,
      uploadDirect: (file, type) => this.ctx.jmap.upload(file, type),
      call: async (name, args) => (await this.ctx.jmap.request([[name, args, "0"]], [CORE, UPLOAD_CAPABILITY]))[0]
        .slice(0, 2) as [string, Record<string, unknown>],
    };
  }

  private totalSize(extra = 0): number {
    return this.items.reduce((n, i) => n + i.size, extra);
  }

  private attach(file: File): void {
    const env = this.uploadEnv();
    const limit = attachmentsLimit(this.ctx);
    if (this.totalSize(file.size) > limit) {
      const room = Math.max(0, limit - this.totalSize());
      this.showError(`${file.name} (${humanSize(file.size)}) does not fit: attachments of one message are at most ` +
        `${humanSize(limit)} in all (${humanSize(room)} left)`);
      return;
    }
    if (file.size > maxFileSize(env)) {
      this.showError(`${file.name} is larger than ${humanSize(maxFileSize(env))}`);
      return;
    }
    this.showError(null);
    const bar = h("progress", { max: 100, value: 0, "aria-label": `Uploading ${file.name}` });
    const state = h("span", { className: "compose-attachment-state" }, "0%");
    const remove = h("button", { type: "button", "aria-label": `Remove ${file.name}`, className: "compose-attachment-remove",
      testid: "compose-attachment-remove" }, "×");
    const el = h("li", { testid: "compose-attachment", "data-state": "uploading", "data-name": file.name,
      className: "compose-attachment" }, h("span", { className: "name" }, file.name), " ",
    h("span", { className: "size" }, humanSize(file.size)), " ", bar, " ", state, " ", remove);
    this.list.appendChild(el);
    const up = startUpload(env, file, (sent, total) => {
      const pct = total ? Math.floor((sent / total) * 100) : 0;
      bar.value = pct;
      state.textContent = `${pct}%`;
    });
    const item: Item = { el, att: null, size: file.size, abort: up.abort, done: up.done };
    this.items.push(item);
    remove.addEventListener("click", () => this.removeItem(item));
    up.done.then((att) => {
      item.att = att;
      el.dataset.state = "done";
      bar.remove();
      state.textContent = "";
      this.touch();
    }, (err: Error) => {
      if (!this.items.includes(item)) return; // removed by the user
      el.dataset.state = "error";
      state.textContent = err.message;
      this.showError(`${file.name}: ${err.message}`);
    });
  }

  private addDone(att: Attachment): void {
    const remove = h("button", { type: "button", "aria-label": `Remove ${att.name ?? "attachment"}`,
      className: "compose-attachment-remove", testid: "compose-attachment-remove" }, "×");
    const el = h("li", { testid: "compose-attachment", "data-state": "done", "data-name": att.name ?? "",
      className: "compose-attachment" }, h("span", { className: "name" }, att.name ?? "(unnamed)"), " ",
    h("span", { className: "size" }, humanSize(att.size)), " ", remove);
    this.list.appendChild(el);
    const item: Item = { el, att, size: att.size, abort: () => {}, done: Promise.resolve() };
    this.items.push(item);
    remove.addEventListener("click", () => this.removeItem(item));
  }

  private removeItem(item: Item): void {
    item.abort();
    item.el.remove();
    this.items.splice(this.items.indexOf(item), 1);
    if (!this.items.some((i) => i.el.dataset.state === "error")) this.showError(null);
    this.touch();
  }

  // --- save, send, close -----------------------------------------------------------------------

  /** The form as a Draft, or an error sentence for the fields that do not parse. */
  private draft(): Draft | string {
    const fields: [string, HTMLInputElement][] = [["To", this.to], ["Cc", this.cc], ["Bcc", this.bcc]];
    const parsed: Record<string, ReturnType<typeof parseAddresses>> = {};
    for (const [name, input] of fields) {
      parsed[name] = parseAddresses(input.value);
      if (parsed[name].bad.length) return `${name}: not an address: ${parsed[name].bad.join(", ")}`;
    }
    const html = this.editor.html();
    return {
      identityId: this.from.value,
      to: parsed.To.list,
      cc: parsed.Cc.list,
      bcc: parsed.Bcc.list,
      subject: this.subject.value.replace(/[\r\n]+/g, " "),
      text: this.editor.text(),
      html,
      attachments: this.items.filter((i) => i.att).map((i) => i.att as Attachment),
      inReplyTo: this.start.inReplyTo,
      references: this.start.references,
    };
  }

  /** Serialised: an autosave never runs beside a send. */
  private queue<T>(job: () => Promise<T>): Promise<T> {
    const next = this.busy.then(job, job);
    this.busy = next.catch(() => undefined);
    return next;
  }

  async save(byUser: boolean): Promise<boolean> {
    return this.queue(async () => {
      if (this.closed && byUser) return false;
      const d = this.draft();
      if (typeof d === "string") {
        if (byUser) this.showError(d);
        return false;
      }
      if (byUser && this.uploading()) {
        this.showError("wait for the attachments to finish uploading");
        return false;
      }
      try {
        this.draftId = await saveDraft(this.ctx, d, this.draftId);
        this.dirty = false;
        this.saved.textContent = `Draft saved ${new Date().toLocaleTimeString(undefined, { hour: "2-digit", minute: "2-digit" })}`;
        if (byUser) this.showError(null);
        this.ctx.refresh();
        return true;
      } catch (e) {
        if (byUser) this.showError((e as Error).message);
        return false;
      }
    });
  }

  async send(): Promise<void> {
    if (this.sendButton.disabled) return;
    this.sendButton.disabled = true;
    try {
      await this.queue(async () => {
        if (this.closed) return;
        const d = this.draft();
        if (typeof d === "string") return this.showError(d);
        if (this.items.some((i) => i.el.dataset.state === "error")) {
          return this.showError("remove the attachments that failed to upload, or attach them again");
        }
        if (this.uploading()) {
          this.sendButton.textContent = "Sending when uploads finish…";
          await Promise.allSettled(this.items.map((i) => i.done));
          this.sendButton.textContent = "Send";
          return this.sendAfterUploads();
        }
        return this.doSend(d);
      });
    } finally {
      this.sendButton.disabled = false;
    }
  }

  private async sendAfterUploads(): Promise<void> {
    if (this.closed) return;
    if (this.items.some((i) => !i.att)) return this.showError("an attachment failed to upload: remove it or try again");
    const d = this.draft();
    if (typeof d === "string") return this.showError(d);
    return this.doSend(d);
  }

  private async doSend(d: Draft): Promise<void> {
    const original = this.original && this.mode !== "draft" && this.mode !== "new"
      ? { id: this.original.id, keyword: (this.mode === "forward" ? "$forwarded" : "$answered") as "$answered" | "$forwarded" }
      : null;
    try {
      await send(this.ctx, d, { previous: this.draftId, original });
    } catch (e) {
      if (e instanceof SendError) this.draftId = e.draftId;
      this.showError((e as Error).message);
      return;
    }
    this.draftId = null;
    this.dirty = false;
    this.teardown();
    this.ctx.notify("Message sent");
    this.ctx.refresh();
  }

  /** Close the panel; with `keep`, a changed message is saved as a draft first. */
  async close(keep: boolean): Promise<void> {
    if (this.closed) return;
    if (keep && this.dirty) {
      if (this.uploading()) await Promise.allSettled(this.items.map((i) => i.done));
      if (!(await this.save(false))) {
        this.showError("the draft could not be saved: send it, save it again, or discard it");
        return;
      }
      this.ctx.notify("Draft saved");
    }
    this.teardown();
  }

  private async discard(): Promise<void> {
    if ((this.dirty || this.draftId) && !window.confirm("Discard this message?")) return;
    for (const i of this.items) i.abort();
    await this.queue(async () => {
      if (this.draftId) {
        try {
          await destroy(this.ctx, this.draftId);
          this.ctx.refresh();
        } catch {
          /* it stays in Drafts */
        }
      }
    });
    this.teardown();
    this.ctx.notify("Message discarded");
  }

  private teardown(): void {
    this.closed = true;
    window.clearTimeout(this.timer);
    this.root.remove();
    if (open === this) open = null;
  }
}

function joinField(value: string): string {
  return value ? `${value}, ` : "";
}
