// Per-model state (owned by `initialize`): requests with ids, replies, views, breadcrumb, circuit.
import type { AnyModel } from "@anywidget/types";
import { splitCircuit, splitView, type Bytes, type CircuitEntry, type Panel } from "./decode";
import { splitEstimate, type EstimateSection } from "./estimate";
import { gridLayout, type GridLayout } from "./layout";
import {
  asReply,
  componentKey,
  type CircuitMeta,
  type ComponentSpec,
  type Reply,
  type ViewMeta,
  type ViewDirection,
  type ViewRequest,
  type WidgetState,
} from "./protocol";

export interface ViewState {
  meta: ViewMeta;
  panels: Panel[];
  grid: GridLayout;
  estimate?: EstimateSection[] | null;
}

export interface Crumb {
  label: string;
  request: ViewRequest;
  view: ViewState | null;
}

export interface Problem {
  message: string;
  field: string | null;
  kind: string;
}

export type Topic = "view" | "progress" | "circuit" | "prompts" | "settings" | "status" | "message";
type Listener = (topic: Topic) => void;

const ENGINE_KINDS = new Set(["sweep", "circuit", "set_prompts"]);

export class Store {
  crumbs: Crumb[] = [];
  /** Id of the latest view request: replies for any other view id are stale and ignored. */
  activeViewId: number | null = null;
  /** Latest engine request (sweep, circuit or set_prompts) still waiting for its reply. */
  running: { id: number; kind: string } | null = null;
  progress: { done: number; total: number; eta: number | null } | null = null;
  error: Problem | null = null;
  promptError: Problem | null = null;
  circuitResult: { meta: CircuitMeta; entries: CircuitEntry[] } | null = null;
  message = "";
  code: string | null = null;
  private nextId = 1;
  private latestCircuitId: number | null = null;
  private autoRan = false;
  private listeners = new Set<Listener>();

  constructor(readonly model: AnyModel<WidgetState>) {
    this.restore();
  }

  // ---- subscriptions -----------------------------------------------------------------------

  subscribe(fn: Listener): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  emit(topic: Topic): void {
    for (const fn of [...this.listeners]) fn(topic);
  }

  get current(): Crumb | null {
    return this.crumbs[this.crumbs.length - 1] ?? null;
  }

  get status(): "idle" | "running" | "error" {
    if (this.running) return "running";
    return this.error || this.promptError ? "error" : "idle";
  }

  // ---- settings kept in synced traitlets ---------------------------------------------------

  get<K extends keyof WidgetState>(key: K): WidgetState[K] {
    return this.model.get(key);
  }

  set<K extends keyof WidgetState>(key: K, value: WidgetState[K]): void {
    this.model.set(key, value);
    this.model.save_changes();
    this.emit("settings");
  }

  inCircuit(c: ComponentSpec): boolean {
    const key = componentKey(c);
    return this.get("circuit").some((x) => componentKey(x) === key);
  }

  toggleCircuit(c: ComponentSpec): void {
    const key = componentKey(c);
    const list = this.get("circuit") ?? [];
    const next = list.some((x) => componentKey(x) === key)
      ? list.filter((x) => componentKey(x) !== key)
      : [...list, c];
    this.set("circuit", next);
    this.emit("circuit");
  }

  // ---- requests ------------------------------------------------------------------------------

  private send(type: string, body: Record<string, unknown>): number {
    const id = this.nextId++;
    if (ENGINE_KINDS.has(type)) {
      this.running = { id, kind: type };
      this.progress = null;
      this.emit("status");
    }
    this.model.send({ ...body, type, id });
    return id;
  }

  /** Show a view: `push` adds a breadcrumb level (drill-down), otherwise starts a new trail. */
  runView(request: ViewRequest, push: boolean): void {
    this.error = null;
    const crumb: Crumb = { label: request.label || request.site, request, view: null };
    this.crumbs = push ? [...this.crumbs, crumb] : [crumb];
    this.activeViewId = this.send("sweep", { ...request });
    this.emit("view");
  }

  /** The current view again in another direction; earlier breadcrumb levels rerun when revisited. */
  rerunIn(direction: ViewDirection, fallback: ViewRequest): void {
    const current = this.current;
    if (!current) {
      this.runView({ ...fallback, direction }, false);
      return;
    }
    for (const crumb of this.crumbs) {
      crumb.request = { ...crumb.request, direction };
      crumb.view = null;
    }
    this.crumbs = this.crumbs.slice(0, -1);
    this.runView(current.request, true);
  }

  /** First display without a saved result: sweep the chosen site once, so there's a map to see. */
  autoRun(request: ViewRequest): void {
    if (this.autoRan || this.crumbs.length || this.running) return;
    this.autoRan = true;
    this.runView(request, false);
  }

  /** Go back to breadcrumb `index`; its result is kept in the browser, so nothing reruns. */
  goTo(index: number): void {
    if (index < 0 || index >= this.crumbs.length - 1) return;
    if (this.running?.kind === "sweep") this.cancel();
    this.crumbs = this.crumbs.slice(0, index + 1);
    const crumb = this.crumbs[index];
    if (crumb.view) this.activeViewId = crumb.view.meta.id;
    else this.runView(crumb.request, true);
    this.emit("view");
  }

  cancel(): void {
    this.send("cancel", {});
  }

  patchCircuit(): void {
    this.error = null;
    this.latestCircuitId = this.send("circuit", { components: this.get("circuit") });
  }

  setPrompts(clean: string, corrupted: string, answers: string): void {
    this.promptError = null;
    this.send("set_prompts", { clean, corrupted, answers });
    this.emit("prompts");
  }

