/**
 * DDIM sampling of clips from a {@link VideoDenoiser} (Song et al. 2021, Eq. 12, through core's
 * `DDIMScheduler.step`, which is elementwise and so takes [B,T,H,W,C] samples as they are), with
 * class conditioning and classifier-free guidance (Ho & Salimans 2022, Eq. 6). A per-step callback
 * sees the conditional and unconditional predictions, which inference-time memorization detectors
 * (Wen et al. 2024's text-conditional noise magnitude and its video variants) need.
 * @module
 */
import * as tf from '@tensorflow/tfjs-core';
import { ConfigError, NonFiniteError, ShapeError } from '../../errors.js';
import { prepareConditioning, type ClassConditioningOptions, type Conditioning } from '../../pipelines/pipeline_utils.js';
import { randnLike, toGenerator, type RandomSource } from '../../random.js';
import { DDIMScheduler } from '../../schedulers/scheduling_ddim.js';
import type { VideoBatch } from '../../tensor/types.js';
import type { Denoiser } from '../types.js';
import type { VideoDenoiser } from './video_unet.js';

/** What the per-step callback receives; tensors are valid only during the call (clone to keep). */
export interface VideoStepInfo {
  readonly step: number;
  readonly numSteps: number;
  readonly timestep: number;
  /** x_t [B,T,H,W,C]. */
  readonly sample: tf.Tensor5D;
  /** The guided model output used for the step. */
  readonly modelOutput: tf.Tensor5D;
  /** ε_θ(x_t, y) and ε_θ(x_t, ∅) under classifier-free guidance (w ≠ 1), else null. */
  readonly conditional: tf.Tensor5D | null;
  readonly unconditional: tf.Tensor5D | null;
  /** x_{t_prev}. */
  readonly prevSample: tf.Tensor5D;
  /** x̂₀ (clipped as the scheduler is configured). */
  readonly predOriginalSample: tf.Tensor5D;
}

/** Options of {@link sampleVideosDDIM}. */
export interface VideoDDIMOptions extends ClassConditioningOptions {
  /** Number of clips (default: the number of class labels, else 1). */
  numClips?: number;
  /** Frames per clip (default the model's `numFrames`). */
  numFrames?: number;
  /** DDIM steps n (default 50). */
  numInferenceSteps?: number;
  /** η (default 0: deterministic given x_T). */
  eta?: number;
  /** Seed or Generator for x_T (and the per-step noise when η > 0). Required unless `latents` and η = 0. */
  generator?: RandomSource;
  /** x_T [B,T,H,W,C] to start from (not disposed). */
  latents?: tf.Tensor5D;
  onStep?: (info: VideoStepInfo) => void | Promise<void>;
  /** Throw NonFiniteError when a model output or sample holds NaN/Inf (default true). */
  checkFinite?: boolean;
}

function guided(model: VideoDenoiser, x: tf.Tensor5D, t: number, c: Conditioning): { out: tf.Tensor5D; cond: tf.Tensor5D | null; uncond: tf.Tensor5D | null } {
  const { labels, guidanceScale, nullClassId } = c;
  if (labels === null) return { out: model.predict(x, t), cond: null, uncond: null };
  const y = tf.tensor1d(labels as number[], 'int32');
  if (guidanceScale === 1) return { out: model.predict(x, t, y), cond: null, uncond: null };
  const b = x.shape[0];
  const both = model.predict(tf.concat([x, x], 0), t, tf.concat([y, tf.fill([b], nullClassId, 'int32') as tf.Tensor1D]));
  const [cond, uncond] = tf.split(both, 2, 0) as [tf.Tensor5D, tf.Tensor5D];
  return { out: tf.add(uncond, tf.mul(guidanceScale, tf.sub(cond, uncond))) as tf.Tensor5D, cond, uncond };
}

/**
 * Samples clips: x_T ~ N(0, I) [B,T,H,W,C], then `scheduler.step(ε̃_θ(x_t, t[, y]), t, x_t)` over
 * the scheduler's grid (set here to `numInferenceSteps`). Returns x₀ clamped to [−1, 1].
 * @throws ConfigError / ShapeError / ValueRangeError for bad conditioning or latents,
 *   NonFiniteError when the model diverges.
 */
