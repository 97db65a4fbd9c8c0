/**
 * The denoising loop shared by the DDPM/DDIM pipelines and DDIM inversion: class conditioning
 * with classifier-free guidance, initial noise, per-step finiteness checks, callbacks and careful
 * tensor lifetimes (one `tf.tidy` per step; the carried sample is disposed as soon as it is
 * replaced).
 * @module
 */
import * as tf from '@tensorflow/tfjs-core';
import { ConfigError, NonFiniteError, ShapeError, ValueRangeError } from '../errors.js';
import type { Denoiser } from '../models/types.js';
import { randn, toGenerator, type Generator, type RandomSource } from '../random.js';
import type { SchedulerStepOutput } from '../schedulers/scheduling_utils.js';

/** Class conditioning and classifier-free guidance (Ho & Salimans 2022) options. */
export interface ClassConditioningOptions {
  /**
   * One class id per image ([N] numbers or an int32 tensor, read once). Required for
   * class-conditional denoisers, rejected for unconditional ones.
   */
  classLabels?: readonly number[] | tf.Tensor1D;
  /**
   * w in ε̃ = ε(x, ∅) + w·(ε(x, y) − ε(x, ∅)) (Ho & Salimans 2022 eq. 6 with w = 1 + their w).
   * 1 (default) = plain conditional model, no extra evaluation.
   */
  guidanceScale?: number;
  /**
   * The "null" class id used for ε(x, ∅) — the embedding row the model was trained with under
   * class dropout (the trainer's `nullClassId`, usually the last row). Required when
   * `guidanceScale` ≠ 1.
   */
  nullClassId?: number;
}

/** What a per-step callback receives. Tensors are only valid during the call (clone to keep). */
export interface StepCallbackInfo {
  /** 0-based index of the step. */
  readonly step: number;
  /** Total number of steps of the loop. */
  readonly numSteps: number;
  /** The timestep t of this step (the model was evaluated at t). */
  readonly timestep: number;
  /** x_t, the sample the step started from. */
  readonly sample: tf.Tensor4D;
  /** The sample after the step (x_{t_prev}; for inversion, x at level t). */
  readonly prevSample: tf.Tensor4D;
  /** x̂0 predicted at this step (after clipping/thresholding). */
  readonly predOriginalSample: tf.Tensor4D;
}

/** A per-step callback for logging and progress; may be async (it is awaited). */
export type StepCallback = (info: StepCallbackInfo) => void | Promise<void>;

/** Validated conditioning, as plain data (no tensors to own). */
export interface Conditioning {
  readonly labels: readonly number[] | null;
  readonly guidanceScale: number;
  readonly nullClassId: number;
}

/**
 * Validates class labels / guidance against the denoiser and a batch size. Class ids (labels and
 * the null id) index the model's class-embedding table, so they must lie in [0, numClassEmbeds).
 * Throws {@link ConfigError} for a missing/unexpected conditioning or a missing null id,
 * {@link ShapeError} for a wrong number of labels, {@link ValueRangeError} for ids out of range.
 */
export function prepareConditioning(
  denoiser: Denoiser,
  batchSize: number,
  options: ClassConditioningOptions,
): Conditioning {
  const numClasses = denoiser.info.numClassEmbeds;
  const guidanceScale = options.guidanceScale ?? 1;
  if (typeof guidanceScale !== 'number' || !Number.isFinite(guidanceScale)) {
    throw new ConfigError(`guidanceScale must be a finite number, got ${String(guidanceScale)}`);
  }
  let labels: number[] | null = null;
  if (options.classLabels !== undefined) {
    if (options.classLabels instanceof tf.Tensor) {
      if (options.classLabels.rank !== 1) {
        throw new ShapeError(`classLabels must be rank 1 [N], got shape [${options.classLabels.shape.join(',')}]`);
      }
      labels = Array.from(options.classLabels.dataSync());
    } else {
      labels = [...options.classLabels];
    }
  }
  if (numClasses === null) {
    if (labels !== null) throw new ConfigError('classLabels were given but the denoiser is unconditional (numClassEmbeds is null)');
    if (guidanceScale !== 1) throw new ConfigError('classifier-free guidance needs a class-conditional denoiser');
    return { labels: null, guidanceScale: 1, nullClassId: -1 };
  }
  if (labels === null) {
    throw new ConfigError(`the denoiser is class-conditional (${numClasses} class embeddings): pass classLabels (one per image)`);
  }
  if (labels.length !== batchSize) {
    throw new ShapeError(`got ${labels.length} class labels for ${batchSize} images`, { labels: labels.length, batchSize });
  }
  labels.forEach((c, i) => {
    if (!Number.isInteger(c) || c < 0 || c >= numClasses) {
      throw new ValueRangeError(`classLabels[${i}] = ${c} is outside [0, ${numClasses})`, { index: i, value: c });
    }
  });
  if (guidanceScale === 1) return { labels, guidanceScale, nullClassId: options.nullClassId ?? -1 };
  const nullClassId = options.nullClassId;
  if (nullClassId === undefined) {
    throw new ConfigError(
      'classifier-free guidance needs nullClassId: the class id the model was trained with for "no class" (class dropout)',
    );
  }
  if (!Number.isInteger(nullClassId) || nullClassId < 0 || nullClassId >= numClasses) {
    throw new ValueRangeError(`nullClassId ${nullClassId} is outside the class table [0, ${numClasses})`, {
      value: nullClassId,
    });
  }
  return { labels, guidanceScale, nullClassId };
}

