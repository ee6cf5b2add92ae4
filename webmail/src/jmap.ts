/**
 * JMAP client (RFC 8620 core, RFC 8621 mail) over the HTTPS front, same origin only.
 *
 * In:   a bearer token from POST /auth/token (kept in memory only, never in storage or a URL).
 * Out:  {@link Jmap}: the Session, `call()` for a batch of method calls with result references,
 *       blob download (as a Blob, following the front's 302 to a presigned S3 GET) and upload.
 * Fails: {@link Unauthorized} on 401 (the token expired or was revoked: the app goes back to
 *       sign-in through `onUnauthorized`), {@link JmapError} for a request-level problem
 *       (RFC 7807) or a method-level error (RFC 8620 §3.6.2).
 */

export const CORE = "urn:ietf:params:jmap:core";
export const MAIL = "urn:ietf:params:jmap:mail";
export const SUBMISSION = "urn:ietf:params:jmap:submission";
export const QUOTA = "urn:ietf:params:jmap:quota";
export const VACATION = "urn:ietf:params:jmap:vacationresponse";
export const WEBSOCKET = "urn:ietf:params:jmap:websocket";
export const UPLOAD = "https://postern.dev/jmap/upload";
export const POSTERN = "https://postern.dev/jmap";

export interface Session {
  capabilities: Record<string, any>;
  accounts: Record<string, { name: string; accountCapabilities: Record<string, any> }>;
  primaryAccounts: Record<string, string>;
  username: string;
  apiUrl: string;
  downloadUrl: string;
  uploadUrl: string;
  state: string;
}

export type Invocation = [string, Record<string, unknown>, string];

export class Unauthorized extends Error {}

export class JmapError extends Error {
  /** seconds the server asked us to wait (Retry-After on 429/503), 0 when it did not say */
  retryAfter = 0;

  constructor(public type: string, public description: string, public status = 0) {
    super(description ? `${type}: ${description}` : type);
  }
}

/** A signed-in user's token, as POST /auth/token gave it. */
export interface Token {
  value: string;
  expiresAt: number; // ms since the epoch
  username: string;
}

async function problemOf(r: Response): Promise<JmapError> {
  let type = `http ${r.status}`;
  let detail = r.statusText;
  try {
    const body = await r.json();
    type = body.type || body.title || type;
    detail = body.detail || body.title || body.message || detail;
  } catch {
    /* not JSON: the status says it */
  }
  const error = new JmapError(type, detail, r.status);
  const wait = Number(r.headers.get("Retry-After") || 0);
  if (wait > 0) error.retryAfter = wait;
  return error;
}

/** POST /auth/token with the address and password: a bearer token, or a JmapError to show. */
export async function signIn(username: string, password: string): Promise<Token> {
  const r = await fetch("/auth/token", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ username, password }),
    credentials: "omit",
    cache: "no-store",
  });
  if (!r.ok) throw await problemOf(r);
  const body = await r.json();
  return {
    value: body.access_token,
    expiresAt: Date.now() + Number(body.expires_in || 3600) * 1000,
    username: body.username || username,
  };
}

export class Jmap {
  session!: Session;
  accountId = "";
  onUnauthorized: () => void = () => {};

  constructor(private token: Token) {}

  get username(): string {
    return this.token.username;
  }

  get expiresAt(): number {
    return this.token.expiresAt;
  }

  private headers(extra: Record<string, string> = {}): Record<string, string> {
    return { Authorization: `Bearer ${this.token.value}`, ...extra };
  }

  private async send(url: string, init: RequestInit): Promise<Response> {
    const r = await fetch(url, { ...init, credentials: "omit", cache: "no-store" });
    if (r.status === 401) {
      this.onUnauthorized();
      throw new Unauthorized("Signed out: the session expired");
    }
    return r;
  }

  /** GET /.well-known/jmap: the Session (RFC 8620 §2). */
  async loadSession(): Promise<Session> {
    const r = await this.send("/.well-known/jmap", { headers: this.headers() });
    if (!r.ok) throw await problemOf(r);
    this.session = await r.json();
    this.accountId = this.session.primaryAccounts[MAIL] || Object.keys(this.session.accounts)[0];
    return this.session;
  }

