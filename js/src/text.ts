// The words the widget shows: what directions, metrics and sites mean.
import type { Direction, Metric } from "./protocol";

export const DIRECTION_TITLES: Record<Direction, string> = {
  denoising: "Denoising (clean → corrupted)",
  noising: "Noising (corrupted → clean)",
};

export const DIRECTION_MEANING: Record<Direction, string> = {
  denoising:
    "Run the corrupted prompt and restore one piece to its clean value: is that piece enough on its own to bring the behaviour back (sufficient)?",
  noising:
    "Run the clean prompt and overwrite one piece with its corrupted value: does the behaviour break without it (necessary)?",
};

export const METRIC_LABELS: Record<Metric, string> = {
  logit_diff: "logit difference",
  logprob: "log-probability",
  prob: "probability",
  kl: "KL divergence",
  rank: "rank",
  accuracy: "accuracy",
};

export const SITE_WORDS: Record<string, string> = {
  resid_pre: "residual stream entering",
  resid_mid: "residual stream between attention and MLP of",
  resid_post: "residual stream leaving",
  attn_out: "attention output of",
  mlp_out: "MLP output of",
  head: "attention head",
  head_by_pos: "attention head",
  head_q: "queries of head",
  head_k: "keys of key/value head",
  head_v: "values of key/value head",
  head_pattern: "attention pattern of head",
  neuron: "MLP neuron",
};
