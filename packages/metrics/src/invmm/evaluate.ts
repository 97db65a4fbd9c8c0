/**
 * The InvMM evidence run on a training run with known membership (the DDPM `--dup` self-check of
 * the reference document, A.7): invert a few duplicated, ordinary and held-out images, compare
 * the score distributions per group, and report how well InvMM separates duplicated images from
 * the others (AUC, lower score = more memorized) and the time per image.
 * `scripts/eval-invmm.mjs` is a thin command-line wrapper around {@link evaluateInvMMOnMembership}.
 * @module
 */
import * as tf from '@tensorflow/tfjs-core';
import { ConfigError, InputError, type ImageDataset, type Membership, type MembershipGroup } from '@diffmem/core';
import { auditInvMM, type AuditInvMMOptions, type InvMMAuditEvent } from './audit.js';
import { aucLowerIsPositive } from './auc.js';
import type { InvMMRecord } from './invert.js';
import type { InvMMConfig } from './presets.js';
import type { ReplicationDescriptor } from './replication.js';

/** Every membership group, in report order. */
export const INVMM_MEMBERSHIP_GROUPS: readonly MembershipGroup[] = ['duplicated', 'ordinary', 'held-out'];

/** Options of {@link evaluateInvMMOnMembership}. */
export interface EvaluateInvMMOptions extends Omit<AuditInvMMOptions, 'images' | 'ids' | 'labels' | 'onProgress'> {
  membership: Membership;
  /** The dataset the membership indexes (matched by image id). Not disposed. */
  dataset: ImageDataset;
  /** Images per group: the first `perGroup` entries of each group, in membership order. */
  perGroup: number;
  /** Groups to evaluate (default all three). */
  groups?: readonly MembershipGroup[];
  onProgress?: (e: InvMMAuditEvent & { group: MembershipGroup }) => void;
}

/** Score distribution of one group. */
export interface InvMMGroupSummary {
  group: MembershipGroup;
  count: number;
  replicated: number;
  notReplicated: number;
  nonFinite: number;
  /** Scores of the group (∞ = not replicated), ascending; non-finite records excluded. */
  scores: number[];
  /** Median score (∞ when at least half were not replicated); null when empty. */
  median: number | null;
  /** Mean of the finite scores; null when none. */
  meanFinite: number | null;
  /** Median optimisation steps. */
  medianSteps: number | null;
  /** Median seconds per image. */
  medianSeconds: number | null;
}

/** What {@link evaluateInvMMOnMembership} returns. */
export interface InvMMMembershipEvaluation {
  groups: Partial<Record<MembershipGroup, InvMMGroupSummary>>;
  /** AUC (duplicated = positive, lower score = more memorized); null when a group is missing/empty. */
  auc: { duplicatedVsOrdinary: number | null; duplicatedVsHeldOut: number | null };
  /** Median wall-clock seconds per image over the images inverted in this run (null if all resumed). */
  medianSecondsPerImage: number | null;
  /** Median over every record, including resumed ones. */
  medianSecondsPerImageAll: number | null;
  records: Array<{ group: MembershipGroup; record: InvMMRecord }>;
  computed: number;
  resumed: number;
  interrupted: boolean;
  config: InvMMConfig;
  replication: ReplicationDescriptor;
}

function median(v: readonly number[]): number | null {
  if (v.length === 0) return null;
  const s = [...v].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? (s[m] as number) : ((s[m - 1] as number) + (s[m] as number)) / 2;
}

/** Summarises the records of one group. */
export function summarizeInvMMGroup(group: MembershipGroup, records: readonly InvMMRecord[]): InvMMGroupSummary {
  const scored = records.filter((r) => r.status !== 'non-finite').map((r) => r.score).sort((a, b) => a - b);
  const finite = scored.filter((s) => Number.isFinite(s));
  return {
    group,
    count: records.length,
    replicated: records.filter((r) => r.status === 'replicated').length,
    notReplicated: records.filter((r) => r.status === 'not-replicated').length,
    nonFinite: records.filter((r) => r.status === 'non-finite').length,
    scores: scored,
    median: scored.length === 0 ? null : scored.length % 2 ? (scored[(scored.length - 1) / 2] as number) : medianWithInf(scored),
    meanFinite: finite.length ? finite.reduce((a, b) => a + b, 0) / finite.length : null,
    medianSteps: median(records.map((r) => r.steps)),
    medianSeconds: median(records.map((r) => r.seconds)),
  };
}

function medianWithInf(sorted: number[]): number {
  const m = sorted.length / 2;
  const a = sorted[m - 1] as number;
  const b = sorted[m] as number;
  return Number.isFinite(b) ? (a + b) / 2 : b;
}

/**
 * Runs {@link auditInvMM} on `perGroup` images of each membership group and summarises the
 * result. Images come from `dataset` by id (the membership's `id`); labels from the membership
 * (for class-conditional models: an in-memory model is detected, a model source needs
 * `classConditioning: 'given'`).
 * @throws InputError when a membership id is missing from the dataset; ConfigError for an empty selection.
 */