/**
 * The (guided) model output at `timestep`. Without guidance: `predict(x, t, y)`. With guidance:
 * one batched call on [x; x] with labels [y; ∅], then ε̃ = ε_∅ + w·(ε_y − ε_∅) on the first C
 * channels (C = the sample's channels); extra channels (learned variance) are taken from the
 * conditional half. Synchronous; call inside `tf.tidy`.
 */
export function guidedModelOutput(
  denoiser: Denoiser,
  sample: tf.Tensor4D,
  timestep: number,
  conditioning: Conditioning,
): tf.Tensor4D {
  return tf.tidy(() => {
    const { labels, guidanceScale, nullClassId } = conditioning;
    if (labels === null) return denoiser.predict(sample, timestep);
    const y = tf.tensor1d(labels as number[], 'int32');
    if (guidanceScale === 1) return denoiser.predict(sample, timestep, y);
    const n = sample.shape[0];
    const both = denoiser.predict(
      tf.concat([sample, sample], 0),
      timestep,
      tf.concat([y, tf.fill([n], nullClassId, 'int32') as tf.Tensor1D]),
    );
    const [cond, uncond] = tf.split(both, 2, 0) as [tf.Tensor4D, tf.Tensor4D];
    const c = sample.shape[3];
    const outC = both.shape[3];
    const condEps = outC > c ? tf.slice(cond, [0, 0, 0, 0], [-1, -1, -1, c]) : cond;
    const uncondEps = outC > c ? tf.slice(uncond, [0, 0, 0, 0], [-1, -1, -1, c]) : uncond;
    const guided = tf.add(uncondEps, tf.mul(guidanceScale, tf.sub(condEps, uncondEps)));
    return outC > c ? tf.concat([guided, tf.slice(cond, [0, 0, 0, c], [-1, -1, -1, -1])], 3) : guided;
  }) as tf.Tensor4D;
}

/**
 * Initial x_T: a clone of `latents` (validated against the denoiser) or N(0, I) from `generator`.
 */
export function prepareLatents(
  denoiser: Denoiser,
  batchSize: number | undefined,
  latents: tf.Tensor4D | undefined,
  generator: Generator | null,
): tf.Tensor4D {
  const { sampleSize, inChannels } = denoiser.info;
  if (latents !== undefined) {
    if (!(latents instanceof tf.Tensor) || latents.rank !== 4) {
      throw new ShapeError('latents must be a [N,H,W,C] tensor');
    }
    if (latents.dtype !== 'float32') throw new ShapeError(`latents must be float32, got ${latents.dtype}`);
    if (latents.shape[1] !== sampleSize || latents.shape[2] !== sampleSize || latents.shape[3] !== inChannels) {
      throw new ShapeError(
        `latents [${latents.shape.join(',')}] must be [N,${sampleSize},${sampleSize},${inChannels}] for this denoiser`,
      );
    }
    if (batchSize !== undefined && batchSize !== latents.shape[0]) {
      throw new ShapeError(`batchSize ${batchSize} contradicts latents with ${latents.shape[0]} samples`);
    }
    return tf.clone(latents);
  }
  const n = batchSize ?? 1;
  if (!Number.isInteger(n) || n < 1) throw new ConfigError(`batchSize must be a positive integer, got ${n}`);
  if (generator === null) throw new ConfigError('sampling draws initial noise: pass a generator (seed or Generator)');
  return randn([n, sampleSize, sampleSize, inChannels], generator);
}