  has(capability: string): boolean {
    return capability in (this.session.accounts[this.accountId]?.accountCapabilities || {});
  }

  accountCapability(capability: string): any {
    return this.session.accounts[this.accountId]?.accountCapabilities?.[capability];
  }

  /** One request of several calls; returns the responses in order (an "error" response stays in place). */
  async request(calls: Invocation[], using: string[] = [CORE, MAIL]): Promise<Invocation[]> {
    const r = await this.send(this.apiUrl(), {
      method: "POST",
      headers: this.headers({ "Content-Type": "application/json" }),
      body: JSON.stringify({ using, methodCalls: calls }),
    });
    if (!r.ok) throw await problemOf(r);
    const body = await r.json();
    return body.methodResponses as Invocation[];
  }

  /** One method call: its arguments, or a JmapError for an "error" response. */
  async call<T = any>(method: string, args: Record<string, unknown>, using?: string[]): Promise<T> {
    const [resp] = await this.request([[method, { accountId: this.accountId, ...args }, "0"]], using);
    return unwrap(resp) as T;
  }

  private apiUrl(): string {
    return sameOrigin(this.session.apiUrl);
  }

  /** The download URL of a blob (RFC 8620 §6.2), on this origin. */
  downloadUrl(blobId: string, name: string, type: string): string {
    const t = this.session.downloadUrl
      .replace("{accountId}", encodeURIComponent(this.accountId))
      .replace("{blobId}", encodeURIComponent(blobId))
      .replace("{name}", encodeURIComponent(name || "download"))
      .replace("{type}", encodeURIComponent(type || "application/octet-stream"));
    return sameOrigin(t);
  }

  /** A blob's bytes. The front answers 302 to a presigned S3 GET; the browser drops our
   * Authorization header on that cross-origin redirect (S3 refuses two authentications). */
  async download(blobId: string, name: string, type: string): Promise<Blob> {
    const r = await this.send(this.downloadUrl(blobId, name, type), { headers: this.headers() });
    if (!r.ok) throw await problemOf(r);
    return await r.blob();
  }

  /** POST the bytes to uploadUrl (RFC 8620 §6.1): {blobId, type, size}. */
  async upload(data: Blob, type: string): Promise<{ blobId: string; type: string; size: number }> {
    const url = sameOrigin(this.session.uploadUrl.replace("{accountId}", encodeURIComponent(this.accountId)));
    const r = await this.send(url, {
      method: "POST",
      headers: this.headers({ "Content-Type": type || "application/octet-stream" }),
      body: data,
    });
    if (!r.ok) throw await problemOf(r);
    return await r.json();
  }

  /** POST /auth/ticket: a one-time ticket for the push WebSocket. */
  async ticket(): Promise<string> {
    const r = await this.send("/auth/ticket", { method: "POST", headers: this.headers() });
    if (!r.ok) throw await problemOf(r);
    return (await r.json()).ticket;
  }

  /** DELETE /auth/token: revoke the token (sign-out). Best effort: the token is dropped anyway. */
  async signOut(): Promise<void> {
    try {
      await fetch("/auth/token", { method: "DELETE", headers: this.headers(), credentials: "omit" });
    } catch {
      /* offline: the token still dies with the page and expires on the server */
    }
    this.token = { value: "", expiresAt: 0, username: "" };
  }
}

/** The arguments of a method response, or its error as a JmapError. */
export function unwrap(resp: Invocation): any {
  if (resp[0] === "error") {
    const a = resp[1] as { type?: string; description?: string };
    throw new JmapError(a.type || "serverFail", a.description || "");
  }
  return resp[1];
}

/** The path and query of a URL the session names: the app only ever talks to its own origin
 * (the CSP's connect-src), and the session's base URL may name the front by another host. */
function sameOrigin(url: string): string {
  try {
    const u = new URL(url, location.href);
    return u.pathname + u.search;
  } catch {
    return url;
  }
}
