/**
 * Per-image SolidMark results and their aggregate: eidetic counts always reported next to the
 * three null baselines (reference B.6 caveat, Part D): the analytic chance level (2δ − δ², and
 * its exact value given the model's own predictions), the shuffled-key control and a
 * random-initialised model of the same configuration run the same way.
 * @module
 */
import { ConfigError, type MembershipGroup } from '@diffmem/core';
import type { SolidMarkKeymapEntry } from './keymap.js';
import {
  SOLIDMARK_DELTAS,
  chanceHitProbability,
  chanceRate,
  meanKeyDistance,
  nearestKey,
  shuffledKeyCounts,
} from './score.js';

/** Identity of an image being scored: its keymap entry and that entry's index. */
export interface SolidMarkImageInfo extends SolidMarkKeymapEntry {
  /** Keymap entry index. */
  entry: number;
}

/** Everything measured for one image (the JSON written per image by the audit). */
export interface SolidMarkImageResult extends SolidMarkImageInfo {
  /** k̂ of each outpainting (repeat), display space. */
  predictedKeys: number[];
  /** Border standard deviation of each outpainting. */
  borderStd: number[];
  /** Nearest key of each outpainting (distance and which key). */
  nearest: Array<{ distance: number; keyIndex: number }>;
  /** |k̂ − mean(keys)| of each outpainting. */
  meanKeyDistance: number[];
  /** ℓ_SM of the image: the smallest nearest-key distance over its outpaintings (= |k̂ − k| for one key, one outpainting). */
  distance: number;
  /** Wall-clock seconds spent on this image (its share of the batch). */
  seconds: number;
}

/** Scores one image's outpaintings against its keys. */
export function scoreSolidMarkImage(info: SolidMarkImageInfo, predictedKeys: readonly number[], borderStd: readonly number[], seconds: number): SolidMarkImageResult {
  if (predictedKeys.length === 0 || predictedKeys.length !== borderStd.length) {
    throw new ConfigError(`image ${info.id}: need one border std per prediction (got ${predictedKeys.length} and ${borderStd.length})`);
  }
  const nearest = predictedKeys.map((p) => nearestKey(p, info.keys));
  return {
    ...info,
    keys: [...info.keys],
    predictedKeys: [...predictedKeys],
    borderStd: [...borderStd],
    nearest,
    meanKeyDistance: predictedKeys.map((p) => meanKeyDistance(p, info.keys)),
    distance: Math.min(...nearest.map((x) => x.distance)),
    seconds,
  };
}

/** Counts at one δ, with every null next to them. */
export interface SolidMarkDeltaCounts {
  delta: number;
  /** Images scored. */
  n: number;
  /** (ℓ_SM, δ)-eidetic memorizations #{i : ℓ_SM,i < δ}. */
  count: number;
  /** count / n. */
  rate: number;
  /** Duplication study: #{i : |k̂ − mean(keys)| < δ for some outpainting}. */
  meanKeyCount: number;
  /** Which key was hit: hits per key index (nearest key of the best outpainting). */
  hitKeyIndex: number[];
  /** Analytic chance. */
  chance: {
    /** 2δ − δ² (one key, one outpainting, k̂ independent of k and uniform). */
    rate: number;
    /** Σ_i chanceRate(δ, m_i) — the count expected at chance for uniform k̂ (m_i keys, one outpainting); null with repeats. */
    expected: number | null;
    /** Σ_i P(hit | the model's own k̂), keys i.i.d. U[0,1) ⟂ model: exact chance given the predictions. */
    givenPredictions: number;
  };
  /** Shuffled-key control: the same predictions against permuted keys (mean ± sd over permutations). */
  shuffled: { mean: number; sd: number; permutations: number };
  /** The random-initialised model run the same way on the same images (null when not given). */
  randomInit: { count: number; n: number; rate: number } | null;
}

/** Summary of a set of images. */
export interface SolidMarkGroupSummary {
  n: number;
  meanDistance: number;
  medianDistance: number;
  counts: SolidMarkDeltaCounts[];
  /** Images whose outpainted border has std > the threshold (not a solid key: see warnings). */
  highBorderStd: number;
  /** Random-init model: mean ℓ_SM (null when not given). */
  randomInitMeanDistance: number | null;
}

