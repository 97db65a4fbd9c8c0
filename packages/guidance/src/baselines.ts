/**
 * Inference-time mitigation baselines for class-conditional diffusion models, run through core's
 * real `DDIMPipeline` / `DDPMPipeline` (so "plain sampling" is exactly the core pipeline, and the
 * baselines differ from it only in the model call):
 *
 * - {@link samplePlain}: the unmitigated sampler.
 * - {@link sampleGNI}: Gaussian noise on the conditioning embedding (GNI, Somepalli et al.,
 *   NeurIPS 2023, `somepago/DCR/sd_mitigation.py --rand_noise_lam 0.1`: λ·N(0, I) added once to
 *   the prompt embedding, kept for every step; the unconditional embedding is untouched). For
 *   integer labels the analogue is noise on the class-embedding row, which needs a
 *   {@link ClassEmbeddingDenoiser} (core's `UNet2DModel` is wrapped automatically). For denoisers without the
 *   hook (e.g. core's EmpiricalDenoiser, which has no embedding space) the documented fallback is
 *   label mixing: ε(x, ẽ) with ẽ = Σ_c w_c e_c and w = onehot(y) + λ·N(0, I_K), evaluated as
 *   Σ_c w_c ε(x, c) — exact when the model is affine in its class embedding, a first-order
 *   approximation otherwise; λ is then in label-weight units, not comparable to embedding λ.
 * - {@link sampleCFGSchedule}: the classifier-free-guidance schedules of Jain et al. (CVPR 2025,
 *   "CFG inside the attraction basin", `anubhav1997/mitigating_memorization`
 *   `generate_test_dataset_stp.py`: scale `guidance_scale` while t > `guidance_change_step`, then
 *   `guidance_scale_later`): static transition (0 until t = 500, then 7.5) and opposite guidance
 *   (−2 until t = 650, then 7.5). The script's switch to a 200-step DPM-Solver grid at the
 *   transition is not reproduced (the schedule is applied on the caller's grid).
 * @module
 */
import * as tf from '@tensorflow/tfjs-core';
import {
  ConfigError,
  DDIMPipeline,
  DDIMScheduler,
  DDPMPipeline,
  DDPMScheduler,
  ShapeError,
  ValueRangeError,
  toGenerator,
  type Denoiser,
  type DenoiserInfo,
  type ImageBatch,
  type RandomSource,
  type StepCallback,
} from '@diffmem/core';
import { asClassEmbeddingDenoiser, type ClassEmbeddingDenoiser } from './class_embedding.js';

/** Sampler settings shared by the baselines (as core's pipelines). */
export interface BaselineSamplingOptions {
  /** Number of images (default 1, or the batch of `latents`). */
  batchSize?: number;
  /** Steps (default 50 for DDIM, 1000 for DDPM). */
  numInferenceSteps?: number;
  /** DDIM η (default 0). */
  eta?: number;
  /** Seed or Generator for x_T and per-step noise (required for DDPM). */
  generator?: RandomSource;
  /** x_T (not disposed). */
  latents?: tf.Tensor4D;
  /** One class id per image (class-conditional models). */
  classLabels?: readonly number[];
  /** CFG scale s0 (default 1 = none). */
  guidanceScale?: number;
  /** The null class id for CFG (required when guidanceScale ≠ 1). */
  nullClassId?: number;
  callback?: StepCallback;
}

type AnyScheduler = DDIMScheduler | DDPMScheduler;

