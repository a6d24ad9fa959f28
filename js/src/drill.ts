// Which finer sweep a clicked cell opens, and how a component reads in words.
import type { ComponentSpec, SiteInfo, ViewDirection, ViewRequest } from "./protocol";
import { SITE_WORDS } from "./text";

const RESIDUAL = new Set(["resid_pre", "resid_mid", "resid_post"]);

function request(partial: Partial<ViewRequest> & Pick<ViewRequest, "kind" | "site" | "label">, direction: ViewDirection): ViewRequest {
  return { layers: null, heads: null, positions: null, neurons: null, direction, ...partial };
}

/** Another finer view of the same cell, offered beside the one opened. */
export interface DrillOption {
  text: string;
  request: ViewRequest;
}

function headsAt(layer: number, pos: number[] | null, label: string, direction: ViewDirection): ViewRequest {
  return request({ kind: "sweep", site: "head_by_pos", layers: [layer], positions: pos, label }, direction);
}

/** The components that read a residual-stream cell: the next attention (or MLP) block. */
function readers(c: ComponentSpec, direction: ViewDirection, reason: (s: string) => string | null, nLayers: number): DrillOption | null {
  const pos = c.pos === undefined ? null : [c.pos];
  const where = c.pos === undefined ? "" : ` @${c.pos}`;
  if (c.site === "resid_mid") {
    if (reason("neuron")) return null;
    const label = `${c.site} L${c.layer}${where} → readers (MLP L${c.layer} neurons)`;
    return { text: `readers: the MLP neurons of layer ${c.layer}`, request: request({ kind: "sweep", site: "neuron", layers: [c.layer], positions: pos, label }, direction) };
  }
  const layer = c.site === "resid_post" ? c.layer + 1 : c.layer;
  if (layer >= nLayers || reason("head_by_pos")) return null;
  return { text: `readers: the heads of layer ${layer}`, request: headsAt(layer, pos, `${c.site} L${c.layer}${where} → readers (L${layer} heads)`, direction) };
}

/** For a residual-stream cell: the writers (heads and MLPs of earlier layers at its position,
 * one restricted sweep) lead, the readers are offered beside them. Otherwise no options. */
export function drillOptions(c: ComponentSpec, direction: ViewDirection, sites: SiteInfo[], nLayers: number): DrillOption[] {
  if (!RESIDUAL.has(c.site) || c.pos === undefined) return [];
  const reason = (name: string) => sites.find((s) => s.name === name)?.reason ?? null;
  const out: DrillOption[] = [];
  const hasWriters = !(c.site === "resid_pre" && c.layer === 0) && !reason("head_by_pos") && !reason("mlp_out");
  if (hasWriters) {
    const label = `${c.site} L${c.layer} @${c.pos} → writers`;
    out.push({ text: "writers: the heads and MLPs before it", request: request({ kind: "writers", site: c.site, layers: [c.layer], positions: [c.pos], label }, direction) });
  }
  const read = readers(c, direction, reason, nLayers);
  if (read) out.push(read);
  return out;
}

/** The drill-down request for a cell, or a reason why there is none. */
export function drillRequest(c: ComponentSpec, direction: ViewDirection, sites: SiteInfo[], nLayers = Infinity): ViewRequest | string {
  const reason = (name: string) => sites.find((s) => s.name === name)?.reason ?? null;
  const pos = c.pos === undefined ? null : [c.pos];
  if (RESIDUAL.has(c.site)) {
    const options = drillOptions(c, direction, sites, nLayers);
    if (options.length) return options[0].request;
    const why = reason("head_by_pos");
    if (why) return `Can't split into heads: ${why}`;
  }
  if (RESIDUAL.has(c.site) || c.site === "attn_out") {
    const why = reason("head_by_pos");
    if (why) return `Can't split into heads: ${why}`;
    const where = c.pos === undefined ? "" : ` @${c.pos}`;
    return headsAt(c.layer, pos, `L${c.layer}${where} → heads`, direction);
  }
  if (c.site === "mlp_out") {
    const why = reason("neuron");
    if (why) return `Can't split into neurons: ${why}`;
    const where = c.pos === undefined ? "" : ` @${c.pos}`;
    return request({ kind: "sweep", site: "neuron", layers: [c.layer], positions: pos, label: `L${c.layer}${where} → neurons` }, direction);
  }
  if ((c.site === "head" || c.site === "head_by_pos") && c.head !== undefined) {
    const missing = ["head_q", "head_k", "head_v", "head_pattern"].find((s) => reason(s));
    if (missing) return `Can't split this head: ${reason(missing)}`;
    return request(
      { kind: "head_parts", site: "head", layers: [c.layer], heads: [c.head], label: `L${c.layer} H${c.head} → q/k/v/pattern` },
      direction,
    );
  }
  return "This is the finest level here: shift-click adds it to the circuit.";
}

/** A component in words, e.g. "attention head L2 H1 at position 5 (' John')". */
export function describeComponent(c: ComponentSpec, positionLabels: string[]): string {
  const words = SITE_WORDS[c.site] ?? c.site;
  let text = `${words} L${c.layer}`;
  if (c.head !== undefined) text += ` H${c.head}`;
  if (c.kv_head !== undefined) text += ` KV${c.kv_head}`;
  if (c.neuron !== undefined) text += ` neuron ${c.neuron}`;
  if (c.pos !== undefined) text += ` at position ${positionLabels[c.pos] ?? c.pos}`;
  else if (c.site.startsWith("head")) text += ", all positions";
  return text;
}
