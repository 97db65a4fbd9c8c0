/**
 * The model InvMM inverts: a {@link Denoiser} plus the noise schedule it was trained with, the
 * checks that they fit each other and the images, class conditioning (given or soft labels), and
 * serialisable model sources for worker threads.
 * @module
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import {
  ConfigError,
  DDIMScheduler,
  DDPMScheduler,
  InputError,
  ShapeError,
  ValueRangeError,
  latestCheckpoint,
  loadUNet2DFromFolder,
  readSchedulerConfigFromFolder,
  type Denoiser,
  type SchedulerBase,
  type CommonSchedulerConfig,
  type SchedulerJson,
} from '@diffmem/core';

/** Any DDPM-family scheduler: supplies ᾱ_t, T and the prediction type. */
export type InvMMScheduler = SchedulerBase<CommonSchedulerConfig>;

/** A denoiser and the noise schedule it was trained with. */
export interface InvMMModel {
  readonly denoiser: Denoiser;
  /** The training noise schedule (a `DDPMScheduler` or `DDIMScheduler` with the model's config). */
  readonly scheduler: InvMMScheduler;
}

/** An {@link InvMMModel} that owns its weights (call `dispose`). */
export interface OwnedInvMMModel extends InvMMModel {
  dispose(): void;
}

/**
 * Optional fast path for soft-label inversion: a class-conditional denoiser that accepts class
 * *weights* [N, K] and mixes the class embeddings, `emb = Σ_k w_k·E[k]` — the exact analogue of
 * the official soft prompt (Gumbel-softmax coefficients times the token-embedding matrix).
 * Without it, soft labels mix per-class predictions (see {@link conditionalModelOutput}).
 */
export interface SoftLabelDenoiser extends Denoiser {
  predictWithClassWeights(sample: tf.Tensor4D, timestep: number | tf.Tensor1D, classWeights: tf.Tensor2D): tf.Tensor4D;
}

/** True when `d` implements {@link SoftLabelDenoiser}. */
export function hasClassWeightsHook(d: Denoiser): d is SoftLabelDenoiser {
  return typeof (d as Partial<SoftLabelDenoiser>).predictWithClassWeights === 'function';
}

/**
 * Class conditioning of one model evaluation:
 * - `none`: unconditional model;
 * - `label`: one class id for the whole batch (the given label);
 * - `soft`: class weights [N, K] (rows sum to 1), K ≤ `numClassEmbeds`.
 */
export type InvMMClassCondition = { kind: 'none' } | { kind: 'label'; label: number } | { kind: 'soft'; weights: tf.Tensor2D };

/**
 * The model output at (x, t) under `condition`, restricted to the sample's C channels (a
 * learned-variance model's extra channels are dropped, as diffusers' schedulers do).
 *
 * Soft labels without the {@link SoftLabelDenoiser} hook use the mixture of per-class outputs
 * `Σ_k w_k·f(x, t, k)` (K forward passes). For an ε-model this is the ε of the mixture
 * Σ_k w_k·p(x_t | k) only when every class has the same marginal, so it is a surrogate of the
 * embedding mixture the paper's soft prompt performs; it needs nothing from the network (any
 * {@link Denoiser} works) and reduces to the given label when w is one-hot.
 *
 * Classifier-free guidance (`guidanceScale` ≠ 1): ε̃ = ε(x, ∅) + w·(ε(x, c) − ε(x, ∅)) with
 * `nullClassId`. Pure tf ops (tidy), differentiable in `sample` and in the soft weights.
 */
export function conditionalModelOutput(
  denoiser: Denoiser,
  sample: tf.Tensor4D,
  timestep: number | tf.Tensor1D,
  condition: InvMMClassCondition,
  guidanceScale = 1,
  nullClassId = -1,
): tf.Tensor4D {
  return tf.tidy(() => {
    const n = sample.shape[0];
    const c = sample.shape[3];
    const firstC = (out: tf.Tensor4D): tf.Tensor4D => (out.shape[3] === c ? out : tf.slice(out, [0, 0, 0, 0], [-1, -1, -1, c]));
    const withLabel = (k: number): tf.Tensor4D => firstC(denoiser.predict(sample, timestep, tf.fill([n], k, 'int32') as tf.Tensor1D));
    let cond: tf.Tensor4D;
    if (condition.kind === 'none') {
      return firstC(denoiser.predict(sample, timestep));
    } else if (condition.kind === 'label') {
      cond = withLabel(condition.label);
    } else if (hasClassWeightsHook(denoiser)) {
      cond = firstC(denoiser.predictWithClassWeights(sample, timestep, condition.weights));
    } else {
      const k = condition.weights.shape[1];
      const parts: tf.Tensor4D[] = [];
      for (let j = 0; j < k; j++) {
        const w = tf.reshape(tf.slice(condition.weights, [0, j], [-1, 1]), [n, 1, 1, 1]);
        parts.push(tf.mul(w, withLabel(j)));
      }
      cond = tf.addN(parts);
    }
    if (guidanceScale === 1) return cond;
    const uncond = withLabel(nullClassId);
    return tf.add(uncond, tf.mul(guidanceScale, tf.sub(cond, uncond)));
  });
}

