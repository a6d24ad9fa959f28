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
  kind: "sweep" | "head_parts" | "writers";
  site: string;
  direction: ViewDirection;
  layers: number[] | null;
  heads: number[] | null;
  positions: number[] | null;
  neurons: number[] | null;
  label: string;
  /** "attribution": the fast estimate first, then exact values (default "exact"). */
  method?: "exact" | "attribution";
  /** Path patching: each component of `site` reaches only these (absent: an ordinary sweep). */
  receivers?: Receiver[];
}

/** A path-patching receiver: a head's query/key/value input (query head), an MLP's input, or the logits. */
export type Receiver = { site: "head_q" | "head_k" | "head_v" | "mlp_in"; layer: number; head?: number; pos?: number } | "logits";

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
  /** Per axis, each index's coordinate; a `writer` axis holds component fields ({site, head?}). */
  coords: Record<string, (number | string | Partial<ComponentSpec>)[]>;
  fixed: Record<string, number>;
  n_pairs: number;
  done: number;
  total: number;
  eta_s: number | null;
  /** "attribution" views carry an estimate section after the panels (see estimate.ts). */
  method?: "exact" | "attribution";
  note?: string;
}

/** Head index spaces: `head` is a query head (sites head, head_by_pos, head_q, head_pattern);
 * `kv_head` a key/value head (head_k, head_v), shared by several query heads under grouped-query
 * attention. A component carries exactly the one its site uses. */
export interface ComponentSpec {
  site: string;
  layer: number;
  head?: number;
  kv_head?: number;
  pos?: number;
  neuron?: number;
  /** A path step: this component's output reaching only this receiver. */
  receiver?: Receiver;
}

export const KV_SITES = new Set(["head_k", "head_v"]);

export interface CircuitMeta {
  id: number;
  components: ComponentSpec[];
  entries: { direction: Direction; which: "circuit" | "complement" }[];
  n_pairs: number;
  /** Why no complement was patched (a circuit mixing component kinds); null otherwise. */
  complement_note?: string | null;
}

/** A head's attention patterns; the buffer holds clean then corrupted, each pairs × dest × src. */
export interface AttentionMeta {
  id: number;
  layer: number;
  head: number;
  n_pairs: number;
  length: number;
  clean_tokens: string[][];
  corrupted_tokens: string[][];
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
  /** Per pair, per token: is it the tokenizer's unknown token (a word the model can't read)? */
  unknown?: { clean: boolean[][]; corrupted: boolean[][]; answers: boolean[][] };
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
  | { type: "attention"; id: number; meta: AttentionMeta }
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
  "attention",
]);

/** Narrow an incoming custom message to a Reply, or null if it isn't one. */
export function asReply(msg: unknown): Reply | null {
  if (typeof msg !== "object" || msg === null) return null;
  const m = msg as { type?: unknown; id?: unknown };
  if (typeof m.type !== "string" || !REPLY_TYPES.has(m.type)) return null;
  if (m.type !== "error" && typeof m.id !== "number") return null;
  return msg as Reply;
}

/** A cell's component as the kernel names it (query `head` or key/value `kv_head`). */
export function componentKey(c: ComponentSpec): string {
  const key = [c.site, c.layer, c.head ?? "", c.kv_head ?? "", c.pos ?? "", c.neuron ?? ""].join(":");
  return c.receiver === undefined ? key : `${key}>${receiverLabel(c.receiver)}`;
}

/** "logits", "L2 H1 (q)", "MLP L1 @14". */
export function receiverLabel(r: Receiver): string {
  if (r === "logits") return "logits";
  const where = r.pos === undefined ? "" : ` @${r.pos}`;
  if (r.site === "mlp_in") return `MLP L${r.layer}${where}`;
  return `L${r.layer} H${r.head} (${r.site.slice(-1)})${where}`;
}

export function componentLabel(c: ComponentSpec): string {
  const parts = [`L${c.layer}`];
  if (c.head !== undefined) parts.push(`H${c.head}`);
  if (c.kv_head !== undefined) parts.push(`KV${c.kv_head}`);
  if (c.neuron !== undefined) parts.push(`N${c.neuron}`);
  if (c.pos !== undefined) parts.push(`@${c.pos}`);
  const site = c.site === "head_by_pos" ? "head" : c.site;
  const label = `${site} ${parts.join(" ")}`;
  return c.receiver === undefined ? label : `${label} → ${receiverLabel(c.receiver)}`;
}
