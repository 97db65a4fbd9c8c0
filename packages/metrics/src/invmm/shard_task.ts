/**
 * The worker-thread tasks of a data-parallel InvMM inversion (one image on several threads, see
 * `parallel.ts`): a shard of one optimisation step's samples, a shard of one verification
 * round's samples, and a probe that checks the worker's model matches the main thread's.
 * Compiled to `dist/invmm/shard_task.js` and run by core's `WorkerPool`. Every task is a pure
 * function of its (structured-clone safe) argument; the model is loaded once per worker
 * (`worker_cache.ts`, shared with the per-image task). The `compute*` functions are what the
 * main thread runs for its own shard, so both sides execute the same code.
 * @module
 */
import * as tf from '@tensorflow/tfjs-core';
import { Generator } from '@diffmem/core';
import { reconstructionShardGrads } from './executor.js';
import type { InvMMClassCondition, InvMMModel, InvMMModelSource } from './model.js';
import type { InvMMSamplerKind } from './presets.js';
import { sampleVerificationDDIM } from './sampler.js';
import { cachedInvMMModel } from './worker_cache.js';

/** The data of one gradient shard (everything but the model). */
export interface InvMMGradShardData {
  /** [H, W, C] of the image. */
  shape: [number, number, number];
  /** The target in model space [−1, 1], [H·W·C]. */
  x0: Float32Array;
  mu: Float32Array;
  logvar: Float32Array;
  /** Soft labels: the class logits z [K]; else null. */
  logits: Float32Array | null;
  /** This shard's n ~ N(0, I), [b·H·W·C]. */
  noise: Float32Array;
  /** This shard's b timesteps. */
  timesteps: number[];
  /** Soft labels: this shard's Gumbel uniforms [b·K]; else null. */
  uniforms: Float32Array | null;
  label: number | null;
  gumbelTau: number;
}

/** Argument of the worker task `invmmGradShardTask`. */
export interface InvMMGradShardTaskArg extends InvMMGradShardData {
  source: InvMMModelSource;
}

/** Result of a gradient shard: Σ of its per-sample p_loss terms and the gradients of that sum. */
export interface InvMMGradShardResult {
  lossSum: number;
  gradMu: Float32Array;
  gradLogvar: Float32Array;
  gradLogits: Float32Array | null;
}

/** A class condition as plain data. */
export type InvMMConditionData = { kind: 'none' } | { kind: 'label'; label: number } | { kind: 'soft'; weights: Float32Array; classes: number };

/** The data of one verification shard (everything but the model). */
export interface InvMMSampleShardData {
  shape: [number, number, number];
  /** This shard's x_T, [count·H·W·C]. */
  xT: Float32Array;
  count: number;
  /** The condition of this shard's rows (soft weights: [count·K]). */
  condition: InvMMConditionData;
  guidanceScale: number;
  nullClassId: number;
  numInferenceSteps: number;
  sampler: InvMMSamplerKind;
}

/** Argument of the worker task `invmmSampleShardTask`. */
export interface InvMMSampleShardTaskArg extends InvMMSampleShardData {
  source: InvMMModelSource;
}

/** Argument of the worker task `invmmProbeTask`. */
export interface InvMMProbeTaskArg {
  source: InvMMModelSource;
  shape: [number, number, number];
  /** Class id of the probe (class-conditional models), else null. */
  label: number | null;
}

/** What a model probe reports (compared between the main thread and each worker). */
export interface InvMMProbeResult {
  sampleSize: number;
  inChannels: number;
  outChannels: number;
  numClassEmbeds: number | null;
  numTrainTimesteps: number;
  predictionType: string;
  alphasCumprod: Float32Array;
  /** The denoiser output at a fixed seeded input and t = ⌊T/2⌋, [H·W·C_out]. */
  output: Float32Array;
}