async function runPipeline(
  denoiser: Denoiser,
  scheduler: AnyScheduler,
  o: BaselineSamplingOptions,
  labels: readonly number[] | undefined,
  guidance: { guidanceScale?: number; nullClassId?: number },
): Promise<ImageBatch<'model'>> {
  const common = {
    ...(o.batchSize !== undefined ? { batchSize: o.batchSize } : {}),
    ...(o.numInferenceSteps !== undefined ? { numInferenceSteps: o.numInferenceSteps } : {}),
    ...(o.latents !== undefined ? { latents: o.latents } : {}),
    ...(o.callback !== undefined ? { callback: o.callback } : {}),
    ...(labels !== undefined ? { classLabels: labels } : {}),
    ...guidance,
  };
  if (scheduler instanceof DDIMScheduler) {
    return new DDIMPipeline(denoiser, scheduler).generate({
      ...common,
      ...(o.eta !== undefined ? { eta: o.eta } : {}),
      ...(o.generator !== undefined ? { generator: o.generator } : {}),
    });
  }
  if (scheduler instanceof DDPMScheduler) {
    if (o.eta !== undefined) throw new ConfigError('eta is a DDIM option; this is a DDPMScheduler');
    if (o.generator === undefined) throw new ConfigError('DDPM sampling is stochastic: pass a generator (seed or Generator)');
    return new DDPMPipeline(denoiser, scheduler).generate({ ...common, generator: o.generator });
  }
  throw new ConfigError('baselines need a DDIMScheduler or a DDPMScheduler');
}

/** Plain sampling with core's pipeline (the unmitigated baseline). */
export async function samplePlain(denoiser: Denoiser, scheduler: AnyScheduler, options: BaselineSamplingOptions): Promise<ImageBatch<'model'>> {
  const guidance = {
    ...(options.guidanceScale !== undefined ? { guidanceScale: options.guidanceScale } : {}),
    ...(options.nullClassId !== undefined ? { nullClassId: options.nullClassId } : {}),
  };
  return runPipeline(denoiser, scheduler, options, options.classLabels, guidance);
}

/** First C channels (ε) of an output that may carry learned-variance channels. */
function splitChannels(m: tf.Tensor4D, c: number): [tf.Tensor4D, tf.Tensor4D | null] {
  if (m.shape[3] === c) return [m, null];
  return [tf.slice(m, [0, 0, 0, 0], [-1, -1, -1, c]) as tf.Tensor4D, tf.slice(m, [0, 0, 0, c], [-1, -1, -1, -1]) as tf.Tensor4D];
}

/** ε_∅ + w·(ε_y − ε_∅) on the first C channels; extra channels from the conditional output (as core). */
function combine(cond: tf.Tensor4D, uncond: tf.Tensor4D, w: number, c: number): tf.Tensor4D {
  const [ce, cx] = splitChannels(cond, c);
  const [ue] = splitChannels(uncond, c);
  const g = tf.add(ue, tf.mul(w, tf.sub(ce, ue))) as tf.Tensor4D;
  return cx ? (tf.concat([g, cx], 3) as tf.Tensor4D) : g;
}

function checkClassIds(info: DenoiserInfo, labels: readonly number[], nullClassId: number | undefined, who: string): number {
  const rows = info.numClassEmbeds;
  if (rows === null) throw new ConfigError(`${who} needs a class-conditional denoiser (numClassEmbeds is null)`);
  labels.forEach((l, i) => {
    if (!Number.isInteger(l) || l < 0 || l >= rows) throw new ValueRangeError(`classLabels[${i}] = ${l} is outside [0, ${rows})`);
  });
  if (nullClassId !== undefined && !(Number.isInteger(nullClassId) && nullClassId >= 0 && nullClassId < rows)) {
    throw new ValueRangeError(`nullClassId ${nullClassId} is outside [0, ${rows})`);
  }
  return rows;
}

/** A CFG scale that depends on the timestep. */
export interface CFGScheduleSpec {
  readonly kind: 'static-transition';
  /** Scale while t > `switchTimestep`. */
  readonly early: number;
  /** Scale once t ≤ `switchTimestep`. */
  readonly late: number;
  /** The DDPM timestep of the transition (`guidance_change_step`). */
  readonly switchTimestep: number;
}

