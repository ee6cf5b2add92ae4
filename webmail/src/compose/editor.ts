/**
 * The compose body: plain text (a textarea) or rich text (a contenteditable with a small toolbar).
 *
 * In:   the initial plain text, or the initial rich content as DOM nodes the caller built from text
 *       (a quoted original is never inserted as markup: the app puts no mail HTML into its own DOM).
 * Out:  {@link Editor}: `text()` (what the text/plain part carries), `html()` (the text/html part,
 *       null in plain mode), `setMode()` converting between the two, `element` to mount.
 * Fails: never; pasted content is inserted as plain text.
 */

import DOMPurify from "dompurify";

const BLOCK = new Set(["ADDRESS", "ARTICLE", "ASIDE", "BLOCKQUOTE", "DIV", "DL", "DT", "DD", "FIELDSET", "FIGURE",
  "FOOTER", "FORM", "H1", "H2", "H3", "H4", "H5", "H6", "HEADER", "HR", "LI", "MAIN", "NAV", "OL", "P", "PRE",
  "SECTION", "TABLE", "TR", "UL"]);

/** Text of an HTML string, read with DOMParser (an inert document: no script runs, nothing loads). */
export function htmlToText(html: string): string {
  const doc = new DOMParser().parseFromString(html, "text/html");
  return nodeText(doc.body).replace(/[ \t]+\n/g, "\n").replace(/\n{3,}/g, "\n\n").trim();
}

/** Text of a DOM subtree: block elements and <br> break lines, blockquotes are quoted with "> ". */
export function nodeText(root: Node): string {
  let out = "";
  const walk = (n: Node): void => {
    if (n.nodeType === Node.TEXT_NODE) {
      out += (n.nodeValue ?? "").replace(/\s+/g, " ");
      return;
    }
    if (n.nodeType !== Node.ELEMENT_NODE) return;
    const el = n as Element;
    if (["SCRIPT", "STYLE", "HEAD", "TITLE", "TEMPLATE"].includes(el.tagName)) return;
    if (el.tagName === "BR") {
      out += "\n";
      return;
    }
    if (el.tagName === "BLOCKQUOTE") {
      const inner = nodeText(el).replace(/\n+$/, "");
      out += (out && !out.endsWith("\n") ? "\n" : "") + inner.split("\n").map((l) => (l.startsWith(">") ? `>${l}` : `> ${l}`)).join("\n") + "\n";
      return;
    }
    const block = BLOCK.has(el.tagName);
    if (block && out && !out.endsWith("\n")) out += "\n";
    if (el.tagName === "LI") out += "- ";
    if (el.tagName === "A") {
      const href = el.getAttribute("href") || "";
      el.childNodes.forEach(walk);
      const label = el.textContent || "";
      if (href && /^(https?|mailto):/i.test(href) && href !== label && `mailto:${label}` !== href) out += ` <${href}>`;
      return;
    }
    el.childNodes.forEach(walk);
    if (block && !out.endsWith("\n")) out += "\n";
  };
  walk(root);
  return out;
}

export function escapeHtml(s: string): string {
  return s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");
}

/** Plain text as paragraphs of rich-text DOM (text nodes and <br> only: never parsed as markup). */
export function textNodes(text: string, doc: Document = document): DocumentFragment {
  const frag = doc.createDocumentFragment();
  const lines = text.replace(/\r\n/g, "\n").split("\n");
  lines.forEach((line, i) => {
    if (i) frag.appendChild(doc.createElement("br"));
    if (line) frag.appendChild(doc.createTextNode(line));
  });
  return frag;
}

/** A user's HTML signature (their own, from Identity/set), cleaned: no scripts, no remote loads. */
export function cleanSignature(html: string): DocumentFragment {
  return DOMPurify.sanitize(html, {
    RETURN_DOM_FRAGMENT: true,
    FORBID_TAGS: ["img", "style", "form", "input", "video", "audio", "iframe", "object", "embed"],
    FORBID_ATTR: ["style", "class", "id"],
  }) as DocumentFragment;
}

export type EditorMode = "plain" | "rich";

const TOOLBAR: [string, string, string][] = [
  ["bold", "B", "Bold (Ctrl+B)"],
  ["italic", "I", "Italic (Ctrl+I)"],
  ["underline", "U", "Underline (Ctrl+U)"],
  ["insertUnorderedList", "•", "Bulleted list"],
  ["insertOrderedList", "1.", "Numbered list"],
  ["createLink", "🔗", "Link"],
  ["removeFormat", "⌫", "Clear formatting"],
];