function duckNumTrainTimesteps(d: Denoiser): number | null {
  const any = d as unknown as { numTrainTimesteps?: unknown; config?: { num_train_timesteps?: unknown } };
  if (typeof any.numTrainTimesteps === 'number') return any.numTrainTimesteps;
  const c = any.config?.num_train_timesteps;
  return typeof c === 'number' ? c : null;
}

/**
 * Checks that the model fits images of [H, W, C] and that denoiser and scheduler agree, with a
 * one-sample probe at t = T−1:
 * - image size/channels vs `denoiser.info` → {@link ShapeError};
 * - a denoiser that declares its T (`numTrainTimesteps`, or a UNet config's
 *   `num_train_timesteps`) different from the scheduler's, or that rejects the scheduler's last
 *   timestep, or returns the wrong shape → {@link ConfigError} naming both sides.
 */
export function checkInvMMModel(model: InvMMModel, imageShape: readonly [number, number, number], probeLabel: number | null): void {
  const { denoiser, scheduler } = model;
  if (!denoiser || typeof denoiser.predict !== 'function' || !denoiser.info) {
    throw new ConfigError('model.denoiser must implement Denoiser (info + predict)');
  }
  if (!scheduler || !(scheduler.alphasCumprod instanceof Float32Array) || typeof scheduler.predictX0AndEps !== 'function') {
    throw new ConfigError('model.scheduler must be a DDPMScheduler or DDIMScheduler (the noise schedule the model was trained with)');
  }
  const [h, w, c] = imageShape;
  const info = denoiser.info;
  if (h !== info.sampleSize || w !== info.sampleSize || c !== info.inChannels) {
    throw new ShapeError(
      `image is [${h},${w},${c}] but the denoiser takes [${info.sampleSize},${info.sampleSize},${info.inChannels}] samples`,
      { expected: [info.sampleSize, info.sampleSize, info.inChannels], actual: [h, w, c] },
    );
  }
  if (info.outChannels !== c && info.outChannels !== 2 * c) {
    throw new ShapeError(`denoiser outputs ${info.outChannels} channels for ${c}-channel samples (expected ${c}, or ${2 * c} with learned variance)`);
  }
  const T = scheduler.numTrainTimesteps;
  const declared = duckNumTrainTimesteps(denoiser);
  if (declared !== null && declared !== T) {
    throw new ConfigError(`model/scheduler mismatch: the denoiser was built for ${declared} timesteps but the scheduler has num_train_timesteps = ${T}`, {
      denoiser: declared,
      scheduler: T,
    });
  }
  let out: tf.Tensor | undefined;
  try {
    out = tf.tidy(() => {
      const x = tf.zeros([1, h, w, c]) as tf.Tensor4D;
      return probeLabel === null ? denoiser.predict(x, T - 1) : denoiser.predict(x, T - 1, tf.tensor1d([probeLabel], 'int32'));
    });
  } catch (err) {
    if (err instanceof ShapeError || err instanceof ValueRangeError || (err as { code?: string }).code === 'CLASS_LABELS_REQUIRED') throw err;
    throw new ConfigError(
      `model/scheduler mismatch: the denoiser rejects timestep ${T - 1}, the last of the scheduler's ${T} training timesteps (${(err as Error).message})`,
      { numTrainTimesteps: T },
    );
  }
  const shape = out.shape;
  out.dispose();
  if (shape.length !== 4 || shape[0] !== 1 || shape[1] !== h || shape[2] !== w || (shape[3] !== c && shape[3] !== 2 * c)) {
    throw new ShapeError(`the denoiser returned [${shape.join(',')}] for a [1,${h},${w},${c}] sample`);
  }
}

const SCHEDULE_KEYS = ['num_train_timesteps', 'beta_start', 'beta_end', 'beta_schedule', 'trained_betas', 'prediction_type', 'rescale_betas_zero_snr'];

/**
 * Throws {@link ConfigError} when two scheduler configurations define different noise schedules
 * or prediction types (the fields that change ᾱ_t or the meaning of the model output).
 */
export function assertSameNoiseSchedule(a: InvMMScheduler, b: InvMMScheduler, what = 'the scheduler'): void {
  const ja = a.toConfig();
  const jb = b.toConfig();
  const diff = SCHEDULE_KEYS.filter((k) => JSON.stringify(ja[k] ?? null) !== JSON.stringify(jb[k] ?? null));
  if (diff.length > 0) {
    throw new ConfigError(
      `model/scheduler mismatch: ${what} differs from the model's scheduler_config.json in ${diff
        .map((k) => `${k} (${JSON.stringify(jb[k])} vs model ${JSON.stringify(ja[k])})`)
        .join(', ')}`,
      { keys: diff },
    );
  }
}

/** A DDPM scheduler (noise schedule only) from a diffusers `scheduler_config.json` object. */
export function noiseScheduleFromJson(json: SchedulerJson): InvMMScheduler {
  return DDPMScheduler.fromConfig(json) as unknown as InvMMScheduler;
}