export async function sampleVideosDDIM(
  model: VideoDenoiser,
  scheduler: DDIMScheduler,
  o: VideoDDIMOptions = {},
): Promise<VideoBatch<'model'>> {
  if (!(scheduler instanceof DDIMScheduler)) throw new ConfigError('sampleVideosDDIM needs a DDIMScheduler');
  const frames = o.numFrames ?? model.info.numFrames;
  const s = model.info.sampleSize;
  const ch = model.info.inChannels;
  let numClips = o.numClips;
  if (o.latents !== undefined) {
    const l = o.latents;
    if (!(l instanceof tf.Tensor) || l.rank !== 5 || l.dtype !== 'float32' || l.shape[2] !== s || l.shape[3] !== s || l.shape[4] !== ch) {
      throw new ShapeError(`latents must be float32 [B,T,${s},${s},${ch}]`, { actual: l instanceof tf.Tensor ? l.shape : undefined });
    }
    if (numClips !== undefined && numClips !== l.shape[0]) throw new ShapeError(`numClips ${numClips} contradicts latents with ${l.shape[0]} clips`);
    numClips = l.shape[0];
  }
  if (numClips === undefined) numClips = o.classLabels === undefined ? 1 : o.classLabels instanceof tf.Tensor ? o.classLabels.size : o.classLabels.length;
  if (!Number.isInteger(numClips) || numClips < 1) throw new ConfigError(`numClips must be a positive integer, got ${numClips}`);
  if (!Number.isInteger(frames) || frames < 1) throw new ConfigError(`numFrames must be a positive integer, got ${frames}`);
  // prepareConditioning validates labels / guidance against the class table; it reads `info` only.
  const classTable: Denoiser = {
    info: { sampleSize: s, inChannels: ch, outChannels: model.info.outChannels, numClassEmbeds: model.info.numClassEmbeds },
    predict: () => {
      throw new ConfigError('unreachable: the class-table view is not a model');
    },
  };
  const conditioning = prepareConditioning(classTable, numClips, o);
  const eta = o.eta ?? 0;
  const gen = o.generator === undefined ? null : toGenerator(o.generator);
  if ((o.latents === undefined || eta > 0) && gen === null) throw new ConfigError('sampling draws noise: pass a generator (seed or Generator)');
  const timesteps = scheduler.setTimesteps(o.numInferenceSteps ?? 50);
  const checkFinite = o.checkFinite ?? true;
  let x: tf.Tensor5D = o.latents ? (tf.clone(o.latents) as tf.Tensor5D) : (randnLike([numClips, frames, s, s, ch], gen as NonNullable<typeof gen>) as tf.Tensor5D);
  try {
    for (let k = 0; k < timesteps.length; k++) {
      const t = timesteps[k] as number;
      const current = x;
      const r = tf.tidy(() => {
        const g = guided(model, current, t, conditioning);
        const stepOut = scheduler.step(g.out, t, current, eta > 0 ? { eta, generator: gen as NonNullable<typeof gen> } : { eta });
        // sum(v·0) is NaN iff v holds a NaN or ±Inf: one scalar per tensor to read back.
        const flags = checkFinite ? tf.stack([tf.sum(tf.mul(g.out, 0)), tf.sum(tf.mul(stepOut.prevSample, 0))]) : undefined;
        return { out: g.out, cond: g.cond ?? undefined, uncond: g.uncond ?? undefined, prev: stepOut.prevSample, x0: stepOut.predOriginalSample, flags };
      }) as {
        out: tf.Tensor5D;
        cond: tf.Tensor5D | undefined;
        uncond: tf.Tensor5D | undefined;
        prev: tf.Tensor5D;
        x0: tf.Tensor5D;
        flags: tf.Tensor | undefined;
      };
      try {
        if (r.flags) {
          const [mf, xf] = Array.from(await r.flags.data());
          const what = !Number.isFinite(mf as number) ? 'model output' : !Number.isFinite(xf as number) ? 'sample' : null;
          if (what) {
            throw new NonFiniteError(`video DDIM sampling: the ${what} became non-finite at step ${k} of ${timesteps.length} (timestep ${t})`, {
              step: k,
              timestep: t,
            });
          }
        }
        if (o.onStep) {
          await o.onStep({
            step: k,
            numSteps: timesteps.length,
            timestep: t,
            sample: current,
            modelOutput: r.out,
            conditional: r.cond ?? null,
            unconditional: r.uncond ?? null,
            prevSample: r.prev,
            predOriginalSample: r.x0,
          });
        }
      } catch (e) {
        r.prev.dispose();
        throw e;
      } finally {
        tf.dispose([r.out, r.x0, ...(r.cond ? [r.cond] : []), ...(r.uncond ? [r.uncond] : []), ...(r.flags ? [r.flags] : [])]);
      }
      x = r.prev;
      current.dispose();
    }
    const out = tf.clipByValue(x, -1, 1) as VideoBatch<'model'>;
    return out;
  } finally {
    x.dispose();
  }
}
