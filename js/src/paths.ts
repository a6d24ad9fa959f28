// Path patching: "what feeds this?" sweeps, the path walked back from the logits, circuit steps.
import { Disposer, h } from "./dom";
import { componentLabel, receiverLabel, type ComponentSpec, type Receiver, type ViewDirection, type ViewRequest } from "./protocol";
import type { Store } from "./store";

/** Sites that can send along a path (they write to the residual stream). */
export const SENDER_SITES = ["head", "head_by_pos", "attn_out", "mlp_out"];
const PART_WORDS: Record<string, string> = { head_q: "query", head_k: "key", head_v: "value", mlp_in: "input" };

/** The sweep of every `senders` component reaching only `receiver`. */
export function feedsRequest(receiver: Receiver, senders: string, direction: ViewDirection): ViewRequest {
  return { kind: "sweep", site: senders, direction, layers: null, heads: null, positions: null, neurons: null, label: receiverLabel(receiver), receivers: [receiver] };
}

/** What a component reads that a path can end in: a head's query, key and value; an MLP's input. */
export function receiversOf(c: ComponentSpec): Receiver[] {
  const pos = c.pos === undefined ? {} : { pos: c.pos };
  if ((c.site === "head" || c.site === "head_by_pos") && c.head !== undefined) {
    return (["head_q", "head_k", "head_v"] as const).map((site) => ({ site, layer: c.layer, head: c.head, ...pos }));
  }
  if (c.site === "mlp_out") return [{ site: "mlp_in", layer: c.layer, ...pos }];
  return [];
}

/** The circuit step a component picked in a path view stands for (null outside path views). */
export function pathStep(c: ComponentSpec, request: ViewRequest | undefined): ComponentSpec | null {
  const receivers = request?.receivers;
  if (!receivers || receivers.length !== 1 || !SENDER_SITES.includes(c.site)) return null;
  return { ...c, receiver: receivers[0] };
}

/** The path walked, from the logits back: each path view's receiver, then the sender picked in
 * the last of those views (`pickedIn`: the index in `requests` of the view it was picked in). */
export function pathTrail(requests: ViewRequest[], picked: ComponentSpec | null, pickedIn: number): string[] {
  const isPath = (r: ViewRequest) => r.receivers?.length === 1;
  const steps = requests.filter(isPath).map((r) => receiverLabel(r.receivers![0]));
  const last = requests.map(isPath).lastIndexOf(true);
  if (picked && last >= 0 && pickedIn === last && SENDER_SITES.includes(picked.site)) steps.push(senderLabel(picked));
  return steps;
}

function senderLabel(c: ComponentSpec): string {
  if (c.head !== undefined) return `L${c.layer} H${c.head}${c.pos === undefined ? "" : ` @${c.pos}`}`;
  return componentLabel(c).replace("mlp_out", "MLP").replace("attn_out", "attention");
}

export class PathPanel {
  readonly el: HTMLElement;
  private trail: HTMLElement;
  private actions: HTMLElement;
  private senders: HTMLSelectElement;

  constructor(
    private store: Store,
    d: Disposer,
  ) {
    this.senders = h("select", { class: "pw-select", "data-testid": "pw-path-senders", "aria-label": "senders of path sweeps" });
    this.senders.append(...SENDER_SITES.map((s) => h("option", { value: s, text: s })));
    const logits = h("button", { class: "pw-button", type: "button", "data-testid": "pw-path-logits", text: "Direct effect on the logits" });
    this.trail = h("div", { class: "pw-path-trail", "data-testid": "pw-path" });
    this.actions = h("div", { class: "pw-row pw-path-actions" });
    this.el = h(
      "section",
      { class: "pw-paths" },
      h("div", { class: "pw-row" }, h("strong", { text: "Paths" }), h("label", { class: "pw-hint", text: "senders " }, this.senders), logits),
      this.trail,
      this.actions,
    );
    d.listen(logits, "click", () => this.store.runView(feedsRequest("logits", this.senders.value, this.store.get("direction")), false));
    d.listen<MouseEvent>(this.actions, "click", (e) => {
      const button = (e.target as HTMLElement).closest<HTMLElement>("[data-action]");
      const picked = this.store.picked;
      if (!button || !picked) return;
      if (button.dataset.action === "step") {
        const step = pathStep(picked.comp, picked.request);
        if (step && !this.store.inCircuit(step)) this.store.toggleCircuit(step);
        return;
      }
      const receiver = receiversOf(picked.comp)[Number(button.dataset.index)];
      if (receiver) this.store.runView(feedsRequest(receiver, this.senders.value, this.store.get("direction")), true);
    });
    this.update();
  }

  update(): void {
    const picked = this.store.picked;
    const pickedIn = picked ? this.store.crumbs.findIndex((c) => c.request === picked.request || c.view?.meta.request === picked.request) : -1;
    const steps = pathTrail(
      this.store.crumbs.map((c) => c.request),
      picked?.comp ?? null,
      pickedIn,
    );
    this.trail.textContent = steps.length ? `Path: ${steps.join(" ← ")}` : "Start from the logits, then ask what feeds a component you click.";
    const buttons: HTMLElement[] = [];
    if (picked) {
      const who = senderLabel(picked.comp);
      receiversOf(picked.comp).forEach((r, i) => {
        const part = r === "logits" ? "" : PART_WORDS[r.site];
        buttons.push(h("button", { class: "pw-button", type: "button", "data-action": "feeds", "data-index": i, "data-testid": `pw-feeds-${part}`, text: `What feeds ${who}'s ${part}?` }));
      });
      const step = pathStep(picked.comp, picked.request);
      if (step) buttons.push(h("button", { class: "pw-button", type: "button", "data-action": "step", "data-testid": "pw-add-step", text: `Add step ${componentLabel(step)} to the circuit` }));
    }
    this.actions.replaceChildren(...buttons);
  }
}
