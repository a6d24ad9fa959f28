// Which finer sweep a clicked cell opens, and how a component reads in words.
import type { ComponentSpec, SiteInfo, ViewDirection, ViewRequest } from "./protocol";
import { SITE_WORDS } from "./text";

const RESIDUAL_LIKE = new Set(["resid_pre", "resid_mid", "resid_post", "attn_out"]);

function request(partial: Partial<ViewRequest> & Pick<ViewRequest, "kind" | "site" | "label">, direction: ViewDirection): ViewRequest {
  return { layers: null, heads: null, positions: null, neurons: null, direction, ...partial };
}

/** The drill-down request for a cell, or a reason why there is none. */
export function drillRequest(c: ComponentSpec, direction: ViewDirection, sites: SiteInfo[]): ViewRequest | string {
  const reason = (name: string) => sites.find((s) => s.name === name)?.reason ?? null;
  const pos = c.pos === undefined ? null : [c.pos];
  if (RESIDUAL_LIKE.has(c.site)) {
    const why = reason("head_by_pos");
    if (why) return `Can't split into heads: ${why}`;
    const where = c.pos === undefined ? "" : ` @${c.pos}`;
    return request({ kind: "sweep", site: "head_by_pos", layers: [c.layer], positions: pos, label: `L${c.layer}${where} → heads` }, direction);
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