/** `toGenerator` for an optional source. */
export function optionalGenerator(source: RandomSource | undefined): Generator | null {
  return source === undefined ? null : toGenerator(source);
}

/** Parameters of {@link runDenoisingLoop}. */
export interface DenoisingLoopParams {
  /** Used in error messages, e.g. `'DDIM sampling'`. */
  readonly label: string;
  readonly denoiser: Denoiser;
  /** The grid, in visiting order. */
  readonly timesteps: readonly number[];
  /** The starting sample; not disposed. */
  readonly initial: tf.Tensor4D;
  readonly conditioning: Conditioning;
  /** One scheduler step (sync): model output, t, sample → new tensors. */
  readonly step: (modelOutput: tf.Tensor4D, timestep: number, sample: tf.Tensor4D) => SchedulerStepOutput<tf.Tensor4D>;
  readonly callback?: StepCallback | undefined;
  /** Check model output and sample for NaN/Inf after every step (default true). */
  readonly checkFinite?: boolean | undefined;
  /** When given, receives a clone of every sample after each step (caller owns them). */
  readonly trajectory?: tf.Tensor4D[] | undefined;
}

/**
 * Runs `x ← step(model(x, t), t, x)` over the grid and returns the final sample (a new tensor).
 * Each step's math is one `tf.tidy`; the previous sample is disposed once replaced. With
 * `checkFinite`, a non-finite model output or sample at step k throws {@link NonFiniteError}
 * naming k and t (all intermediate tensors are released first).
 */
export async function runDenoisingLoop(p: DenoisingLoopParams): Promise<tf.Tensor4D> {
  const checkFinite = p.checkFinite ?? true;
  const n = p.timesteps.length;
  let x = p.initial;
  try {
    for (let k = 0; k < n; k++) {
      const t = p.timesteps[k] as number;
      const current = x;
      const out = tf.tidy(() => {
        const m = guidedModelOutput(p.denoiser, current, t, p.conditioning);
        const expected = current.shape;
        if (m.rank !== 4 || m.shape[0] !== expected[0] || m.shape[1] !== expected[1] || m.shape[2] !== expected[2]) {
          throw new ShapeError(
            `${p.label}: the denoiser returned [${m.shape.join(',')}] for a sample of [${expected.join(',')}]`,
          );
        }
        const s = p.step(m, t, current);
        // sum(v·0) is NaN iff v holds a NaN or ±Inf: one scalar per tensor to read back.
        const flags = checkFinite ? tf.stack([tf.sum(tf.mul(m, 0)), tf.sum(tf.mul(s.prevSample, 0))]) : undefined;
        return { prevSample: s.prevSample, predOriginalSample: s.predOriginalSample, flags };
      }) as { prevSample: tf.Tensor4D; predOriginalSample: tf.Tensor4D; flags: tf.Tensor | undefined };
      try {
        if (out.flags) {
          const [mFlag, xFlag] = Array.from(await out.flags.data());
          const what = !Number.isFinite(mFlag as number) ? 'model output' : !Number.isFinite(xFlag as number) ? 'sample' : null;
          if (what !== null) {
            throw new NonFiniteError(
              `${p.label}: the ${what} became non-finite (NaN or Infinity) at step ${k} of ${n} (timestep ${t})`,
              { step: k, timestep: t, tensor: what },
            );
          }
        }
        if (p.callback) {
          await p.callback({
            step: k,
            numSteps: n,
            timestep: t,
            sample: current,
            prevSample: out.prevSample,
            predOriginalSample: out.predOriginalSample,
          });
        }
      } catch (err) {
        out.prevSample.dispose();
        throw err;
      } finally {
        out.predOriginalSample.dispose();
        out.flags?.dispose();
      }
      if (p.trajectory) p.trajectory.push(tf.clone(out.prevSample));
      if (current !== p.initial) current.dispose();
      x = out.prevSample;
    }
  } catch (err) {
    if (x !== p.initial) x.dispose();
    throw err;
  }
  return x === p.initial ? tf.clone(x) : x;
}