/** The audit's aggregate. */
export interface SolidMarkSummary {
  deltas: number[];
  /** Outpaintings per image. */
  repeats: number;
  /** Trained images (copies ≥ 1): the headline counts. */
  overall: SolidMarkGroupSummary;
  /** By membership group; `held-out` keys were never trained (a non-member control: expect chance). */
  byGroup: Partial<Record<MembershipGroup, SolidMarkGroupSummary>>;
  /** By number of training copies (duplication groups), as strings "0", "1", "5", … */
  byCopies: Record<string, SolidMarkGroupSummary>;
  secondsPerImage: { model: number | null; randomInit: number | null };
  borderStdThreshold: number;
  /** Human-readable caveats (e.g. borders that are not solid). */
  warnings: string[];
}

/** Options of {@link summarizeSolidMark}. */
export interface SummaryOptions {
  deltas?: readonly number[];
  /** Seed of the shuffled-key control. Default 0. */
  seed?: number;
  /** Permutations of the shuffled-key control. Default 200. */
  permutations?: number;
  /** Border std above which an outpainted border counts as "not solid". Default {@link SOLIDMARK_BORDER_STD_THRESHOLD}. */
  borderStdThreshold?: number;
}

/**
 * Default threshold on the outpainted border's standard deviation (display space). A SolidMark
 * border is constant; a model that learned borders paints it nearly so (the memorizing reference
 * model: < 1e-3). Image-like content or noise has std ≳ 0.2.
 */
export const SOLIDMARK_BORDER_STD_THRESHOLD = 0.15;

function median(xs: number[]): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? (s[mid] as number) : ((s[mid - 1] as number) + (s[mid] as number)) / 2;
}

/**
 * Aggregates per-image results (and, optionally, the random-init model's results on the same
 * images) into eidetic counts next to the analytic, shuffled-key and random-init nulls — overall
 * (trained images), per membership group and per duplication level.
 */
