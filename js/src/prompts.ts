// Prompts as token chips (differing positions highlighted) and an editor validated by the kernel.
import { Disposer, h } from "./dom";
import type { PromptState } from "./protocol";
import type { Store } from "./store";

/** Token text with its leading/trailing spaces made visible. */
export function showToken(token: string): string {
  return token.replace(/^ /, "␣").replace(/\n/g, "⏎");
}

function chips(tokens: string[], diffs: Set<number>, names: Map<number, string>, testid: string): HTMLElement {
  return h(
    "div",
    { class: "pw-tokens", "data-testid": testid },
    ...tokens.map((t, i) =>
      h("span", {
        class: `pw-token${diffs.has(i) ? " pw-diff" : ""}${names.has(i) ? " pw-named" : ""}`,
        "data-pos": i,
        "data-name": names.get(i),
        title: `position ${i}${names.has(i) ? ` (${names.get(i)})` : ""}${diffs.has(i) ? " · differs between clean and corrupted" : ""}`,
        text: showToken(t),
      }),
    ),
  );
}

export class PromptsPanel {
  readonly el: HTMLElement;
  private tokens: HTMLElement;
  private clean: HTMLTextAreaElement;
  private corrupted: HTMLTextAreaElement;
  private answers: HTMLTextAreaElement;
  private problem: HTMLElement;
  private editor: HTMLDetailsElement;
  private shownPrompts: PromptState | null = null;
  private shownPair: number | null = null;

  constructor(
    private store: Store,
    d: Disposer,
  ) {
    this.tokens = h("div", { class: "pw-token-rows" });
    const area = (testid: string, label: string, placeholder: string) =>
      h("textarea", { "data-testid": testid, "aria-label": label, placeholder, rows: 3, spellcheck: "false" });
    this.clean = area("pw-clean-input", "clean prompts", "one clean prompt per line");
    this.corrupted = area("pw-corrupted-input", "corrupted prompts", "one corrupted prompt per line, same token count");
    this.answers = area("pw-answers-input", "answers", "correct|incorrect per line; spaces count, e.g.  Mary| John");
    this.problem = h("div", { class: "pw-prompt-error", "data-testid": "pw-prompt-error", role: "alert", hidden: true });
    const apply = h("button", { class: "pw-button", "data-testid": "pw-apply-prompts", type: "button", text: "Apply prompts" });
    this.editor = h(
      "details",
      { class: "pw-editor" },
      h("summary", { text: "Edit prompts and answers" }),
      h("label", { class: "pw-area" }, h("span", { text: "Clean" }), this.clean),
      h("label", { class: "pw-area" }, h("span", { text: "Corrupted" }), this.corrupted),
      h("label", { class: "pw-area" }, h("span", { text: "Answers (correct|incorrect)" }), this.answers),
      h("div", { class: "pw-row" }, apply, this.problem),
    );
    this.el = h("section", { class: "pw-prompts" }, this.tokens, this.editor);
    d.listen(apply, "click", () => this.store.setPrompts(this.clean.value, this.corrupted.value, this.answers.value));
    this.update();
  }

  update(): void {
    const p = this.store.get("prompts");
    if (p && (p !== this.shownPrompts || this.store.pair !== this.shownPair)) {
      const fresh = p !== this.shownPrompts;
      this.shownPrompts = p;
      this.shownPair = this.store.pair;
      this.renderTokens(p);
      // Fill the editor from the kernel only when the user isn't in the middle of a change.
      if (fresh && !this.store.promptError) {
        this.clean.value = p.clean.join("\n");
        this.corrupted.value = p.corrupted.join("\n");
        this.answers.value = p.answers.map(([a, b]) => `${a}|${b}`).join("\n");
      }
    }
    const err = this.store.promptError;
    this.problem.hidden = !err;
    this.problem.textContent = err ? err.message : "";
    for (const [field, el] of [["clean", this.clean], ["corrupted", this.corrupted], ["answers", this.answers]] as const) {
      el.classList.toggle("pw-invalid", err?.field === field);
    }
    if (err) this.editor.open = true;
  }

  private renderTokens(p: PromptState): void {
    const k = this.store.pair ?? 0;
    const clean = p.clean_tokens[k] ?? [];
    const corrupted = p.corrupted_tokens[k] ?? [];
    // Named positions: diff_positions index the names, so mark tokens by comparing the pair.
    const named = Object.entries(p.named_positions ?? {});
    const names = new Map(named.map(([name, where]) => [where[k], name] as [number, string]));
    const diffs = named.length ? new Set(clean.flatMap((t, i) => (t !== corrupted[i] ? [i] : []))) : new Set(p.diff_positions);
    const [correct, incorrect] = p.answer_tokens[k] ?? ["", ""];
    const more = p.clean_tokens.length > 1 ? ` (pair ${k} of ${p.clean_tokens.length})` : "";
    this.tokens.replaceChildren(
      h("div", { class: "pw-token-row" }, h("span", { class: "pw-row-label", text: `clean${more}` }), chips(clean, diffs, names, "pw-tokens-clean")),
      h("div", { class: "pw-token-row" }, h("span", { class: "pw-row-label", text: "corrupted" }), chips(corrupted, diffs, names, "pw-tokens-corrupted")),
      h(
        "div",
        { class: "pw-token-row" },
        h("span", { class: "pw-row-label", text: "answer" }),
        h(
          "div",
          { class: "pw-tokens pw-answers", "data-testid": "pw-answers" },
          h("span", { class: "pw-token pw-correct", title: "correct answer token", text: showToken(correct) }),
          h("span", { class: "pw-vs", text: "vs" }),
          h("span", { class: "pw-token pw-incorrect", title: "incorrect answer token", text: showToken(incorrect) }),
          h("span", { class: "pw-corruption", text: `· corruption: ${p.corruption}` }),
        ),
      ),
    );
  }
}
