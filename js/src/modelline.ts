// The model line: which model, where it runs (here, or on NDIF) and the last remote request's cost.
// The kernel composes the text (`model_line`); this keeps it on screen.
import type { AnyModel } from "@anywidget/types";
import { type Disposer, h } from "./dom";
import type { WidgetState } from "./protocol";

export function modelLine(model: AnyModel<WidgetState>, d: Disposer): HTMLElement {
  const el = h("div", { class: "pw-model", "data-testid": "pw-model" });
  const update = () => {
    el.textContent = model.get("model_line") ?? "";
  };
  model.on("change:model_line", update);
  d.add(() => model.off("change:model_line", update));
  update();
  return el;
}
