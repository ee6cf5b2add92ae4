/**
 * The role=status toast (data-testid "status"): one short message at a time, read by screen readers.
 *
 * In:   text.  Out: the toast shown for a few seconds.  Fails: never.
 */

let timer = 0;

export function notify(text: string): void {
  const el = document.getElementById("toast");
  if (!el) return;
  el.textContent = text;
  el.hidden = false;
  clearTimeout(timer);
  timer = window.setTimeout(() => {
    el.hidden = true;
  }, 5000);
}
