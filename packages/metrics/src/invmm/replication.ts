/**
 * The replication test of InvMM's verification step (A.5): does every sample drawn from the
 * inverted N(μ, σ²) regenerate the target image?
 *
 * The official test is SSCD (`sscd_disc_large`) similarity ≥ β = 0.5, minimum over the 8
 * samples. SSCD is not bundled with diffmem, so the test is pluggable:
 * - {@link embeddingReplicationTest}: any image embedder (an SSCD port, or a small descriptor) —
 *   similarity = dot product of (by default L2-normalised) descriptors, pass iff min ≥ β;
 * - {@link rmsReplicationTest}: pixel RMS ℓ2 (Carlini et al. 2023) to the target, pass iff
 *   max ≤ τ (for pixel-space models);
 * - {@link nl2ReplicationTest}: the RMS distance to the target normalised by α × the mean RMS
 *   distance of the sample to its k nearest training images (Carlini et al. §5.1 / AMG Eq. 8 with
 *   the target in the numerator), pass iff max ≤ τ.
 *
 * Any replacement of SSCD changes the measure: its threshold has to be recalibrated (reference
 * document, A.9 item 4), and the record stores which test produced it.
 * @module
 */
import * as tf from '@tensorflow/tfjs-core';
import { ConfigError, InputError, ShapeError, type ImageBatch } from '@diffmem/core';
import { rmsL2 } from '../distances/l2.js';
import { nl2 } from '../distances/nl2.js';
import { CopyDescriptorEmbedder } from '../embedders/copy_descriptor.js';
import type { Embedder } from '../embedders/types.js';
import { ReferenceIndex } from '../reference_index.js';

/** `'similarity'`: higher is closer, pass iff min ≥ threshold. `'distance'`: lower is closer, pass iff max ≤ threshold. */
export type ReplicationKind = 'similarity' | 'distance';

/** A per-sample replication statistic with a pass threshold. */
export interface ReplicationTest {
  /** Short description stored in every record (e.g. `rms-l2`, `embedding:sscd`). */
  readonly name: string;
  readonly kind: ReplicationKind;
  readonly threshold: number;
  /**
   * One value per sample: `target` is [1,H,W,C], `samples` [n,H,W,C], both display space [0, 1].
   * Neither is disposed.
   */
  score(target: ImageBatch<'display'>, samples: ImageBatch<'display'>): number[] | Promise<number[]>;
  /** Frees resources the test owns (optional). */
  dispose?(): void;
}

/** What a record keeps about the test that produced it. */
export interface ReplicationDescriptor {
  name: string;
  kind: ReplicationKind;
  threshold: number;
}

/** The descriptor of a test. */
export function describeReplication(test: ReplicationTest): ReplicationDescriptor {
  return { name: test.name, kind: test.kind, threshold: test.threshold };
}

/**
 * The official success rule on per-sample values: `min ≥ β` for similarities, `max ≤ τ` for
 * distances. A NaN value never passes.
 */
export function replicationPassed(test: Pick<ReplicationTest, 'kind' | 'threshold'>, values: readonly number[]): boolean {
  if (values.length === 0 || values.some((v) => Number.isNaN(v))) return false;
  return test.kind === 'similarity' ? Math.min(...values) >= test.threshold : Math.max(...values) <= test.threshold;
}

function checkThreshold(t: unknown, name: string): number {
  if (typeof t !== 'number' || !Number.isFinite(t)) throw new ConfigError(`${name} threshold must be a finite number, got ${String(t)}`);
  return t;
}

/**
 * Pixel replication: value = RMS ℓ2 distance (Carlini et al. 2023, in [0, 1] display units)
 * between each sample and the target; passes when every sample is within `threshold`.
 */