export class Editor {
  readonly element: HTMLElement;
  private readonly textarea: HTMLTextAreaElement;
  private readonly rich: HTMLDivElement;
  private readonly toolbar: HTMLElement;
  mode: EditorMode = "plain";
  onInput: () => void = () => {};

  constructor(doc: Document = document) {
    this.element = doc.createElement("div");
    this.element.className = "compose-editor";
    this.toolbar = doc.createElement("div");
    this.toolbar.className = "compose-toolbar";
    this.toolbar.setAttribute("role", "toolbar");
    this.toolbar.setAttribute("aria-label", "Formatting");
    for (const [cmd, label, title] of TOOLBAR) {
      const b = doc.createElement("button");
      b.type = "button";
      b.textContent = label;
      b.title = title;
      b.setAttribute("aria-label", title);
      b.addEventListener("mousedown", (e) => e.preventDefault()); // keep the selection in the editor
      b.addEventListener("click", () => this.command(cmd));
      this.toolbar.appendChild(b);
    }
    this.textarea = doc.createElement("textarea");
    this.textarea.setAttribute("aria-label", "Message");
    this.textarea.spellcheck = true;
    this.textarea.addEventListener("input", () => this.onInput());
    this.rich = doc.createElement("div");
    this.rich.contentEditable = "true";
    this.rich.setAttribute("role", "textbox");
    this.rich.setAttribute("aria-multiline", "true");
    this.rich.setAttribute("aria-label", "Message");
    this.rich.spellcheck = true;
    this.rich.className = "compose-rich";
    this.rich.addEventListener("input", () => this.onInput());
    this.rich.addEventListener("paste", (e) => {
      // pasted HTML could carry anything (scripts are blocked by the CSP, remote images would load):
      // it comes in as text
      e.preventDefault();
      const text = e.clipboardData?.getData("text/plain") ?? "";
      doc.execCommand("insertText", false, text);
    });
    this.element.append(this.toolbar, this.textarea, this.rich);
    this.show();
  }

  private show(): void {
    const rich = this.mode === "rich";
    this.toolbar.hidden = !rich;
    this.rich.hidden = !rich;
    this.textarea.hidden = rich;
    // one element carries the test hook: the one the user types into
    this.textarea.toggleAttribute("data-testid", false);
    this.rich.toggleAttribute("data-testid", false);
    (rich ? this.rich : this.textarea).setAttribute("data-testid", "compose-body");
  }

  private command(cmd: string): void {
    this.rich.focus();
    if (cmd === "createLink") {
      const url = window.prompt("Link address (https://...)", "https://");
      if (!url || !/^(https?:\/\/|mailto:)/i.test(url.trim())) return;
      document.execCommand("createLink", false, url.trim());
    } else document.execCommand(cmd, false);
    this.onInput();
  }

  /** Plain mode with this text. */
  setPlain(text: string): void {
    this.mode = "plain";
    this.textarea.value = text;
    this.show();
  }

  /** Rich mode with these nodes. */
  setRich(content: DocumentFragment | Node): void {
    this.mode = "rich";
    this.rich.replaceChildren(content);
    this.show();
  }

  /** Rich mode with a stored draft's HTML (the user's own, cleaned by DOMPurify before it is shown). */
  setRichHtml(html: string): void {
    const frag = DOMPurify.sanitize(html, { RETURN_DOM_FRAGMENT: true, FORBID_TAGS: ["img", "style"], FORBID_ATTR: ["style"] });
    this.setRich(frag as DocumentFragment);
  }

  setMode(mode: EditorMode): void {
    if (mode === this.mode) return;
    if (mode === "rich") this.setRich(textNodes(this.textarea.value));
    else this.setPlain(this.text());
  }

  text(): string {
    return this.mode === "plain" ? this.textarea.value : nodeText(this.rich).replace(/\n+$/, "\n");
  }

  html(): string | null {
    return this.mode === "rich" ? this.rich.innerHTML : null;
  }

  focus(): void {
    const el = this.mode === "rich" ? this.rich : this.textarea;
    el.focus();
    if (this.mode === "plain") this.textarea.setSelectionRange(0, 0);
  }
}