/** Jain et al. static transition point: CFG 0 until t = 500, then 7.5. */
export const JAIN_STATIC_TRANSITION: CFGScheduleSpec = Object.freeze({ kind: 'static-transition', early: 0, late: 7.5, switchTimestep: 500 });
/** Jain et al. opposite guidance with a static transition: CFG −2 until t = 650, then 7.5. */
export const JAIN_OPPOSITE_GUIDANCE: CFGScheduleSpec = Object.freeze({ kind: 'static-transition', early: -2, late: 7.5, switchTimestep: 650 });

/** The CFG scale of `schedule` at timestep t. */
export function cfgScaleAt(schedule: CFGScheduleSpec, timestep: number): number {
  return timestep > schedule.switchTimestep ? schedule.early : schedule.late;
}

/**
 * A denoiser that applies classifier-free guidance itself with a time-dependent scale, so core's
 * pipelines (run with guidance scale 1) sample with the schedule. One batched call per step.
 */
export class ScheduledCFGDenoiser implements Denoiser {
  readonly info: DenoiserInfo;

  constructor(
    private readonly base: Denoiser,
    private readonly schedule: CFGScheduleSpec,
    private readonly nullClassId: number,
  ) {
    if (schedule?.kind !== 'static-transition') throw new ConfigError(`unknown CFG schedule kind ${JSON.stringify((schedule as { kind?: unknown })?.kind)}`);
    for (const [k, v] of Object.entries({ early: schedule.early, late: schedule.late, switchTimestep: schedule.switchTimestep })) {
      if (!Number.isFinite(v)) throw new ConfigError(`CFG schedule ${k} must be a finite number, got ${v}`);
    }
    this.info = base.info;
  }

  /** ε_∅ + w(t)·(ε_y − ε_∅) in one batched call on [x; x]. */
  predict(sample: tf.Tensor4D, timestep: number | tf.Tensor1D, classLabels?: tf.Tensor1D): tf.Tensor4D {
    if (typeof timestep !== 'number') throw new ConfigError('ScheduledCFGDenoiser needs one timestep per call');
    if (!classLabels) throw new ConfigError('ScheduledCFGDenoiser needs classLabels');
    const w = cfgScaleAt(this.schedule, timestep);
    return tf.tidy(() => {
      const n = sample.shape[0];
      const both = this.base.predict(tf.concat([sample, sample], 0), timestep, tf.concat([tf.cast(classLabels, 'int32'), tf.fill([n], this.nullClassId, 'int32')]) as tf.Tensor1D);
      const [cond, uncond] = tf.split(both, 2, 0) as [tf.Tensor4D, tf.Tensor4D];
      return combine(cond, uncond, w, sample.shape[3]);
    });
  }
}

/** Options of {@link sampleCFGSchedule}. */
export interface CFGScheduleSamplingOptions extends Omit<BaselineSamplingOptions, 'guidanceScale'> {
  schedule: CFGScheduleSpec;
  classLabels: readonly number[];
  nullClassId: number;
}

/** Sampling with a time-dependent CFG scale (Jain et al. 2025 static transition / opposite guidance). */
export async function sampleCFGSchedule(denoiser: Denoiser, scheduler: AnyScheduler, options: CFGScheduleSamplingOptions): Promise<ImageBatch<'model'>> {
  if (!options?.classLabels) throw new ConfigError('CFG schedules need classLabels');
  if (options.nullClassId === undefined) throw new ConfigError('CFG schedules need nullClassId (the class id trained as "no class")');
  checkClassIds(denoiser.info, options.classLabels, options.nullClassId, 'a CFG schedule');
  const wrapped = new ScheduledCFGDenoiser(denoiser, options.schedule, options.nullClassId);
  return runPipeline(wrapped, scheduler, options, options.classLabels, {});
}

/** How GNI perturbs the conditioning (see the module notes). */
export type GNIMode = 'embedding' | 'label-mixing' | 'auto';