  copyCode(): void {
    const view = this.current;
    if (!view) {
      this.note("Run a sweep first: the code reproduces the view on screen.");
      return;
    }
    this.send("copy_code", {
      view: view.request,
      metric: this.get("metric"),
      normalized: this.get("normalized"),
    });
  }

  saveFigure(): void {
    const view = this.current?.view;
    if (!view) {
      this.note("Run a sweep first: the figure shows the view on screen.");
      return;
    }
    this.send("save_figure", {
      view_id: view.meta.id,
      metric: this.get("metric"),
      normalized: this.get("normalized"),
    });
  }

  note(message: string): void {
    this.message = message;
    this.emit("message");
  }

  // ---- replies -------------------------------------------------------------------------------

  handle(raw: unknown, buffers: Bytes[]): void {
    const reply = asReply(raw);
    if (!reply) return;
    try {
      this.apply(reply, buffers);
    } catch (err) {
      this.fail({ message: `could not read the kernel's reply: ${String(err)}`, field: null, kind: reply.type });
    }
  }

  private apply(reply: Reply, buffers: Bytes[]): void {
    switch (reply.type) {
      case "started":
      case "ack":
        return;
      case "progress":
        if (reply.id !== this.activeViewId) return;
        this.showView(reply.meta, buffers[0]);
        this.progress = { done: reply.meta.done, total: reply.meta.total, eta: reply.meta.eta_s };
        this.emit("progress");
        return;
      case "result":
        if (reply.id === this.activeViewId && reply.meta) {
          this.showView(reply.meta, buffers[0]);
          this.progress = { done: reply.meta.done, total: reply.meta.total, eta: null };
          if (reply.status === "cancelled") this.note("Cancelled: the cells that finished are kept.");
        }
        this.finish(reply.id);
        return;
      case "superseded":
        this.finish(reply.id);
        return;
      case "circuit_result":
        if (reply.id === this.latestCircuitId) {
          this.circuitResult = { meta: reply.meta, entries: splitCircuit(reply.meta, buffers[0]) };
          this.emit("circuit");
        }
        this.finish(reply.id);
        return;
      case "prompts_set":
        this.crumbs = [];
        this.activeViewId = null;
        this.circuitResult = null;
        this.finish(reply.id);
        this.note("Prompts updated: run a sweep to see the new results.");
        this.emit("view");
        this.emit("circuit");
        this.emit("prompts");
        return;
      case "code":
        this.code = reply.code;
        copyText(reply.code).then(
          (ok) => this.note(ok ? "Code copied to the clipboard." : "Copy the code below (clipboard unavailable)."),
          () => this.note("Copy the code below (clipboard unavailable)."),
        );
        return;
      case "saved":
        this.note(`Figure saved: ${reply.path}`);
        return;
      case "error":
        this.fail({ message: reply.message, field: reply.field, kind: reply.kind });
        if (reply.id !== null) this.finish(reply.id);
        return;
    }
  }

  private finish(id: number): void {
    if (this.running?.id === id) {
      this.running = null;
      this.emit("status");
    }
  }

  private fail(problem: Problem): void {
    if (problem.kind === "set_prompts") {
      this.promptError = problem;
      this.emit("prompts");
    }
    this.error = problem;
    this.emit("status");
    this.emit("message");
  }

  private showView(meta: ViewMeta, bytes: Bytes | undefined): void {
    if (!bytes) throw new Error("view reply without data");
    const view: ViewState = { meta, panels: splitView(meta, bytes), grid: gridLayout(meta), estimate: splitEstimate(meta, bytes) };
    const crumb = this.crumbs.find((c) => c.view?.meta.id === meta.id) ?? this.current;
    if (crumb) crumb.view = view;
    else this.crumbs = [{ label: meta.request.label || meta.site, request: meta.request, view }];
    this.emit("view");
  }

  /** The last result saved with the notebook (synced traitlets), shown on first render. */
  restore(): void {
    const meta = this.model.get("result_meta");
    const bytes = this.model.get("result_bytes");
    if (isFilled<ViewMeta>(meta) && bytes) {
      try {
        const view: ViewState = { meta, panels: splitView(meta, bytes), grid: gridLayout(meta), estimate: splitEstimate(meta, bytes) };
        this.crumbs = [{ label: meta.request.label || meta.site, request: meta.request, view }];
        this.activeViewId = meta.id;
        this.nextId = Math.max(this.nextId, meta.id + 1);
      } catch {
        this.crumbs = [];
      }
    }
    const cmeta = this.model.get("circuit_meta");
    const cbytes = this.model.get("circuit_bytes");
    if (isFilled<CircuitMeta>(cmeta) && cbytes) {
      try {
        this.circuitResult = { meta: cmeta, entries: splitCircuit(cmeta, cbytes) };
        this.nextId = Math.max(this.nextId, cmeta.id + 1);
      } catch {
        this.circuitResult = null;
      }
    }
  }
}

/** Traitlet dicts are {} until the kernel fills them. */
function isFilled<T extends { id: number }>(value: T | Record<string, never> | null | undefined): value is T {
  return !!value && typeof (value as { id?: unknown }).id === "number";
}

/** Clipboard write with a fallback for browsers that refuse it outside a user gesture. */
async function copyText(text: string): Promise<boolean> {
  try {
    await navigator.clipboard.writeText(text);
    return true;
  } catch {
    const area = document.createElement("textarea");
    area.value = text;
    area.style.position = "fixed";
    area.style.opacity = "0";
    document.body.append(area);
    area.select();
    let ok = false;
    try {
      ok = document.execCommand("copy");
    } catch {
      ok = false;
    }
    area.remove();
    return ok;
  }
}
