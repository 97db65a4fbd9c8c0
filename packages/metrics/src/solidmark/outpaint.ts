/**
 * RePaint-style outpainting by replacement (Lugmayr et al. 2022 without resampling jumps), as
 * the official SolidMark DDPM code does it (`GaussianDiffusion.inpaint_with_reverse_process`):
 * at every reverse step t the known pixels are replaced by a fresh forward-noised copy of the
 * input, `x_t ← (1 − M)·q(x̃, t) + M·x_t` with `q(x̃, t) = √ᾱ_t·x̃ + √(1 − ᾱ_t)·ε` (the
 * scheduler's `addNoise`, Ho et al. eq. 4), then one sampler step (DDPM ancestral or DDIM); the
 * result is the composite `(1 − M)·x̃ + M·x_0` (known pixels from the input, the masked region
 * — the SolidMark border — from the model). Class-conditional models get the true label.
 * Optional RePaint resampling (`resample` > 1) is an extension; the official code does not resample.
 * @module
 */
import * as tf from '@tensorflow/tfjs-core';
import {
  ConfigError,
  DiffmemError,
  NonFiniteError,
  ShapeError,
  ValueRangeError,
  asImageBatch,
  randn,
  toGenerator,
  type Denoiser,
  type Generator,
  type ImageBatch,
  type RandomSource,
} from '@diffmem/core';

/** Step options both supported schedulers understand. */
export interface RePaintStepOptions {
  /** DDIM η (ignored by DDPM). */
  eta?: number;
  /** The step's z, drawn by the caller from per-image streams. */
  varianceNoise?: tf.Tensor;
}

/**
 * What outpainting needs from a scheduler — satisfied by core's `DDPMScheduler` and
 * `DDIMScheduler` (diffusers' `set_timesteps`, `add_noise`, `step`).
 */
export interface RePaintScheduler {
  readonly className: string;
  readonly timesteps: readonly number[];
  readonly alphasCumprod: Float32Array;
  setTimesteps(numInferenceSteps: number): readonly number[];
  addNoise<T extends tf.Tensor>(originalSamples: T, noise: T, timesteps: number): T;
  step<T extends tf.Tensor>(
    modelOutput: T,
    timestep: number,
    sample: T,
    options?: RePaintStepOptions,
  ): { readonly prevSample: T; readonly predOriginalSample: T };
}

/** The official `--sampling-steps` default. */
export const SOLIDMARK_DEFAULT_SAMPLING_STEPS = 250;

/** Options of {@link outpaintRePaint}. */
export interface OutpaintOptions {
  /** A `DDPMScheduler` (ancestral sampling) or `DDIMScheduler` (DDIM; official `--ddim`). */
  scheduler: RePaintScheduler;
  /** Reverse steps (default 250, the official `--sampling-steps`). */
  numInferenceSteps?: number;
  /** DDIM η (default 0; DDIM only). */
  eta?: number;
  /** True class of each image, for class-conditional denoisers. */
  classLabels?: readonly number[];
  /**
   * Randomness: one Generator per image (each image then gets the same noise whatever the batch it
   * is in — audits rely on this), or one seed/Generator for the whole batch.
   */
  generator: RandomSource | readonly Generator[];
  /**
   * RePaint resampling (Lugmayr et al. 2022, Algorithm 1, "U"): each step is done `resample`
   * times, re-noising x_{t'} back to x_t with q(x_t | x_{t'}) in between, so the generated region
   * can harmonise with the known one. Default 1 = no resampling, the official SolidMark procedure.
   */
  resample?: number;
  /** Checked between steps; an aborted signal throws a `DiffmemError` with code `ABORTED`. */
  signal?: AbortSignal;
}

function samplerOf(s: RePaintScheduler): 'ddpm' | 'ddim' {
  if (s?.className === 'DDPMScheduler') return 'ddpm';
  if (s?.className === 'DDIMScheduler') return 'ddim';
  throw new ConfigError(
    `outpainting needs a DDPMScheduler or DDIMScheduler, got ${JSON.stringify(s?.className)} (an inverse scheduler cannot sample)`,
  );
}

/** Validates labels against the denoiser; returns an int32 tensor or undefined. */
function labelTensor(denoiser: Denoiser, n: number, labels: readonly number[] | undefined): tf.Tensor1D | undefined {
  const k = denoiser.info.numClassEmbeds;
  if (k === null) {
    if (labels !== undefined) throw new ConfigError('classLabels were given but the denoiser is unconditional');
    return undefined;
  }
  if (labels === undefined) throw new ConfigError(`the denoiser is class-conditional (${k} class embeddings): pass the true classLabels`);
  if (labels.length !== n) throw new ShapeError(`got ${labels.length} class labels for ${n} images`);
  labels.forEach((l, i) => {
    if (!Number.isInteger(l) || l < 0 || l >= k) throw new ValueRangeError(`classLabels[${i}] = ${l} is outside [0, ${k})`);
  });
  return tf.tensor1d(labels as number[], 'int32');
}

// A `DiffmemError` with code `ABORTED` (the audit catches it and keeps every finished image).
function abortError(what: string): DiffmemError {
  return new DiffmemError('ABORTED', `${what} was aborted`);
}

const nextTick = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

/**
 * Outpaints the masked region of `known` (model space [N,S,S,C]; its values under the mask are
 * ignored) with the denoiser, RePaint replacement at every step (module docs). `mask` is
 * [1|N,S,S,C] with 1 where the model generates. Returns the composite in model space, x_0
 * clipped to [−1, 1] as diffusers' pipelines do; disposes nothing of the caller's.
 */