export async function evaluateInvMMOnMembership(o: EvaluateInvMMOptions): Promise<InvMMMembershipEvaluation> {
  const { membership, dataset, perGroup, groups = INVMM_MEMBERSHIP_GROUPS, onProgress, ...auditOptions } = o;
  if (!Number.isInteger(perGroup) || perGroup < 1) throw new ConfigError(`perGroup must be a positive integer, got ${perGroup}`);
  const byId = new Map(dataset.records.map((r, i) => [r.id, i]));
  const chosen: Array<{ group: MembershipGroup; id: string; label: number | null; index: number }> = [];
  for (const g of groups) {
    const entries = membership.entries.filter((e) => e.group === g).slice(0, perGroup);
    for (const e of entries) {
      const index = byId.get(e.id);
      if (index === undefined) {
        throw new InputError('MEMBERSHIP_ID_NOT_IN_DATASET', `membership image ${e.id} (${g}) is not in dataset ${dataset.name}; load the dataset the model was trained on`, {
          id: e.id,
        });
      }
      chosen.push({ group: g, id: e.id, label: e.label, index });
    }
  }
  if (chosen.length === 0) throw new ConfigError('no membership entries in the requested groups');
  const images = tf.tidy(() => tf.gather(dataset.images, tf.tensor1d(chosen.map((c) => c.index), 'int32'))) as tf.Tensor4D;
  try {
    // Labels go to class-conditional models only: known from an in-memory model, or from an
    // explicit classConditioning: 'given' (for model sources, which are loaded later).
    const inMemory = (auditOptions.model as { denoiser?: { info?: { numClassEmbeds: number | null } } }).denoiser;
    const wantsLabels = auditOptions.classConditioning === 'given' || (inMemory?.info?.numClassEmbeds != null && auditOptions.classConditioning !== 'soft');
    const conditional = wantsLabels && chosen.every((c) => c.label !== null);
    const groupOf = new Map(chosen.map((c) => [c.id, c.group]));
    const res = await auditInvMM({
      ...auditOptions,
      images,
      ids: chosen.map((c) => c.id),
      ...(conditional ? { labels: chosen.map((c) => c.label) } : {}),
      ...(onProgress ? { onProgress: (e: InvMMAuditEvent) => onProgress({ ...e, group: groupOf.get(e.id) as MembershipGroup }) } : {}),
    });
    const records = res.records.map((r) => ({ group: groupOf.get(r.id) as MembershipGroup, record: r }));
    const summaries: Partial<Record<MembershipGroup, InvMMGroupSummary>> = {};
    for (const g of groups) summaries[g] = summarizeInvMMGroup(g, records.filter((r) => r.group === g).map((r) => r.record));
    const scoresOf = (g: MembershipGroup): number[] => summaries[g]?.scores ?? [];
    const auc = (a: MembershipGroup, b: MembershipGroup): number | null =>
      scoresOf(a).length && scoresOf(b).length ? aucLowerIsPositive(scoresOf(a), scoresOf(b)) : null;
    // Records computed in this run carry meaningful timings; resumed ones were timed earlier.
    const resumedIds = new Set(res.resumedIds);
    const fresh = res.records.filter((r) => !resumedIds.has(r.id));
    return {
      groups: summaries,
      auc: { duplicatedVsOrdinary: auc('duplicated', 'ordinary'), duplicatedVsHeldOut: auc('duplicated', 'held-out') },
      medianSecondsPerImage: res.computed > 0 ? median(fresh.map((r) => r.seconds)) : null,
      medianSecondsPerImageAll: median(res.records.map((r) => r.seconds)),
      records,
      computed: res.computed,
      resumed: res.resumed,
      interrupted: res.interrupted,
      config: res.config,
      replication: res.replication,
    };
  } finally {
    images.dispose();
  }
}

const fmt = (v: number | null): string => (v === null ? '—' : Number.isFinite(v) ? v.toPrecision(4) : '∞');

/** A plain-text report of an evaluation (what `scripts/eval-invmm.mjs` prints). */
export function formatInvMMEvaluation(e: InvMMMembershipEvaluation): string {
  const lines: string[] = [];
  const c = e.config;
  lines.push(
    `InvMM: ${c.maxSteps} steps max, B=${c.batchSize}, C=${c.checkEvery}, δ=${c.lambdaIncrement}, ξ=${c.stallThreshold}, lr=${c.learningRate}; ` +
      `verification ${c.verification.numSamples} samples × DDIM ${c.verification.numInferenceSteps} steps (${c.verification.sampler}); ` +
      `replication ${e.replication.name} ${e.replication.kind === 'similarity' ? '≥' : '≤'} ${e.replication.threshold}; score = KL ${c.scoreReduction} per dimension`,
  );
  lines.push('group        n  replicated  median     mean(finite)  median steps  median s  scores (ascending)');
  for (const g of INVMM_MEMBERSHIP_GROUPS) {
    const s = e.groups[g];
    if (!s) continue;
    lines.push(
      `${g.padEnd(11)} ${String(s.count).padStart(2)}  ${`${s.replicated}/${s.count}`.padStart(10)}  ${fmt(s.median).padEnd(9)}  ${fmt(s.meanFinite).padEnd(12)}  ` +
        `${fmt(s.medianSteps).padEnd(12)}  ${fmt(s.medianSeconds).padEnd(8)}  [${s.scores.map(fmt).join(', ')}]` +
        (s.nonFinite ? `  (${s.nonFinite} non-finite)` : ''),
    );
  }
  lines.push(`AUC duplicated vs ordinary: ${fmt(e.auc.duplicatedVsOrdinary)}   duplicated vs held-out: ${fmt(e.auc.duplicatedVsHeldOut)}   (lower score = more memorized)`);
  lines.push(
    `median time per image: ${fmt(e.medianSecondsPerImage)} s (this run: ${e.computed} inverted, ${e.resumed} resumed)` + (e.interrupted ? '  — INTERRUPTED: rerun to finish' : ''),
  );
  return lines.join('\n');
}
