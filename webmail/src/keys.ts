/**
 * Keyboard shortcuts for the common actions (Gmail-like single keys).
 *
 * In:   a map key -> action (`KeyboardEvent.key` values: "j", "#", "Enter", "Escape"...).
 * Out:  the listener installed; the function returned removes it.
 * Fails: never. Keys typed into a field, a select or an editable element are left alone, as are
 *       keys with Ctrl/Alt/Meta (the browser's own shortcuts).
 */

export function installShortcuts(map: Record<string, () => void>): () => void {
  const listener = (ev: KeyboardEvent) => {
    if (ev.ctrlKey || ev.altKey || ev.metaKey || ev.defaultPrevented) return;
    const t = ev.target as HTMLElement | null;
    if (t && (t.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(t.tagName))) {
      if (ev.key !== "Escape" || t.tagName === "INPUT") return;
    }
    if (t && t.tagName === "BUTTON" && (ev.key === "Enter" || ev.key === " ")) return;
    if (t && t.closest && t.closest('[role="menu"], dialog, .compose, .settings')) return;
    const action = map[ev.key];
    if (!action) return;
    ev.preventDefault();
    action();
  };
  document.addEventListener("keydown", listener);
  return () => document.removeEventListener("keydown", listener);
}
