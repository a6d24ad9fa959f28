// Toolbar: site, direction, metric, normalisation, run/cancel, progress, export buttons.
import { Disposer, h } from "./dom";
import { EstimateToggle } from "./estimate";
import { METRICS, type Direction, type Metric, type ViewDirection } from "./protocol";
import type { Store } from "./store";
import { DIRECTION_MEANING, DIRECTION_TITLES, METRIC_LABELS } from "./text";

export class Controls {
  readonly el: HTMLElement;
  readonly progress: HTMLElement;
  private site: HTMLSelectElement;
  private direction: HTMLSelectElement;
  private metric: HTMLSelectElement;
  private normalized: HTMLInputElement;
  private run: HTMLButtonElement;
  private cancel: HTMLButtonElement;
  private meaning: HTMLElement;
  private bar: HTMLElement;
  private progressText: HTMLElement;
  private estimate: EstimateToggle;

  constructor(
    private store: Store,
    d: Disposer,
  ) {
    this.site = h("select", { "data-testid": "pw-site", "aria-label": "site to patch" });
    this.direction = h(
      "select",
      { "data-testid": "pw-direction", "aria-label": "patching direction" },
      h("option", { value: "denoising", text: "denoising (sufficient?)" }),
      h("option", { value: "noising", text: "noising (necessary?)" }),
      h("option", { value: "both", text: "both, side by side" }),
    );
    this.metric = h(
      "select",
      { "data-testid": "pw-metric", "aria-label": "metric" },
      ...METRICS.map((m) => h("option", { value: m, text: METRIC_LABELS[m] })),
    );
    this.normalized = h("input", { type: "checkbox", "data-testid": "pw-normalized" });
    this.estimate = new EstimateToggle(store, d);
    this.run = h("button", { class: "pw-button pw-primary", "data-testid": "pw-run", type: "button", text: "Run" });
    this.cancel = h("button", { class: "pw-button", "data-testid": "pw-cancel", type: "button", text: "Cancel" });
    const copy = h("button", { class: "pw-button", "data-testid": "pw-copy-code", type: "button", text: "Copy code", title: "Python that reproduces this view" });
    const save = h("button", { class: "pw-button", "data-testid": "pw-save-figure", type: "button", text: "Save figure", title: "the view on screen as a PNG next to the notebook" });
    const csv = h("button", { class: "pw-button", "data-testid": "pw-export-csv", type: "button", text: "Export CSV", title: "the view on screen as a table: a row per cell and pair, a column per metric" });
    this.meaning = h("div", { class: "pw-direction-help" });
    this.bar = h("div", { class: "pw-progress-fill" });
    this.progressText = h("span", { class: "pw-progress-text" });
    this.progress = h(
      "div",
      { class: "pw-progress", "data-testid": "pw-progress", "data-done": 0, "data-total": 0, role: "progressbar", "aria-valuemin": 0 },
      h("div", { class: "pw-progress-track" }, this.bar),
      this.progressText,
    );
    const label = (text: string, control: HTMLElement) => h("label", { class: "pw-field" }, h("span", { text }), control);
    this.el = h(
      "div",
      { class: "pw-controls" },
      h(
        "div",
        { class: "pw-toolbar" },
        label("Site", this.site),
        label("Direction", this.direction),
        label("Metric", this.metric),
        h("label", { class: "pw-check" }, this.normalized, h("span", { text: "normalised (1 = clean, 0 = corrupted)" })),
        this.estimate.el,
        h("span", { class: "pw-actions" }, this.run, this.cancel),
        h("span", { class: "pw-spacer" }),
        h("span", { class: "pw-exports" }, copy, save, csv),
      ),
      this.meaning,
      this.progress,
    );

    // Site and direction changes rerun through Store.settingChanged (also when set from Python);
    // a site whose sweep would be long proposes the fast estimate first.
    d.listen(this.site, "change", () => {
      this.estimate.propose(this.site.value);
      this.store.set("site", this.site.value);
    });
    d.listen(this.direction, "change", () => this.store.set("direction", this.direction.value as ViewDirection));
    d.listen(this.metric, "change", () => this.store.set("metric", this.metric.value as Metric));
    d.listen(this.normalized, "change", () => this.store.set("normalized", this.normalized.checked));
    d.listen(this.run, "click", () => this.store.runView(this.store.topRequest(), false));
    d.listen(this.cancel, "click", () => this.store.cancel());
    d.listen(copy, "click", () => this.store.copyCode());
    d.listen(save, "click", () => this.store.saveView("save_figure"));
    d.listen(csv, "click", () => this.store.saveView("export_csv"));
    this.updateSites();
    this.updateSettings();
    this.updateStatus();
  }

  updateSites(): void {
    const sites = this.store.get("sites") ?? [];
    const options = sites.map((s) =>
      h("option", {
        value: s.name,
        text: s.reason ? `${s.name} (unavailable)` : s.name,
        disabled: s.reason !== null,
        title: s.reason ?? s.help,
      }),
    );
    this.site.replaceChildren(...options);
    const blocked = this.store.get("directions") ?? {};
    for (const option of Array.from(this.direction.options)) {
      const reasons = option.value === "both" ? [blocked.denoising, blocked.noising] : [blocked[option.value as Direction]];
      const reason = reasons.find((r) => r) ?? null;
      option.disabled = reason !== null;
      option.title = reason ?? "";
    }
  }

  updateSettings(): void {
    this.site.value = this.store.get("site");
    this.direction.value = this.store.get("direction");
    this.metric.value = this.store.get("metric");
    this.normalized.checked = this.store.get("normalized");
    const dir = this.direction.value as ViewDirection;
    const shown: Direction[] = dir === "both" ? ["denoising", "noising"] : [dir];
    this.meaning.replaceChildren(...shown.map((x) => h("div", {}, h("strong", { text: `${DIRECTION_TITLES[x]}: ` }), DIRECTION_MEANING[x])));
  }

  updateStatus(): void {
    const running = this.store.running !== null;
    this.cancel.disabled = !running;
    const p = this.store.progress;
    const done = p?.done ?? 0;
    const total = p?.total ?? 0;
    this.progress.dataset.done = String(done);
    this.progress.dataset.total = String(total);
    this.progress.setAttribute("aria-valuemax", String(total));
    this.progress.setAttribute("aria-valuenow", String(done));
    this.progress.hidden = !running && total === 0;
    this.bar.style.width = `${total ? (100 * done) / total : 0}%`;
    let text = running ? `running ${this.store.running!.kind}…` : "";
    if (total) text = `${done} / ${total} patches`;
    if (running && p?.eta !== null && p?.eta !== undefined) text += ` · about ${formatSeconds(p.eta)} left`;
    this.progressText.textContent = text;
  }
}

function formatSeconds(s: number): string {
  if (s < 60) return `${Math.ceil(s)} s`;
  return `${Math.floor(s / 60)} min ${Math.round(s % 60)} s`;
}