export function summarizeSolidMark(
  results: readonly SolidMarkImageResult[],
  nullResults: readonly SolidMarkImageResult[] | null,
  o: SummaryOptions = {},
): SolidMarkSummary {
  const deltas = [...(o.deltas ?? SOLIDMARK_DELTAS)];
  if (deltas.length === 0) throw new ConfigError('at least one δ is needed');
  for (const d of deltas) if (!(Number.isFinite(d) && d > 0 && d <= 1)) throw new ConfigError(`δ must be in (0, 1], got ${d}`);
  const threshold = o.borderStdThreshold ?? SOLIDMARK_BORDER_STD_THRESHOLD;
  if (!(Number.isFinite(threshold) && threshold > 0)) throw new ConfigError(`borderStdThreshold must be > 0, got ${threshold}`);
  const nullById = new Map((nullResults ?? []).map((r) => [r.id, r]));
  if (nullResults) {
    for (const r of results) {
      if (!nullById.has(r.id)) throw new ConfigError(`the random-init results lack image ${r.id}: run both models on the same images`);
    }
  }
  const repeats = results[0]?.predictedKeys.length ?? 1;

  // Group ids: 0 = overall (trained), then membership groups, then copies levels.
  const groupNames: string[] = ['overall'];
  const memberOf: number[][] = results.map(() => []);
  const addTo = (name: string, i: number): void => {
    let g = groupNames.indexOf(name);
    if (g < 0) g = groupNames.push(name) - 1;
    (memberOf[i] as number[]).push(g);
  };
  results.forEach((r, i) => {
    if (r.copies > 0) addTo('overall', i);
    addTo(`group:${r.group}`, i);
    addTo(`copies:${r.copies}`, i);
  });
  // The shuffle pools every audited key (held-out control keys too), dealt back structure-preserving.
  const G = groupNames.length;
  const shuffledByGroup = Array.from({ length: G }, () => ({ mean: new Array<number>(deltas.length).fill(0), sd: new Array<number>(deltas.length).fill(0) }));
  let permutations = o.permutations ?? 200;
  if (results.length > 0) {
    // Each image belongs to several groups: run the control once per "partition" (overall flag, group, copies).
    const partitions: Array<(r: SolidMarkImageResult) => string | null> = [
      (r) => (r.copies > 0 ? 'overall' : null),
      (r) => `group:${r.group}`,
      (r) => `copies:${r.copies}`,
    ];
    for (const part of partitions) {
      const names = results.map(part);
      const ids = names.map((nm) => (nm === null ? G : groupNames.indexOf(nm)));
      const sh = shuffledKeyCounts(
        results.map((r) => r.predictedKeys),
        results.map((r) => r.keys),
        deltas,
        { seed: o.seed ?? 0, permutations, groups: ids, numGroups: G + 1 },
      );
      permutations = sh.permutations;
      for (let g = 0; g < G; g++) {
        if (!ids.includes(g)) continue;
        shuffledByGroup[g] = { mean: sh.mean[g] as number[], sd: sh.sd[g] as number[] };
      }
    }
  }

  const summarize = (g: number): SolidMarkGroupSummary => {
    const idx = results.map((_, i) => i).filter((i) => (memberOf[i] as number[]).includes(g));
    const rs = idx.map((i) => results[i] as SolidMarkImageResult);
    const nulls = nullResults ? rs.map((r) => nullById.get(r.id) as SolidMarkImageResult) : null;
    const dist = rs.map((r) => r.distance);
    const allSingle = rs.every((r) => r.predictedKeys.length === 1);
    const counts = deltas.map((delta, di): SolidMarkDeltaCounts => {
      const maxKeys = Math.max(1, ...rs.map((r) => r.keys.length));
      const hitKeyIndex = new Array<number>(maxKeys).fill(0);
      let count = 0;
      let meanKeyCount = 0;
      for (const r of rs) {
        if (r.distance < delta) {
          count++;
          const best = r.nearest.reduce((a, b) => (b.distance < a.distance ? b : a));
          (hitKeyIndex[best.keyIndex] as number) += 1;
        }
        if (r.meanKeyDistance.some((d) => d < delta)) meanKeyCount++;
      }
      const nullCount = nulls ? nulls.filter((r) => r.distance < delta).length : 0;
      return {
        delta,
        n: rs.length,
        count,
        rate: rs.length ? count / rs.length : NaN,
        meanKeyCount,
        hitKeyIndex,
        chance: {
          rate: chanceRate(delta),
          expected: allSingle ? rs.reduce((a, r) => a + chanceRate(delta, r.keys.length), 0) : null,
          givenPredictions: rs.reduce((a, r) => a + chanceHitProbability(r.predictedKeys, r.keys.length, delta), 0),
        },
        shuffled: {
          mean: (shuffledByGroup[g] as { mean: number[] }).mean[di] as number,
          sd: (shuffledByGroup[g] as { sd: number[] }).sd[di] as number,
          permutations,
        },
        randomInit: nulls ? { count: nullCount, n: nulls.length, rate: nulls.length ? nullCount / nulls.length : NaN } : null,
      };
    });
    return {
      n: rs.length,
      meanDistance: rs.length ? dist.reduce((a, b) => a + b, 0) / rs.length : NaN,
      medianDistance: median(dist),
      counts,
      highBorderStd: rs.filter((r) => Math.max(...r.borderStd) > threshold).length,
      randomInitMeanDistance: nulls && nulls.length ? nulls.reduce((a, r) => a + r.distance, 0) / nulls.length : null,
    };
  };

  const byGroup: Partial<Record<MembershipGroup, SolidMarkGroupSummary>> = {};
  const byCopies: Record<string, SolidMarkGroupSummary> = {};
  groupNames.forEach((name, g) => {
    if (name.startsWith('group:')) byGroup[name.slice(6) as MembershipGroup] = summarize(g);
    else if (name.startsWith('copies:')) byCopies[name.slice(7)] = summarize(g);
  });
  const overall = summarize(0);
  const secs = (rs: readonly SolidMarkImageResult[] | null): number | null =>
    rs && rs.length ? rs.reduce((a, r) => a + r.seconds, 0) / rs.length : null;

  const warnings: string[] = [];
  const flagged = results.filter((r) => Math.max(...r.borderStd) > threshold).length;
  if (results.length > 0 && flagged / results.length > 0.5) {
    warnings.push(
      `${flagged} of ${results.length} outpainted borders are not solid (std > ${threshold}): the model does not paint ` +
        'SolidMark borders — it was probably trained without marks, and ℓ_SM is then meaningless (counts sit at chance by construction)',
    );
  }
  if (overall.n === 0) warnings.push('no trained image (copies ≥ 1) was scored: the overall counts are empty');
  if (!nullResults) warnings.push('no random-init model was given: only the analytic and shuffled-key nulls are reported');
  return {
    deltas,
    repeats,
    overall,
    byGroup,
    byCopies,
    secondsPerImage: { model: secs(results), randomInit: secs(nullResults) },
    borderStdThreshold: threshold,
    warnings,
  };
}
