/**
 * New mail without reloading: JMAP push over WebSocket (RFC 8887), as the front offers it.
 *
 * In:   the JMAP client (its session's `urn:ietf:params:jmap:websocket` url), a callback.
 * Out:  {@link Push}: connects with a one-time ticket (POST /auth/ticket, the `ticket` query
 *       parameter, subprotocol "jmap"), enables push for every type, and calls `changed()` for
 *       each StateChange and `connected()` when a socket opens (the app asks what changed while
 *       it was not listening: {@link Push.start}'s caller decides how); reconnects with backoff (API Gateway closes sockets after 10 idle
 *       minutes and after 2 hours) and re-enables push every few minutes to stay open.
 * Fails: never throws; without push the app still polls every few minutes (`poll`).
 */

import { type Jmap, Unauthorized, WEBSOCKET } from "./jmap";

const PING_MS = 4 * 60_000;
const POLL_MS = 3 * 60_000;

export class Push {
  private ws: WebSocket | null = null;
  private stopped = false;
  private retry = 1000;
  private ping = 0;
  private poll = 0;
  private reconnect = 0;
  connected = false;

  constructor(private jmap: Jmap, private changed: () => void, private opened: () => void = changed) {}

  start(): void {
    this.stopped = false;
    this.poll = window.setInterval(() => {
      if (!this.connected) this.changed();
    }, POLL_MS);
    void this.connect();
  }

  stop(): void {
    this.stopped = true;
    clearInterval(this.ping);
    clearInterval(this.poll);
    clearTimeout(this.reconnect);
    this.ws?.close(1000);
    this.ws = null;
  }

  private async connect(): Promise<void> {
    const cap = this.jmap.session.capabilities[WEBSOCKET];
    if (!cap?.url || this.stopped) return;
    let ticket: string;
    try {
      ticket = await this.jmap.ticket();
    } catch (e) {
      if (!(e instanceof Unauthorized)) this.later();
      return;
    }
    if (this.stopped) return;
    const url = new URL(cap.url, location.href);
    if (url.protocol === "http:") url.protocol = "ws:";
    if (url.protocol === "https:") url.protocol = "wss:";
    url.searchParams.set("ticket", ticket);
    let ws: WebSocket;
    try {
      ws = new WebSocket(url.toString(), "jmap");
    } catch {
      this.later();
      return;
    }
    this.ws = ws;
    ws.onopen = () => {
      this.connected = true;
      this.retry = 1000;
      ws.send(JSON.stringify({ "@type": "WebSocketPushEnable", dataTypes: null }));
      clearInterval(this.ping);
      this.ping = window.setInterval(() => {
        if (ws.readyState === WebSocket.OPEN) {
          // this socket carries push only (a Request is notRequest): enabling again is the keep-alive
          ws.send(JSON.stringify({ "@type": "WebSocketPushEnable", dataTypes: null }));
        }
      }, PING_MS);
      this.opened(); // whatever happened while we were not connected
    };
    ws.onmessage = (ev) => {
      try {
        const msg = JSON.parse(String(ev.data));
        if (msg["@type"] === "StateChange") this.changed();
      } catch {
        /* not JSON: ignore */
      }
    };
    ws.onclose = () => {
      this.connected = false;
      clearInterval(this.ping);
      if (this.ws === ws) this.ws = null;
      this.later();
    };
  }

  private later(): void {
    if (this.stopped) return;
    clearTimeout(this.reconnect);
    this.reconnect = window.setTimeout(() => void this.connect(), this.retry);
    this.retry = Math.min(this.retry * 2, 60_000);
  }
}