export async function outpaintRePaint(
  denoiser: Denoiser,
  known: ImageBatch<'model'>,
  mask: tf.Tensor4D,
  o: OutpaintOptions,
): Promise<ImageBatch<'model'>> {
  asImageBatch(known, 'model', { name: 'known image batch' });
  const [n, S, , C] = known.shape;
  if (!(mask instanceof tf.Tensor) || mask.rank !== 4 || (mask.shape[0] !== 1 && mask.shape[0] !== n) || mask.shape[1] !== S || mask.shape[2] !== S || mask.shape[3] !== C) {
    throw new ShapeError(`mask must be [1 or ${n},${S},${S},${C}], got [${mask?.shape?.join(',')}]`);
  }
  if (denoiser.info.sampleSize !== S || denoiser.info.inChannels !== C) {
    throw new ShapeError(
      `the denoiser takes ${denoiser.info.sampleSize}px ×${denoiser.info.inChannels} samples but the images are ${S}px ×${C}`,
    );
  }
  const sampler = samplerOf(o.scheduler);
  const steps = o.numInferenceSteps ?? SOLIDMARK_DEFAULT_SAMPLING_STEPS;
  if (!Number.isInteger(steps) || steps < 1) throw new ConfigError(`numInferenceSteps must be a positive integer, got ${steps}`);
  const resample = o.resample ?? 1;
  if (!Number.isInteger(resample) || resample < 1) throw new ConfigError(`resample must be a positive integer, got ${resample}`);
  const eta = o.eta ?? 0;
  if (!(Number.isFinite(eta) && eta >= 0)) throw new ConfigError(`eta must be a finite number ≥ 0, got ${eta}`);
  if (sampler === 'ddpm' && o.eta !== undefined) throw new ConfigError('eta applies to DDIM only; the DDPM sampler is ancestral');
  let gens: Generator[] | null = null;
  let shared: Generator | null = null;
  if (Array.isArray(o.generator)) {
    if (o.generator.length !== n) throw new ConfigError(`got ${o.generator.length} generators for ${n} images`);
    gens = [...(o.generator as readonly Generator[])];
  } else {
    if (o.generator === undefined) throw new ConfigError('outpainting is stochastic: pass a generator (seed, Generator or one per image)');
    shared = toGenerator(o.generator as RandomSource);
  }
  const labels = labelTensor(denoiser, n, o.classLabels);
  const shape: [number, number, number, number] = [n, S, S, C];
  const noise = (): tf.Tensor4D =>
    shared
      ? randn(shape, shared)
      : tf.tidy(() => tf.concat((gens as Generator[]).map((g) => randn([1, S, S, C], g)), 0));

  o.scheduler.setTimesteps(steps);
  const timesteps = [...o.scheduler.timesteps];
  const keep = tf.sub(1, mask) as tf.Tensor4D;
  let x: tf.Tensor4D = noise(); // x_T ~ N(0, I)
  try {
    for (let i = 0; i < timesteps.length; i++) {
      const t = timesteps[i] as number;
      const tPrev = timesteps[i + 1] ?? -1;
      for (let u = 0; u < resample; u++) {
        if (o.signal?.aborted) throw abortError('outpainting');
        const zKnown = noise();
        const needZ = sampler === 'ddpm' ? t > 0 : eta > 0;
        const z = needZ ? noise() : null;
        let next: tf.Tensor4D;
        try {
          next = tf.tidy(() => {
            // RePaint replacement: known region ← q(x̃, t), generated region ← current x_t.
            const knownT = o.scheduler.addNoise(known as tf.Tensor4D, zKnown, t);
            const xt = tf.add(tf.mul(mask, x), tf.mul(keep, knownT)) as tf.Tensor4D;
            const out = denoiser.predict(xt, t, labels);
            const opts: RePaintStepOptions = sampler === 'ddim' ? { eta, ...(z ? { varianceNoise: z } : {}) } : z ? { varianceNoise: z } : {};
            return o.scheduler.step(out, t, xt, opts).prevSample;
          });
        } finally {
          zKnown.dispose();
          z?.dispose();
        }
        x.dispose();
        x = next;
        if (u < resample - 1 && tPrev >= 0) {
          // Back to level t: x_t = √(ᾱ_t/ᾱ_t')·x_t' + √(1 − ᾱ_t/ᾱ_t')·z (the forward jump of RePaint).
          const a = Math.fround((o.scheduler.alphasCumprod[t] as number) / (o.scheduler.alphasCumprod[tPrev] as number));
          const zBack = noise();
          const back = tf.tidy(() => tf.add(tf.mul(Math.sqrt(a), x), tf.mul(Math.sqrt(1 - a), zBack)) as tf.Tensor4D);
          zBack.dispose();
          x.dispose();
          x = back;
        } else if (u < resample - 1) {
          break; // the last step (t' < 0) is not resampled
        }
        await nextTick(); // lets SIGINT handlers / abort controllers run between steps
      }
    }
    const finite = tf.tidy(() => tf.all(tf.isFinite(x)).dataSync()[0]);
    if (!finite) throw new NonFiniteError('the outpainted sample contains NaN or Infinity (the denoiser diverged)');
    return tf.tidy(() => tf.add(tf.mul(mask, tf.clipByValue(x, -1, 1)), tf.mul(keep, known)) as ImageBatch<'model'>);
  } finally {
    x.dispose();
    keep.dispose();
    labels?.dispose();
  }
}
