// anywidget entry: `initialize` owns the per-model Store, `render` builds one view of it.
import type { AnyModel } from "@anywidget/types";
import { AttentionView } from "./attention";
import { CircuitPanel } from "./circuit";
import { Controls } from "./controls";
import type { Bytes } from "./decode";
import { Disposer, h } from "./dom";
import { EstimatePanel } from "./estimate";
import { HeatmapArea } from "./heatmap";
import { modelLine } from "./modelline";
import { PathPanel } from "./paths";
import { PromptsPanel } from "./prompts";
import type { WidgetState } from "./protocol";
import { Store, type Topic } from "./store";
import "./widget.css";

// anywidget hands `initialize` and each `render` a different proxy of one model, so stores are
// found by a per-widget key that the kernel sets.
const stores = new Map<string, Store>();

function storeFor(model: AnyModel<WidgetState>): Store {
  const key = model.get("_model_key");
  let store = stores.get(key);
  if (!store) {
    store = new Store(model);
    stores.set(key, store);
  }
  return store;
}

function initialize({ model }: { model: AnyModel<WidgetState> }): () => void {
  const store = storeFor(model);
  const onMessage = (msg: unknown, buffers: Bytes[]) => store.handle(msg, buffers ?? []);
  const onPrompts = () => store.emit("prompts");
  const onSites = () => store.emit("settings");
  const onCircuit = () => store.emit("circuit");
  // Settings change from a control here or from Python (`w.site = ...`): views follow either way.
  const settings = (["site", "direction", "metric", "normalized"] as const).map((key) => [`change:${key}`, () => store.settingChanged(key)] as const);
  for (const [name, fn] of settings) model.on(name, fn);
  model.on("msg:custom", onMessage);
  model.on("change:prompts", onPrompts);
  model.on("change:sites", onSites);
  model.on("change:directions", onSites);
  model.on("change:circuit", onCircuit);
  return () => {
    for (const [name, fn] of settings) model.off(name, fn);
    model.off("msg:custom", onMessage);
    model.off("change:prompts", onPrompts);
    model.off("change:sites", onSites);
    model.off("change:directions", onSites);
    model.off("change:circuit", onCircuit);
    stores.delete(model.get("_model_key"));
  };
}

function render({ model, el }: { model: AnyModel<WidgetState>; el: HTMLElement }): () => void {
  const store = storeFor(model);
  const d = new Disposer();
  const controls = new Controls(store, d);
  const prompts = new PromptsPanel(store, d);
  const heatmap = new HeatmapArea(store, d);
  const circuit = new CircuitPanel(store, d);
  const modelInfo = modelLine(model, d);
  const estimate = new EstimatePanel(store, d);
  const paths = new PathPanel(store, d);
  const attention = new AttentionView(d);
  const showAttention = () => {
    const req = store.current?.request;
    const att = store.attention;
    const same = req?.kind === "head_parts" && att && req.layers?.[0] === att.meta.layer && req.heads?.[0] === att.meta.head;
    attention.show(same ? att : null);
  };
  const crumbs = h("nav", { class: "pw-breadcrumb", "data-testid": "pw-breadcrumb", "aria-label": "drill-down path" });
  const error = h("div", { class: "pw-error", "data-testid": "pw-error", role: "alert", hidden: true });
  const alternatives = h("div", { class: "pw-row pw-drill-options", "data-testid": "pw-drill-options", hidden: true });
  const message = h("div", { class: "pw-message", "data-testid": "pw-message", role: "status" });
  const code = h("textarea", { class: "pw-code", readonly: true, rows: 8, hidden: true, "aria-label": "generated code" });
  const root = h(
    "div",
    { class: "pw-root", "data-testid": "pw-root", "data-status": store.status },
    modelInfo,
    controls.el,
    prompts.el,
    error,
    crumbs,
    alternatives,
    heatmap.el,
    heatmap.notes,
    estimate.el,
    attention.el,
    paths.el,
    message,
    code,
    circuit.el,
  );
  el.replaceChildren(root);

  const renderCrumbs = () => {
    const current = store.current;
    const options = current?.options ?? [];
    const shown = options.findIndex((o) => o.request.kind === current?.request.kind && o.request.site === current?.request.site);
    alternatives.hidden = options.length < 2;
    alternatives.replaceChildren(
      h("span", { class: "pw-hint", text: "This cell also opens: " }),
      ...options.flatMap((o, i) => (i === shown ? [] : [h("button", { type: "button", class: "pw-button", "data-testid": "pw-drill-option", "data-option": i, text: o.text })])),
    );
    crumbs.replaceChildren(
      ...store.crumbs.map((c, i) => {
        const last = i === store.crumbs.length - 1;
        return h("button", {
          type: "button",
          class: last ? "pw-crumb pw-current" : "pw-crumb",
          "data-testid": "pw-crumb",
          "aria-current": last ? "page" : undefined,
          text: c.label,
          "data-index": i,
        });
      }),
    );
  };
  d.listen<MouseEvent>(alternatives, "click", (e) => {
    const option = (e.target as HTMLElement).closest<HTMLElement>("[data-option]")?.dataset.option;
    if (option !== undefined) store.switchOption(Number(option));
  });
  d.listen<MouseEvent>(crumbs, "click", (e) => {
    const index = (e.target as HTMLElement).closest<HTMLElement>("[data-index]")?.dataset.index;
    if (index !== undefined) store.goTo(Number(index));
  });

  const renderStatus = () => {
    root.dataset.status = store.status;
    const err = store.error;
    error.hidden = !err;
    error.textContent = err ? err.message : "";
    controls.updateStatus();
  };

  const onTopic = (topic: Topic) => {
    switch (topic) {
      case "view":
        renderCrumbs();
        heatmap.schedule();
        estimate.update();
        renderStatus();
        paths.update();
        showAttention();
        break;
      case "path":
        paths.update();
        break;
      case "attention":
        showAttention();
        break;
      case "progress":
        heatmap.schedule();
        estimate.update();
        controls.updateStatus();
        break;
      case "settings":
        controls.updateSites();
        controls.updateSettings();
        heatmap.schedule();
        estimate.update();
        circuit.update();
        break;
      case "circuit":
        circuit.update();
        heatmap.schedule();
        break;
      case "prompts":
        prompts.update();
        renderStatus();
        break;
      case "status":
        renderStatus();
        break;
      case "message":
        message.textContent = store.message;
        code.hidden = store.code === null;
        code.value = store.code ?? "";
        renderStatus();
        break;
    }
  };
  d.add(store.subscribe(onTopic));
  renderCrumbs();
  renderStatus();
  heatmap.update();
  estimate.update();
  store.autoRun(store.topRequest());
  return () => {
    d.dispose();
    el.replaceChildren();
  };
}

export default { initialize, render };