/** Options of {@link sampleGNI}. */
export interface GNISamplingOptions extends BaselineSamplingOptions {
  classLabels: readonly number[];
  /** λ (DCR `--rand_noise_lam`, default 0.1). */
  noiseScale?: number;
  /** A stream separate from `generator`, so x_T matches plain sampling (default seed 0). */
  noiseGenerator?: RandomSource;
  /** `'auto'` (default): the embedding hook when the denoiser has it (or is a UNet2DModel with a class table), else label mixing. */
  mode?: GNIMode;
  /**
   * Label mixing only: the classes mixed over (default: every class id except `nullClassId`,
   * or every row of the table when there is none).
   */
  mixClasses?: readonly number[];
}

/**
 * A denoiser whose conditional branch sees a noised class embedding fixed per sample (GNI);
 * CFG (when `guidanceScale` ≠ 1) is applied inside, with the clean null embedding.
 */
export class EmbeddingNoiseDenoiser implements Denoiser {
  readonly info: DenoiserInfo;
  private readonly noise: tf.Tensor2D;
  private readonly mode: 'embedding' | 'label-mixing';
  private readonly hooked: ClassEmbeddingDenoiser | null;
  private readonly classes: number[];

  /**
   * @param base the model (with the hook for `'embedding'` mode)
   * @param o labels (one per sample of the batch this wrapper serves), λ, noise stream, CFG
   */
  constructor(
    private readonly base: Denoiser,
    private readonly o: {
      labels: readonly number[];
      noiseScale: number;
      noiseGenerator: RandomSource;
      mode: GNIMode;
      guidanceScale: number;
      nullClassId?: number;
      mixClasses?: readonly number[];
    },
  ) {
    this.info = base.info;
    const rows = checkClassIds(base.info, o.labels, o.nullClassId, 'GNI');
    if (!(o.noiseScale >= 0) || !Number.isFinite(o.noiseScale)) throw new ConfigError(`noiseScale must be a finite number ≥ 0, got ${o.noiseScale}`);
    if (o.guidanceScale !== 1 && o.nullClassId === undefined) throw new ConfigError('classifier-free guidance needs nullClassId');
    const hooked = asClassEmbeddingDenoiser(base);
    const mode = o.mode === 'auto' ? (hooked ? 'embedding' : 'label-mixing') : o.mode;
    if (mode !== 'embedding' && mode !== 'label-mixing') throw new ConfigError(`GNI mode must be 'embedding', 'label-mixing' or 'auto', got ${String(o.mode)}`);
    if (mode === 'embedding' && !hooked) {
      throw new ConfigError('GNI embedding mode needs a ClassEmbeddingDenoiser (a UNet2DModel with a class table, or withClassEmbeddingHook), or use mode "label-mixing"');
    }
    this.mode = mode;
    this.hooked = hooked;
    this.classes = o.mixClasses ? [...o.mixClasses] : Array.from({ length: rows }, (_, i) => i).filter((c) => c !== o.nullClassId);
    this.classes.forEach((c) => {
      if (!Number.isInteger(c) || c < 0 || c >= rows) throw new ValueRangeError(`mixClasses entry ${c} is outside [0, ${rows})`);
    });
    const n = o.labels.length;
    const g = toGenerator(o.noiseGenerator);
    if (mode === 'embedding') {
      const d = (hooked as ClassEmbeddingDenoiser).classEmbeddingDim;
      this.noise = tf.tensor2d(g.normalArray(n * d), [n, d]);
    } else {
      const k = this.classes.length;
      this.noise = tf.tensor2d(g.normalArray(n * k), [n, k]);
    }
  }