/** The gradient shard on `model` (this thread). Leaves no tensor behind. */
export function computeGradShard(model: InvMMModel, d: InvMMGradShardData): InvMMGradShardResult {
  const [h, w, c] = d.shape;
  const owned = tf.tidy(() => {
    const x0 = tf.tensor4d(d.x0, [1, h, w, c]);
    const mu = tf.tensor4d(d.mu, [1, h, w, c]);
    const logvar = tf.tensor4d(d.logvar, [1, h, w, c]);
    const logits = d.logits ? tf.tensor1d(d.logits) : null;
    const g = reconstructionShardGrads(model, x0, { mu, logvar, logits }, { noise: d.noise, timesteps: d.timesteps, uniforms: d.uniforms }, d.label, d.gumbelTau);
    return g.gradLogits ? [g.lossSum, g.gradMu, g.gradLogvar, g.gradLogits] : [g.lossSum, g.gradMu, g.gradLogvar];
  });
  try {
    const [loss, gm, gl, gz] = owned.map((t) => t.dataSync() as Float32Array);
    return {
      lossSum: (loss as Float32Array)[0] as number,
      gradMu: Float32Array.from(gm as Float32Array),
      gradLogvar: Float32Array.from(gl as Float32Array),
      gradLogits: gz ? Float32Array.from(gz) : null,
    };
  } finally {
    tf.dispose(owned);
  }
}

/** Verification sampling of one shard on `model` (this thread): x̂0 in [−1, 1], [count·H·W·C]. */
export async function computeSampleShard(model: InvMMModel, d: InvMMSampleShardData): Promise<Float32Array> {
  const [h, w, c] = d.shape;
  const xT = tf.tensor4d(d.xT, [d.count, h, w, c]);
  const weights = d.condition.kind === 'soft' ? tf.tensor2d(d.condition.weights, [d.count, d.condition.classes]) : null;
  const condition: InvMMClassCondition = weights ? { kind: 'soft', weights } : d.condition.kind === 'label' ? { kind: 'label', label: d.condition.label } : { kind: 'none' };
  try {
    const x = await sampleVerificationDDIM(model.denoiser, model.scheduler, xT, {
      numInferenceSteps: d.numInferenceSteps,
      sampler: d.sampler,
      condition,
      guidanceScale: d.guidanceScale,
      nullClassId: d.nullClassId,
    });
    try {
      return Float32Array.from((await x.data()) as Float32Array);
    } finally {
      x.dispose();
    }
  } finally {
    xT.dispose();
    weights?.dispose();
  }
}

/** Seed of the probe input (fixed: the probe must be identical on every thread). */
const PROBE_SEED = 20250605;

/** Probes `model` (this thread) with a fixed seeded input; see {@link InvMMProbeResult}. */
export function computeProbe(model: InvMMModel, shape: [number, number, number], label: number | null): InvMMProbeResult {
  const [h, w, c] = shape;
  const T = model.scheduler.numTrainTimesteps;
  const input = new Generator(PROBE_SEED).normalArray(h * w * c);
  const out = tf.tidy(() => {
    const x = tf.tensor4d(input, [1, h, w, c]);
    return label === null ? model.denoiser.predict(x, Math.floor(T / 2)) : model.denoiser.predict(x, Math.floor(T / 2), tf.tensor1d([label], 'int32'));
  });
  try {
    const info = model.denoiser.info;
    return {
      sampleSize: info.sampleSize,
      inChannels: info.inChannels,
      outChannels: info.outChannels,
      numClassEmbeds: info.numClassEmbeds,
      numTrainTimesteps: T,
      predictionType: String(model.scheduler.toConfig()['prediction_type'] ?? 'epsilon'),
      alphasCumprod: Float32Array.from(model.scheduler.alphasCumprod),
      output: Float32Array.from(out.dataSync() as Float32Array),
    };
  } finally {
    out.dispose();
  }
}

/** Worker task: one gradient shard (see {@link computeGradShard}). */
export async function invmmGradShardTask(arg: InvMMGradShardTaskArg): Promise<InvMMGradShardResult> {
  const { source, ...data } = arg;
  return computeGradShard(await cachedInvMMModel(source), data);
}

/** Worker task: one verification shard (see {@link computeSampleShard}). */
export async function invmmSampleShardTask(arg: InvMMSampleShardTaskArg): Promise<Float32Array> {
  const { source, ...data } = arg;
  return computeSampleShard(await cachedInvMMModel(source), data);
}

/** Worker task: loads (and caches) the model, then probes it (see {@link computeProbe}). */
export async function invmmProbeTask(arg: InvMMProbeTaskArg): Promise<InvMMProbeResult> {
  return computeProbe(await cachedInvMMModel(arg.source), arg.shape, arg.label);
}