export function rmsReplicationTest(options: { threshold: number }): ReplicationTest {
  const threshold = checkThreshold(options?.threshold, 'rms-l2');
  if (threshold <= 0) throw new ConfigError(`rms-l2 threshold must be > 0, got ${threshold}`);
  return {
    name: 'rms-l2',
    kind: 'distance',
    threshold,
    score(target, samples) {
      const d = rmsL2(samples, target);
      const v = Array.from(d.dataSync());
      d.dispose();
      return v;
    },
  };
}

/** Options of {@link nl2ReplicationTest}. */
export interface Nl2ReplicationOptions {
  /** The training set (display images) that defines the neighbourhood. Not disposed by the test. */
  index: ReferenceIndex;
  threshold: number;
  /** Neighbourhood size (default 50, capped at the index size). */
  k?: number;
  /** α (default 0.5). */
  alpha?: number;
}

/**
 * Normalised pixel replication: value = ℓ2(x̂, x0) / (α · mean_{z ∈ kNN(x̂)} ℓ2(x̂, z)) with RMS
 * ℓ2, the k nearest training images of the sample x̂ (the generated-centric neighbourhood of
 * `nl2`), and the *target* x0 in the numerator, so a held-out target can be scored too.
 */
export function nl2ReplicationTest(options: Nl2ReplicationOptions): ReplicationTest {
  const threshold = checkThreshold(options?.threshold, 'nl2');
  if (!(options.index instanceof ReferenceIndex)) throw new ConfigError('nl2ReplicationTest needs a ReferenceIndex of training images');
  const k = Math.min(options.k ?? 50, options.index.size);
  const alpha = options.alpha ?? 0.5;
  return {
    name: `nl2(k=${k},alpha=${alpha})`,
    kind: 'distance',
    threshold,
    score(target, samples) {
      const res = nl2(samples, options.index, { k, alpha, variant: 'generated-centric' });
      const d = rmsL2(samples, target);
      const num = Array.from(d.dataSync());
      d.dispose();
      return num.map((n, i) => {
        const den = alpha * (res.neighborMeanDistance[i] as number);
        return den > 0 ? n / den : n === 0 ? 0 : Infinity;
      });
    },
  };
}

/**
 * What the embedding test needs of an {@link Embedder} (any copy-detection embedder of this
 * package, e.g. an SSCD port loaded with `GraphModelEmbedder`, or `CopyDescriptorEmbedder`):
 * `embed` (display images [N,H,W,C] → [N, D], sync or async; a new tensor the caller disposes)
 * and optionally a `name` for the records.
 */
export type ReplicationEmbedder = Pick<Embedder, 'embed'> & { readonly name?: string };

/** Options of {@link embeddingReplicationTest}. */
export interface EmbeddingReplicationOptions {
  embedder: ReplicationEmbedder;
  /** β (official: 0.5 on SSCD). */
  threshold?: number;
  /** L2-normalise descriptors before the dot product (default true: cosine similarity). */
  normalize?: boolean;
}

/**
 * The official test's form: similarity = dot product of the descriptors of the target and each
 * sample (`q.mm(v.T)` in the official code, on SSCD's normalised descriptors), pass iff the
 * minimum over samples is ≥ β. The embedder does its own resizing/normalisation (the official
 * SSCD transform resizes to 32/256/320 px and applies ImageNet mean/std).
 */