  /** The GNI conditional prediction of the batch. */
  private conditional(sample: tf.Tensor4D, timestep: number): tf.Tensor4D {
    const n = sample.shape[0];
    const y = tf.tensor1d(this.o.labels as number[], 'int32');
    if (this.mode === 'embedding') {
      const hook = this.hooked as ClassEmbeddingDenoiser;
      const e = tf.add(hook.classEmbeddings(y), tf.mul(this.o.noiseScale, this.noise)) as tf.Tensor2D;
      return hook.predictWithClassEmbedding(sample, timestep, e);
    }
    // Label mixing: w = onehot(y) + λζ over the mixed classes; Σ_c w_c ε(x, c) in one batched call.
    const k = this.classes.length;
    const ids = tf.tensor1d(this.classes, 'int32');
    const onehot = tf.cast(tf.equal(tf.reshape(y, [n, 1]), tf.reshape(ids, [1, k])), 'float32');
    const w = tf.add(onehot, tf.mul(this.o.noiseScale, this.noise)); // [n, k]
    const [, sh, sw, sc] = sample.shape;
    const tiled = tf.reshape(tf.tile(tf.expandDims(sample, 1), [1, k, 1, 1, 1]), [n * k, sh, sw, sc]) as tf.Tensor4D;
    const labels = tf.reshape(tf.tile(tf.reshape(ids, [1, k]), [n, 1]), [n * k]) as tf.Tensor1D;
    const out = this.base.predict(tiled, timestep, labels);
    const [, h, wd, ch] = out.shape;
    const per = tf.reshape(out, [n, k, h, wd, ch]);
    return tf.sum(tf.mul(per, tf.reshape(w, [n, k, 1, 1, 1])), 1) as tf.Tensor4D;
  }

  /** The GNI prediction (conditional branch on the noised embedding; CFG with the clean null class). */
  predict(sample: tf.Tensor4D, timestep: number | tf.Tensor1D, classLabels?: tf.Tensor1D): tf.Tensor4D {
    if (typeof timestep !== 'number') throw new ConfigError('EmbeddingNoiseDenoiser needs one timestep per call');
    if (sample.shape[0] !== this.o.labels.length) {
      throw new ShapeError(`this GNI wrapper serves batches of ${this.o.labels.length}, got ${sample.shape[0]}`);
    }
    void classLabels; // the wrapper's own labels are used (the pipeline passes the same ones)
    return tf.tidy(() => {
      const cond = this.conditional(sample, timestep);
      if (this.o.guidanceScale === 1) return cond;
      const n = sample.shape[0];
      const uncond = this.base.predict(sample, timestep, tf.fill([n], this.o.nullClassId as number, 'int32') as tf.Tensor1D);
      return combine(cond, uncond, this.o.guidanceScale, sample.shape[3]);
    });
  }

  /** Releases the per-sample noise. */
  dispose(): void {
    this.noise.dispose();
  }
}

/** GNI: sampling with λ·N(0, I) on the class embedding, fixed per sample (see the module notes). */
export async function sampleGNI(denoiser: Denoiser, scheduler: AnyScheduler, options: GNISamplingOptions): Promise<ImageBatch<'model'>> {
  if (!options?.classLabels) throw new ConfigError('GNI needs classLabels (it perturbs the class conditioning)');
  const n = options.latents ? options.latents.shape[0] : (options.batchSize ?? 1);
  if (options.classLabels.length !== n) throw new ShapeError(`got ${options.classLabels.length} class labels for ${n} images`);
  const wrapped = new EmbeddingNoiseDenoiser(denoiser, {
    labels: options.classLabels,
    noiseScale: options.noiseScale ?? 0.1,
    noiseGenerator: options.noiseGenerator ?? 0,
    mode: options.mode ?? 'auto',
    guidanceScale: options.guidanceScale ?? 1,
    ...(options.nullClassId !== undefined ? { nullClassId: options.nullClassId } : {}),
    ...(options.mixClasses !== undefined ? { mixClasses: options.mixClasses } : {}),
  });
  try {
    return await runPipeline(wrapped, scheduler, options, options.classLabels, {});
  } finally {
    wrapped.dispose();
  }
}
