/**
 * The sign-in page: address and password -> a bearer token (POST /auth/token).
 *
 * In:   the root element, a message to show (e.g. "Your session expired").
 * Out:  resolves with the {@link Token} once the server accepts the credentials; the password
 *       field is cleared and nothing is stored (the token lives in memory only).
 * Fails: never rejects: a wrong password, a lockout (429 with Retry-After) or a network error is
 *       shown in `signin-error` and the form stays.
 */

import { h, clear } from "./dom";
import { JmapError, signIn, type Token } from "./jmap";

export function showSignIn(root: HTMLElement, message = ""): Promise<Token> {
  clear(root);
  document.title = "Sign in - Postern Mail";
  return new Promise((resolve) => {
    const email = h("input", {
      id: "signin-email", testid: "signin-email", type: "email", name: "username", autocomplete: "username",
      required: true, autocapitalize: "none", spellcheck: "false",
    });
    const password = h("input", {
      id: "signin-password", testid: "signin-password", type: "password", name: "password",
      autocomplete: "current-password", required: true,
    });
    const error = h("p", { testid: "signin-error", className: "signin-error", role: "alert", id: "signin-error" }, message);
    error.hidden = !message;
    const submit = h("button", { type: "submit", testid: "signin-submit", className: "primary" }, "Sign in");
    const form = h("form", { className: "signin", "aria-describedby": "signin-error", novalidate: true },
      h("h1", {}, "Postern Mail"),
      h("label", { for: "signin-email" }, "Email address"), email,
      h("label", { for: "signin-password" }, "Password"), password,
      error, submit);
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      if (!email.value.trim() || !password.value) {
        error.textContent = "Enter your email address and password.";
        error.hidden = false;
        return;
      }
      submit.disabled = true;
      error.hidden = true;
      try {
        const token = await signIn(email.value.trim(), password.value);
        password.value = "";
        resolve(token);
      } catch (e) {
        error.textContent = describe(e);
        error.hidden = false;
        password.select();
        password.focus();
      } finally {
        submit.disabled = false;
      }
    });
    root.appendChild(h("main", { className: "signin-page" }, form));
    email.focus();
  });
}

function describe(e: unknown): string {
  if (e instanceof JmapError) {
    if (e.status === 401 || e.status === 403) return e.description || "Wrong email address or password.";
    if (e.status === 429) {
      const minutes = Math.ceil(e.retryAfter / 60);
      const when = e.retryAfter ? ` in ${minutes} minute${minutes === 1 ? "" : "s"}` : " later";
      return `Too many failed sign-ins: this account is locked for now. Try again${when}.`;
    }
    if (e.status >= 500) return "The server is unavailable: try again in a moment.";
    return e.description || e.message;
  }
  return "Cannot reach the server: check your connection.";
}
