// Message and state shapes shared with patchwidget/widget*.py (see PROTOCOL.md).

export type Direction = "denoising" | "noising";
export type ViewDirection = Direction | "both";
export type Metric = "logit_diff" | "logprob" | "prob" | "kl" | "rank" | "accuracy";
export const METRICS: Metric[] = ["logit_diff", "logprob", "prob", "kl", "rank", "accuracy"];
export const READOUT_FIELDS = [
  "logit_correct",
  "logit_incorrect",
  "lse",
  "kl_clean",
  "kl_corrupted",
  "rank",
] as const;
export const N_FIELDS = READOUT_FIELDS.length;

/** A sweep (or a head's q/k/v/pattern parts) to run and show. */
export interface ViewRequest {
  kind: "sweep" | "head_parts";
  site: string;
  direction: ViewDirection;
  layers: number[] | null;
  heads: number[] | null;
  positions: number[] | null;
  neurons: number[] | null;
  label: string;
  /** "attribution": the fast estimate first, then exact values (default "exact"). */
  method?: "exact" | "attribution";
}

/** Describes the float32 buffer that travels with a view. */
export interface ViewMeta {
  id: number;
  status: "running" | "done" | "cancelled";
  request: ViewRequest;
  site: string;
  kind: string;
  directions: Direction[];
  axes: string[];
  shape: number[];
  labels: Record<string, string[]>;
  coords: Record<string, (number | string)[]>;
  fixed: Record<string, number>;
  n_pairs: number;
  done: number;
  total: number;
  eta_s: number | null;
  /** "attribution" views carry an estimate section after the panels (see estimate.ts). */
  method?: "exact" | "attribution";
  note?: string;
}

export interface ComponentSpec {
  site: string;
  layer: number;
  head?: number;
  pos?: number;
  neuron?: number;
}

export interface CircuitMeta {
  id: number;
  components: ComponentSpec[];
  entries: { direction: Direction; which: "circuit" | "complement" }[];
  n_pairs: number;
}

export interface SiteInfo {
  name: string;
  reason: string | null;
  help: string;
}

export interface PromptState {
  clean: string[];
  corrupted: string[];
  answers: [string, string][];
  clean_tokens: string[][];
  corrupted_tokens: string[][];
  diff_positions: number[];
  position_labels: string[];
  answer_tokens: [string, string][];
  corruption: string;
}

/** Synced traitlets of PatchingWidget. */
export interface WidgetState {
  _model_key: string;
  info: Record<string, unknown>;
  sites: SiteInfo[];
  directions: Record<Direction, string | null>;
  prompts: PromptState;
  status: string;
  model_line: string;
  result_meta: ViewMeta | Record<string, never>;
  result_bytes: DataView | ArrayBuffer | null;
  circuit_meta: CircuitMeta | Record<string, never>;
  circuit_bytes: DataView | ArrayBuffer | null;
  site: string;
  direction: ViewDirection;
  metric: Metric;
  normalized: boolean;
  circuit: ComponentSpec[];
}

/** Kernel -> browser replies; every one carries the id of the request it answers. */
export type Reply =
  | { type: "started"; id: number; kind: string }
  | { type: "progress"; id: number; meta: ViewMeta }
  | { type: "result"; id: number; meta: ViewMeta | null; status: string }
  | { type: "circuit_result"; id: number; meta: CircuitMeta }
  | { type: "prompts_set"; id: number }
  | { type: "code"; id: number; code: string }
  | { type: "saved"; id: number; path: string }
  | { type: "ack"; id: number; message: string; target?: number }
  | { type: "superseded"; id: number }
  | { type: "error"; id: number | null; kind: string; message: string; field: string | null };

const REPLY_TYPES = new Set([
  "started",
  "progress",
  "result",
  "circuit_result",
  "prompts_set",
  "code",
  "saved",
  "ack",
  "superseded",
  "error",
]);

/** Narrow an incoming custom message to a Reply, or null if it isn't one. */
export function asReply(msg: unknown): Reply | null {
  if (typeof msg !== "object" || msg === null) return null;
  const m = msg as { type?: unknown; id?: unknown };
  if (typeof m.type !== "string" || !REPLY_TYPES.has(m.type)) return null;
  if (m.type !== "error" && typeof m.id !== "number") return null;
  return msg as Reply;
}

/** A cell's component as the kernel names it ("head" sites use the query head). */
export function componentKey(c: ComponentSpec): string {
  return [c.site, c.layer, c.head ?? "", c.pos ?? "", c.neuron ?? ""].join(":");
}

export function componentLabel(c: ComponentSpec): string {
  const parts = [`L${c.layer}`];
  if (c.head !== undefined) parts.push(`H${c.head}`);
  if (c.neuron !== undefined) parts.push(`N${c.neuron}`);
  if (c.pos !== undefined) parts.push(`@${c.pos}`);
  const site = c.site === "head_by_pos" ? "head" : c.site;
  return `${site} ${parts.join(" ")}`;
}
