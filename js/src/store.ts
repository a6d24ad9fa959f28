// Per-model state (owned by `initialize`): requests with ids, replies, views, breadcrumb, circuit.
import type { AnyModel } from "@anywidget/types";
import { splitCircuit, splitView, toFloat32, type Bytes, type CircuitEntry, type Panel } from "./decode";
import { splitEstimate, type EstimateSection } from "./estimate";
import { gridLayout, type GridLayout } from "./layout";
import type { DrillOption } from "./drill";
import type { ScaleChoice, ScaleMode } from "./scale";
import {
  asReply,
  componentKey,
  type AttentionMeta,
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
  /** Finer views of the same cell (e.g. a residual cell's writers and readers); one is shown. */
  options?: DrillOption[];
}

export interface Problem {
  message: string;
  field: string | null;
  kind: string;
}

export type Topic = "view" | "progress" | "circuit" | "prompts" | "settings" | "status" | "message" | "path" | "attention";
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
  /** Path of the last file saved by the kernel (shown so it can be opened). */
  savedPath: string | null = null;
  /** The colour scale of every view (normalised: the whole gap unless the user changes it). */
  scale: ScaleChoice = { mode: "gap", locked: null };
  /** Show normalised noising as the drop from clean (1 − value). */
  noisingAsDrop = false;
  /** The prompt pair (0-based) whose tokens are shown; every view that shows one pair uses it. */
  pair = 0;
  /** The cell last clicked and the view it was in (paths.ts builds "what feeds this?" on it). */
  picked: { comp: ComponentSpec; request: ViewRequest } | null = null;
  /** The last head's attention patterns (attention.ts): clean then corrupted, pairs × dest × src. */
  attention: { meta: AttentionMeta; data: Float32Array } | null = null;
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
    this.setCircuit(next);
  }

  /** A changed circuit makes the last check's table outdated: it is cleared. */
  setCircuit(components: ComponentSpec[]): void {
    this.circuitResult = null;
    this.latestCircuitId = null;
    this.set("circuit", components);
    this.emit("circuit");
  }

  pick(comp: ComponentSpec, request: ViewRequest): void {
    this.picked = { comp, request };
    this.emit("path");
  }

  setScale(mode: ScaleMode, currentMax: number): void {
    this.scale = { mode, locked: mode === "locked" ? currentMax : null };
    this.emit("settings");
  }

  setDrop(drop: boolean): void {
    this.noisingAsDrop = drop;
    this.emit("settings");
  }

  selectPair(pair: number): void {
    const n = this.get("prompts")?.clean_tokens.length ?? 1;
    this.pair = Math.max(0, Math.min(n - 1, pair));
    this.emit("prompts");
    this.emit("settings");
  }

  /** A synced setting changed (from a control here or from Python): rerun or redraw views. */
  settingChanged(key: "site" | "direction" | "metric" | "normalized"): void {
    if (key === "site") {
      const root = this.crumbs[0]?.request;
      if (!root || root.kind !== "sweep" || root.site !== this.get("site") || this.crumbs.length > 1) this.runView(this.topRequest(), false);
    } else if (key === "direction") {
      if (this.current?.request.direction !== this.get("direction")) this.rerunIn(this.get("direction"));
    } else if (key === "normalized") {
      this.scale = { mode: this.get("normalized") ? "gap" : "fit", locked: null };
    }
    this.emit("settings");
  }

  /** How top-level sweeps run: exact patching, or the attribution estimate first (estimate.ts). */
  method: "exact" | "attribution" = "exact";

  /** A sweep of the chosen site over everything, in the chosen direction. */
  topRequest(): ViewRequest {
    const site = this.get("site");
    return { kind: "sweep", site, direction: this.get("direction"), layers: null, heads: null, positions: null, neurons: null, label: site, method: this.method };
  }

  // ---- requests ------------------------------------------------------------------------------

  private send(type: string, body: Record<string, unknown>): number {
    const id = this.nextId++;
    if (ENGINE_KINDS.has(type)) {
      this.clearNote();
      this.running = { id, kind: type };
      this.progress = null;
      this.emit("status");
    }
    this.model.send({ ...body, type, id });
    return id;
  }

  /** Show a view: `push` adds a breadcrumb level (drill-down), otherwise starts a new trail. */
  runView(request: ViewRequest, push: boolean, options?: DrillOption[]): void {
    this.error = null;
    const crumb: Crumb = { label: request.label || request.site, request, view: null, options };
    this.crumbs = push ? [...this.crumbs, crumb] : [crumb];
    this.activeViewId = this.send("sweep", { ...request });
    this.emit("view");
  }

  /** The current view again in another direction; earlier breadcrumb levels rerun when revisited. */
  rerunIn(direction: ViewDirection): void {
    if (!this.crumbs.length) {
      this.runView({ ...this.topRequest(), direction }, false);
      return;
    }
    const crumbs = this.crumbs.map((c) => ({ ...c, request: { ...c.request, direction }, view: null }));
    const last = crumbs[crumbs.length - 1];
    this.crumbs = crumbs.slice(0, -1);
    this.runView(last.request, true);
  }

  /** Show another of the current drill-down's options (e.g. readers instead of writers). */
  switchOption(index: number): void {
    const current = this.current;
    const option = current?.options?.[index];
    if (!current || !option) return;
    this.crumbs = this.crumbs.slice(0, -1);
    this.runView({ ...option.request, direction: current.request.direction }, true, current.options);
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
    const crumb = this.crumbs[index];
    if (crumb.view) {
      this.crumbs = this.crumbs.slice(0, index + 1);
      this.activeViewId = crumb.view.meta.id;
      this.emit("view");
      return;
    }
    // Not shown in this direction yet: rerun it in place (it was doubled here: "head › head").
    this.crumbs = this.crumbs.slice(0, index);
    this.runView(crumb.request, true, crumb.options);
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

  copyCircuitCode(): void {
    this.send("copy_code", { what: "circuit", components: this.get("circuit") });
  }

  /** The view on screen as a PNG (`save_figure`) or a CSV table (`export_csv`). */
  saveView(type: "save_figure" | "export_csv"): void {
    const view = this.current?.view;
    if (!view) {
      this.note("Run a sweep first: the file holds the view on screen.");
      return;
    }
    const normalized = this.get("normalized");
    const mode = this.scale.mode === "gap" && !normalized ? "fit" : this.scale.mode;
    this.send(type, {
      view_id: view.meta.id,
      metric: this.get("metric"),
      normalized,
      scale: mode === "locked" ? (this.scale.locked ?? "fit") : mode,
      drop: this.noisingAsDrop,
    });
  }

  note(message: string): void {
    this.message = message;
    this.emit("message");
  }

  /** Notes and code belong to the view they were made for: a new request clears them. */
  private clearNote(): void {
    if (!this.message && this.code === null) return;
    this.message = "";
    this.code = null;
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
          const { kind, layers, heads } = reply.meta.request;
          if (kind === "head_parts" && layers && heads) this.send("attention", { layer: layers[0], head: heads[0] });
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
        this.pair = 0;
        this.finish(reply.id);
        this.emit("circuit");
        this.emit("prompts");
        this.runView(this.topRequest(), false);
        this.note("Prompts updated: sweeping them again.");
        return;
      case "code":
        this.code = reply.code;
        copyText(reply.code).then(
          (ok) => this.note(ok ? "Code copied to the clipboard." : "Copy the code below (clipboard unavailable)."),
          () => this.note("Copy the code below (clipboard unavailable)."),
        );
        return;
      case "saved":
        this.savedPath = reply.path;
        this.note(`Saved in the kernel's folder: ${reply.path}`);
        return;
      case "attention":
        this.attention = { meta: reply.meta, data: toFloat32(buffers[0]) };
        this.emit("attention");
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
