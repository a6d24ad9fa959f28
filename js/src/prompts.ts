// Prompts as token chips (differing positions highlighted) and an editor validated by the kernel.
import { Disposer, h } from "./dom";
import type { PromptState } from "./protocol";
import type { Store } from "./store";

/** Token text with its leading/trailing spaces made visible. */
export function showToken(token: string): string {
  return token.replace(/^ /, "␣").replace(/\n/g, "⏎");
}

/** Positions that differ between the clean and corrupted prompt of `pair` (for noise: the noised
 * positions, the same in every pair). */
export function pairDiffs(p: PromptState, pair: number): number[] {
  if (p.corruption !== "counterfactual prompts") return p.diff_positions;
  const clean = p.clean_tokens[pair] ?? [];
  const corrupted = p.corrupted_tokens[pair] ?? [];
  return clean.flatMap((t, i) => (t !== corrupted[i] ? [i] : []));
}

/** Position labels of `pair` as the kernel writes them for pair 1: "5: Kate" or "5: Kate/Henry". */
export function pairPositionLabels(p: PromptState, pair: number): string[] {
  if (pair === 0 || !p.clean_tokens[pair]) return p.position_labels;
  const corrupted = p.corrupted_tokens[pair] ?? [];
  return p.clean_tokens[pair].map((c, i) => (corrupted[i] === undefined || corrupted[i] === c ? `${i}: ${c}` : `${i}: ${c}/${corrupted[i]}`));
}

const UNKNOWN_TITLE = "unknown to the tokenizer: the model reads a placeholder, not this word";

function chips(tokens: string[], diffs: Set<number>, unknown: boolean[], testid: string): HTMLElement {
  return h(
    "div",
    { class: "pw-tokens", "data-testid": testid },
    ...tokens.map((t, i) =>
      h("span", {
        class: `pw-token${diffs.has(i) ? " pw-diff" : ""}${unknown[i] ? " pw-unknown" : ""}`,
        "data-pos": i,
        "data-unknown": unknown[i] ? "true" : undefined,
        title: `position ${i}${diffs.has(i) ? " · differs between clean and corrupted" : ""}${unknown[i] ? ` · ${UNKNOWN_TITLE}` : ""}`,
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
  private unknownNote: HTMLElement;
  private shownPrompts: PromptState | null = null;
  private shownPair = -1;

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
    this.unknownNote = h("div", { class: "pw-unknown-note", "data-testid": "pw-unknown-note", role: "note", hidden: true });
    this.el = h("section", { class: "pw-prompts" }, this.tokens, this.unknownNote, this.editor);
    d.listen<Event>(this.tokens, "change", (e) => {
      const target = e.target as HTMLSelectElement;
      if (target.dataset.testid === "pw-pair") this.store.selectPair(Number(target.value));
    });
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
    const pair = Math.min(this.store.pair, p.clean_tokens.length - 1);
    const diffs = new Set(pairDiffs(p, pair));
    const [correct, incorrect] = p.answer_tokens[pair] ?? ["", ""];
    const unknown = p.unknown;
    const [unkCorrect, unkIncorrect] = unknown?.answers[pair] ?? [false, false];
    const answerChip = (cls: string, title: string, text: string, unk: boolean) =>
      h("span", { class: `pw-token ${cls}${unk ? " pw-unknown" : ""}`, "data-unknown": unk ? "true" : undefined, title: unk ? `${title} · ${UNKNOWN_TITLE}` : title, text: showToken(text) });
    const label = h("span", { class: "pw-row-label", text: "clean" });
    if (p.clean_tokens.length > 1) {
      const select = h(
        "select",
        { class: "pw-pair", "data-testid": "pw-pair", "aria-label": "prompt pair shown" },
        ...p.clean_tokens.map((_, i) => h("option", { value: i, text: `pair ${i + 1} of ${p.clean_tokens.length}`, selected: i === pair })),
      );
      label.append(" ", select);
    }
    const flagged = unknown ? [...unknown.clean, ...unknown.corrupted, ...unknown.answers].filter((row) => row.some(Boolean)).length : 0;
    this.unknownNote.hidden = flagged === 0;
    this.unknownNote.textContent = flagged ? "Some words are unknown to the tokenizer (marked): the model reads a placeholder token there, so results at those positions mean little. Rephrase with known words." : "";
    this.tokens.replaceChildren(
      h("div", { class: "pw-token-row" }, label, chips(p.clean_tokens[pair] ?? [], diffs, unknown?.clean[pair] ?? [], "pw-tokens-clean")),
      h("div", { class: "pw-token-row" }, h("span", { class: "pw-row-label", text: "corrupted" }), chips(p.corrupted_tokens[pair] ?? [], diffs, unknown?.corrupted[pair] ?? [], "pw-tokens-corrupted")),
      h(
        "div",
        { class: "pw-token-row" },
        h("span", { class: "pw-row-label", text: "answer" }),
        h(
          "div",
          { class: "pw-tokens pw-answers", "data-testid": "pw-answers" },
          answerChip("pw-correct", "correct answer token", correct, unkCorrect),
          h("span", { class: "pw-vs", text: "vs" }),
          answerChip("pw-incorrect", "incorrect answer token", incorrect, unkIncorrect),
          h("span", { class: "pw-corruption", text: `· corruption: ${p.corruption}` }),
        ),
      ),
    );
  }
}
