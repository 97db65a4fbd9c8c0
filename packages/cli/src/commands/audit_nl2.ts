/**
 * `diffmem audit nl2`: generate N images from a trained model and score each against the exact
 * training set with nL2 (AMG Eq. 8, generated-centric; Carlini et al.'s reference-centric as an
 * option) and RMS ℓ2 to the nearest training image; held-out images are scored the same way as a
 * control (they were never trained on, so they should not look memorized).
 * @module
 */
import * as tf from '@tensorflow/tfjs-core';
import {
  ConfigError,
  groupIndices,
  loadDatasetFromSpec,
  loadDiffusionPipeline,
  toDisplayRange,
  type ImageBatch,
  type ImageDataset,
  type Membership,
} from '@diffmem/core';
import { AMG_NL2_THRESHOLDS, nl2, nl2Stats, ReferenceIndex, type Nl2Stats, type Nl2Variant } from '@diffmem/metrics';
import { sampleImages } from './sample.js';
import type { GlobalFlags } from '../util.js';

/** Options of {@link runAuditNl2}. */
export interface AuditNl2Options extends GlobalFlags {
  model: string;
  n: number;
  steps: number;
  seed: number;
  workers: number;
  k: number;
  alpha: number;
  variant: Nl2Variant;
  /** Flag generations with RMS distance below this as copies (default 0.1, [0,1] units). */
  rmsThreshold: number;
}

/** One scored image. */
export interface ScoredImage {
  nl2: number;
  rms: number;
  nearestId: string | number;
}

/** Result of an nL2 audit. */
export interface AuditNl2Result {
  k: number;
  alpha: number;
  variant: Nl2Variant;
  references: number;
  generated: { stats: Nl2Stats; rmsBelow: number; scores: ScoredImage[] };
  heldOut: { stats: Nl2Stats; rmsBelow: number; scores: ScoredImage[] } | null;
  seconds: number;
}

/** The unique training images of a membership, with their dataset ids. */
export function trainingReferences(ds: ImageDataset, m: Membership): { images: ImageBatch<'display'>; ids: string[] } {
  const idx = m.entries.filter((e) => e.copies > 0).map((e) => e.index);
  if (idx.length === 0) throw new ConfigError('the membership lists no trained images');
  const images = tf.tidy(() => tf.gather(ds.images, tf.tensor1d(idx, 'int32'))) as ImageBatch<'display'>;
  return { images, ids: idx.map((i) => ds.records[i]?.id ?? String(i)) };
}

/** Scores display-space images against an index. */
export function scoreAgainst(images: tf.Tensor4D, index: ReferenceIndex, k: number, alpha: number, variant: Nl2Variant): ScoredImage[] {
  const r = nl2(images, index, { k, alpha, variant });
  return r.nl2.map((v, i) => ({ nl2: v, rms: r.nearestDistance[i] as number, nearestId: r.nearestId[i] as string | number }));
}

/** Runs the audit (see module docs). */
export async function runAuditNl2(o: AuditNl2Options): Promise<AuditNl2Result> {
  const t0 = performance.now();
  const pipe = await loadDiffusionPipeline(o.model);
  pipe.unet.dispose();
  if (!pipe.membership || !pipe.dataset) {
    throw new ConfigError(`${pipe.dir} has no membership.json / diffmem.json: nL2 needs the exact training set (train with diffmem train)`);
  }
  const ds = loadDatasetFromSpec(pipe.dataset);
  const refs = trainingReferences(ds, pipe.membership);
  const index = ReferenceIndex.fromImages(refs.images, { ids: refs.ids });
  const k = Math.min(o.k, refs.ids.length - 1);
  if (k < 1) throw new ConfigError('nL2 needs at least two training images');
  try {
    const { images } = await sampleImages({ ...o, scheduler: 'ddim' });
    const display = toDisplayRange(images);
    images.dispose();
    const gen = scoreAgainst(display, index, k, o.alpha, o.variant);
    display.dispose();
    const held = groupIndices(pipe.membership, 'held-out');
    let heldOut: AuditNl2Result['heldOut'] = null;
    if (held.length > 0) {
      const h = tf.tidy(() => tf.gather(ds.images, tf.tensor1d(held, 'int32'))) as tf.Tensor4D;
      const scores = scoreAgainst(h, index, k, o.alpha, o.variant);
      h.dispose();
      heldOut = { stats: nl2Stats(scores.map((s) => s.nl2), [AMG_NL2_THRESHOLDS.memorized, AMG_NL2_THRESHOLDS.loose]), rmsBelow: scores.filter((s) => s.rms < o.rmsThreshold).length, scores };
    }
    return {
      k,
      alpha: o.alpha,
      variant: o.variant,
      references: refs.ids.length,
      generated: {
        stats: nl2Stats(gen.map((s) => s.nl2), [AMG_NL2_THRESHOLDS.memorized, AMG_NL2_THRESHOLDS.loose]),
        rmsBelow: gen.filter((s) => s.rms < o.rmsThreshold).length,
        scores: gen,
      },
      heldOut,
      seconds: (performance.now() - t0) / 1000,
    };
  } finally {
    index.dispose();
    refs.images.dispose();
    ds.images.dispose();
  }
}
