// Tiny DOM helpers: element creation and listeners that are all removed on cleanup.

type Attrs = Record<string, string | number | boolean | undefined | null>;

/** Create an element; attributes with value false/null/undefined are skipped. */
export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attrs: Attrs = {},
  ...children: (Node | string | null | undefined)[]
): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === false || value === null || value === undefined) continue;
    if (key === "class") el.className = String(value);
    else if (key === "text") el.textContent = String(value);
    else el.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children) {
    if (child !== null && child !== undefined) el.append(child);
  }
  return el;
}

/** Collects cleanup callbacks; `dispose()` runs them all once. */
export class Disposer {
  private fns: (() => void)[] = [];

  listen<E extends Event>(
    target: EventTarget,
    type: string,
    fn: (e: E) => void,
    opts?: AddEventListenerOptions,
  ): void {
    const handler = fn as EventListener;
    target.addEventListener(type, handler, opts);
    this.fns.push(() => target.removeEventListener(type, handler, opts));
  }

  add(fn: () => void): void {
    this.fns.push(fn);
  }

  dispose(): void {
    for (const fn of this.fns.splice(0).reverse()) fn();
  }
}
