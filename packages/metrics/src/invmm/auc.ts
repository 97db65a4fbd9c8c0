/**
 * ROC AUC for memorization scores where *lower* means more memorized (InvMM), with ∞ allowed
 * (an image that could not be replicated ranks last; ∞ vs ∞ is a tie). A thin adapter over the
 * package's {@link rocAuc} (higher = positive, finite scores only).
 * @module
 */
import { InputError } from '@diffmem/core';
import { rocAuc } from '../roc.js';

/**
 * AUC = P(s⁺ < s⁻) + ½·P(s⁺ = s⁻) over all (positive, negative) pairs — the Mann–Whitney
 * statistic with ties counted half, "positive" being the group expected to be more memorized.
 * ∞ is mapped to a finite value above every finite score (AUC only depends on ranks), scores are
 * negated, and {@link rocAuc} does the rest. NaN scores are rejected (drop non-finite records).
 * @throws InputError when a group is empty or holds NaN.
 */
export function aucLowerIsPositive(positives: readonly number[], negatives: readonly number[]): number {
  if (positives.length === 0 || negatives.length === 0) throw new InputError('EMPTY_INPUT', 'AUC needs at least one score in each group');
  const all = [...positives, ...negatives];
  if (all.some((v) => Number.isNaN(v))) throw new InputError('NAN_SCORE', 'AUC scores must not be NaN');
  const finite = all.filter((v) => Number.isFinite(v));
  const top = finite.length ? Math.max(...finite.map(Math.abs)) * 2 + 1 : 1;
  const rank = (v: number): number => (v === Infinity ? top : v === -Infinity ? -top : v);
  return rocAuc(
    all.map((v) => -rank(v)),
    all.map((_, i) => i < positives.length),
  );
}