export function embeddingReplicationTest(options: EmbeddingReplicationOptions): ReplicationTest {
  const embedder = options?.embedder;
  if (!embedder || typeof embedder.embed !== 'function') throw new ConfigError('embeddingReplicationTest needs an embedder with embed(images)');
  const threshold = checkThreshold(options.threshold ?? 0.5, 'embedding');
  const normalize = options.normalize ?? true;
  return {
    name: `embedding:${embedder.name ?? 'custom'}${normalize ? '' : ':raw-dot'}`,
    kind: 'similarity',
    threshold,
    async score(target, samples) {
      const both = tf.concat([target, samples], 0) as ImageBatch<'display'>;
      let e: tf.Tensor2D;
      try {
        e = await (embedder.embed(both) as tf.Tensor2D | Promise<tf.Tensor2D>);
      } finally {
        both.dispose();
      }
      try {
        const n = samples.shape[0];
        if (e.rank !== 2 || e.shape[0] !== n + 1) {
          throw new ShapeError(`the embedder returned [${e.shape.join(',')}] for ${n + 1} images (expected [${n + 1}, D])`);
        }
        const sims = tf.tidy(() => {
          const u = normalize ? tf.div(e, tf.maximum(tf.norm(e, 2, 1, true), 1e-12)) : e;
          const q = tf.slice(u, [0, 0], [1, -1]);
          const v = tf.slice(u, [1, 0], [-1, -1]);
          return tf.reshape(tf.matMul(v, q, false, true), [-1]);
        });
        const out = Array.from(sims.dataSync());
        sims.dispose();
        return out;
      } finally {
        e.dispose();
      }
    },
  };
}

/**
 * A replication test as plain data, for worker threads:
 * - `{kind: 'rms', threshold}`;
 * - `{kind: 'nl2', threshold, indexDir, k?, alpha?}` (a saved `ReferenceIndex` of training images);
 * - `{kind: 'copy-descriptor', threshold}`: {@link embeddingReplicationTest} with this package's
 *   weight-free `CopyDescriptorEmbedder` (not SSCD: calibrate the threshold on your data);
 * - `{kind: 'module', module, fn, arg?}`: an ES module (compiled JS) export returning a
 *   {@link ReplicationTest} (e.g. one wrapping an SSCD port).
 */
export type ReplicationSpec =
  | { kind: 'rms'; threshold: number }
  | { kind: 'nl2'; threshold: number; indexDir: string; k?: number; alpha?: number }
  | { kind: 'copy-descriptor'; threshold: number }
  | { kind: 'module'; module: string; fn: string; arg?: unknown };

/** Builds the test a {@link ReplicationSpec} describes (the caller disposes it when done). */
export async function replicationTestFromSpec(spec: ReplicationSpec): Promise<ReplicationTest> {
  switch (spec?.kind) {
    case 'rms':
      return rmsReplicationTest({ threshold: spec.threshold });
    case 'nl2': {
      const index = await ReferenceIndex.load(spec.indexDir);
      const test = nl2ReplicationTest({
        index,
        threshold: spec.threshold,
        ...(spec.k !== undefined ? { k: spec.k } : {}),
        ...(spec.alpha !== undefined ? { alpha: spec.alpha } : {}),
      });
      return { ...test, score: test.score, dispose: () => index.dispose() };
    }
    case 'copy-descriptor':
      return embeddingReplicationTest({ embedder: new CopyDescriptorEmbedder(), threshold: checkThreshold(spec.threshold, 'copy-descriptor') });
    case 'module': {
      let mod: Record<string, unknown>;
      try {
        mod = (await import(spec.module)) as Record<string, unknown>;
      } catch (err) {
        throw new InputError('REPLICATION_MODULE_UNREADABLE', `cannot import ${spec.module}: ${(err as Error).message}`, { module: spec.module });
      }
      const f = mod[spec.fn];
      if (typeof f !== 'function') throw new ConfigError(`replication module ${spec.module} has no exported function "${spec.fn}"`);
      const test = (await (f as (a: unknown) => unknown)(spec.arg)) as ReplicationTest;
      if (!test || typeof test.score !== 'function' || (test.kind !== 'similarity' && test.kind !== 'distance')) {
        throw new ConfigError(`${spec.module}#${spec.fn} must return a ReplicationTest {name, kind, threshold, score}`);
      }
      return test;
    }
    default:
      throw new ConfigError(`replication spec must be {kind: 'rms' | 'nl2' | 'copy-descriptor' | 'module', …}, got ${JSON.stringify(spec)}`);
  }
}