/** A DDIM scheduler with `model.scheduler`'s configuration (for the `'scheduler'` verification sampler). */
export function ddimFromScheduler(s: InvMMScheduler): DDIMScheduler {
  return DDIMScheduler.fromConfig(s.toConfig());
}

/**
 * Where a worker thread gets its model from (plain data, structured-clone safe):
 * - `folder`: a diffusers UNet2DModel folder (`loadUNet2DFromFolder`) with its
 *   `scheduler_config.json` (or `schedulerConfig`, which must then agree with the folder's);
 * - `module`: an ES module (compiled JS) export `fn(arg)` returning
 *   `{denoiser, scheduler}` or `{denoiser, schedulerConfig}` (and optionally `dispose`).
 */
export type InvMMModelSource =
  | { kind: 'folder'; dir: string; subfolder?: string; schedulerConfig?: SchedulerJson }
  | { kind: 'module'; module: string; fn: string; arg?: unknown };

/**
 * The folder holding the model: `dir` itself when it has a `config.json` or `model_index.json`
 * (a UNet or pipeline folder), else the newest checkpoint of a training output folder.
 */
export function resolveInvMMModelFolder(dir: string): string {
  if (!fs.existsSync(dir)) throw new InputError('MODEL_NOT_FOUND', `model folder ${dir} does not exist`, { dir });
  const direct = ['config.json', 'model_index.json', path.join('unet', 'config.json')].some((f) => fs.existsSync(path.join(dir, f)));
  if (direct) return dir;
  return latestCheckpoint(dir) ?? dir;
}

/**
 * Loads a diffusers UNet2DModel folder for InvMM: a UNet folder, a `DDPMPipeline` folder
 * (`unet/`, `scheduler/`), or a training output folder (its newest checkpoint). The noise
 * schedule comes from the folder's `scheduler_config.json`; `schedulerConfig`, if given, must
 * define the same schedule.
 * @throws InputError (folder/weights missing), ConfigError (no schedule, or a mismatch).
 */
export async function loadInvMMModelFromFolder(
  folder: string,
  options: { subfolder?: string; schedulerConfig?: SchedulerJson } = {},
): Promise<OwnedInvMMModel> {
  const dir = resolveInvMMModelFolder(folder);
  const folderJson = await readSchedulerConfigFromFolder(dir);
  if (!folderJson && !options.schedulerConfig) {
    throw new ConfigError(`${dir} has no scheduler_config.json (nor scheduler/scheduler_config.json): pass schedulerConfig with the model's noise schedule`, { dir });
  }
  const scheduler = noiseScheduleFromJson((options.schedulerConfig ?? folderJson) as SchedulerJson);
  if (folderJson && options.schedulerConfig) assertSameNoiseSchedule(noiseScheduleFromJson(folderJson), scheduler, 'the given schedulerConfig');
  const unet = await loadUNet2DFromFolder(dir, options.subfolder !== undefined ? { subfolder: options.subfolder } : {});
  return { denoiser: unet, scheduler, dispose: () => unet.dispose() };
}

/** Resolves an {@link InvMMModelSource} (used inside worker threads, also usable directly). */
export async function loadInvMMModelSource(source: InvMMModelSource): Promise<OwnedInvMMModel> {
  if (source?.kind === 'folder') {
    return loadInvMMModelFromFolder(source.dir, {
      ...(source.subfolder !== undefined ? { subfolder: source.subfolder } : {}),
      ...(source.schedulerConfig !== undefined ? { schedulerConfig: source.schedulerConfig } : {}),
    });
  }
  if (source?.kind === 'module') {
    let mod: Record<string, unknown>;
    try {
      mod = (await import(source.module)) as Record<string, unknown>;
    } catch (err) {
      throw new InputError('MODEL_MODULE_UNREADABLE', `cannot import model module ${source.module}: ${(err as Error).message}`, { module: source.module });
    }
    const f = mod[source.fn];
    if (typeof f !== 'function') throw new ConfigError(`model module ${source.module} has no exported function "${source.fn}"`);
    const made = (await (f as (a: unknown) => unknown)(source.arg)) as {
      denoiser?: Denoiser;
      scheduler?: InvMMScheduler;
      schedulerConfig?: SchedulerJson;
      dispose?: () => void;
    };
    if (!made?.denoiser) throw new ConfigError(`${source.module}#${source.fn} must return {denoiser, scheduler | schedulerConfig}`);
    const scheduler = made.scheduler ?? (made.schedulerConfig ? noiseScheduleFromJson(made.schedulerConfig) : undefined);
    if (!scheduler) throw new ConfigError(`${source.module}#${source.fn} returned no scheduler or schedulerConfig`);
    const denoiser = made.denoiser;
    return {
      denoiser,
      scheduler,
      dispose: () => {
        if (made.dispose) made.dispose();
        else (denoiser as { dispose?: () => void }).dispose?.();
      },
    };
  }
  throw new ConfigError(`model source must be {kind: 'folder', dir} or {kind: 'module', module, fn}, got ${JSON.stringify(source)}`);
}
