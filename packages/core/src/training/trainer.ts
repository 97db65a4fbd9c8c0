/**
 * Training loop for small diffusion models on any {@link TrainableDenoiser} (our UNet2DModel):
 * the DDPM loss (ε, v or x0 targets), unconditional or class-conditional with class dropout for
 * classifier-free guidance, Adam/AdamW with warm-up and gradient clipping, EMA weights, seeded
 * data order / timesteps / noise, checkpoints every N steps written atomically, and exact resume
 * after an interruption (SIGINT via `signal`, or a hard kill: restart from the last checkpoint).
 * @module
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { ConfigError, InputError, NonFiniteError } from '../errors.js';
import { writeFileAtomicSync } from '../io/image.js';
import type { Denoiser, PredictionType } from '../models/types.js';
import { Generator, type GeneratorState } from '../random.js';
import { readSafetensors, writeSafetensors } from '../safetensors/safetensors.js';
import type { ImageBatch } from '../tensor/types.js';
import { EmaWeights, type EmaOptions } from './ema.js';
import '../backend/gradients.js';
import { diffusionLoss } from './loss.js';
import { AdamOptimizer, clipGradNorm, learningRateAt, type AdamOptions, type LrScheduleName } from './optimizer.js';

/** A denoiser whose weights can be trained: named `tf.Variable`s (diffusers state-dict names). */
export interface TrainableDenoiser extends Denoiser {
  readonly variables: ReadonlyMap<string, tf.Variable>;
}

/** A checkpoint could not be used: corrupt, incomplete, or from another model configuration. */
export class CheckpointError extends InputError {}

/** Progress report emitted every `logEvery` steps and at the end. */
export interface TrainProgress {
  step: number;
  totalSteps: number;
  /** Mean loss over the steps since the last report. */
  loss: number;
  learningRate: number;
  stepsPerSecond: number;
  /** Estimated seconds to finish. */
  etaSeconds: number;
  gradNorm: number | null;
}

/** Options of {@link trainDiffusionModel}. */
export interface TrainOptions {
  /** Unique training images in model space [-1,1], [N,H,W,C] (owned by the caller). */
  images: ImageBatch<'model'>;
  /** Indices into `images` forming the training set, repeated for duplicated images. */
  trainIndices: readonly number[];
  /** Class label per image of `images` (class-conditional models), else omitted. */
  labels?: Int32Array;
  /** ᾱ_t for t = 0..T−1 (a scheduler's `alphasCumprod`). */
  alphasCumprod: Float32Array;
  predictionType?: PredictionType;
  batchSize: number;
  /** Total optimizer steps. */
  maxSteps: number;
  optimizer: AdamOptions;
  lrSchedule?: LrScheduleName;
  warmupSteps?: number;
  /** Clip the global gradient norm to this value (null: no clipping). Default 1. */
  maxGradNorm?: number | null;
  /** EMA options, or false to train without EMA. Default: diffusers' defaults (decay 0.9999, warm-up). */
  ema?: EmaOptions | false;
  /** Probability of replacing a label by `nullClassId` (classifier-free guidance training). */
  classDropout?: number;
  /** The "unconditional" class id (usually `numClasses`, an extra embedding row). */
  nullClassId?: number;
  /** Random horizontal flips of training images (diffusers' default augmentation). Default false. */
  randomFlip?: boolean;
  seed: number;
  /** Checkpointing: folder, period in steps, how many to keep (default 2). */
  checkpoint?: {
    dir: string;
    every: number;
    keep?: number;
    /** Writes the public model (e.g. a diffusers folder) into a checkpoint folder; `ema` weights are active. */
    saveModel?: (dir: string) => void | Promise<void>;
    /** Extra JSON files to store in every checkpoint (e.g. membership.json). */
    extraFiles?: Record<string, unknown>;
    /** JSON-serialisable model configuration; a resume from a checkpoint with another one is refused. */
    modelConfig?: unknown;
  };
  /** Continue from the newest checkpoint in `checkpoint.dir` if there is one. */
  resume?: boolean;
  onProgress?: (p: TrainProgress) => void;
  logEvery?: number;
  /** Abort (e.g. on SIGINT): the trainer finishes the current step, checkpoints and returns. */
  signal?: AbortSignal;
}

/** What {@link trainDiffusionModel} did. */
export interface TrainResult {
  steps: number;
  /** True when stopped early by `signal`. */
  interrupted: boolean;
  /** Step the run started from (0, or the resumed checkpoint's step). */
  resumedFrom: number;
  /** Mean loss of every logged window, in order. */
  lossHistory: Array<{ step: number; loss: number }>;
  seconds: number;
  /** The EMA weights, when EMA was used (owned by the caller: dispose). */
  ema: EmaWeights | null;
  /** Path of the last checkpoint written, if any. */
  lastCheckpoint: string | null;
}

interface TrainerState {
  format: 'diffmem-trainer-state';
  version: 1;
  step: number;
  epochOrder: number[];
  cursor: number;
  rng: GeneratorState;
  emaStep: number;
  lossHistory: Array<{ step: number; loss: number }>;
  modelConfig: unknown;
  variables: Record<string, number[]>;
  hyper: { batchSize: number; predictionType: PredictionType; seed: number; trainSize: number };
}

const STATE_FILE = path.join('training', 'state.json');

function checkOptions(o: TrainOptions, vars: ReadonlyMap<string, tf.Variable>): void {
  const n = o.images.shape[0];
  if (vars.size === 0) throw new ConfigError('the model has no trainable variables');
  if (!Number.isInteger(o.batchSize) || o.batchSize < 1) throw new ConfigError(`batchSize must be a positive integer, got ${o.batchSize}`);
  if (!Number.isInteger(o.maxSteps) || o.maxSteps < 0) throw new ConfigError(`maxSteps must be a non-negative integer, got ${o.maxSteps}`);
  if (o.trainIndices.length === 0) throw new ConfigError('the training set is empty (trainIndices has no entries)');
  for (const i of o.trainIndices) {
    if (!(Number.isInteger(i) && i >= 0 && i < n)) throw new ConfigError(`trainIndices holds ${i}, outside the ${n} images`);
  }
  if (o.alphasCumprod.length < 2) throw new ConfigError('alphasCumprod must hold the whole noise schedule');
  const cond = o.labels !== undefined;
  if (cond && o.labels?.length !== n) throw new ConfigError(`labels has ${o.labels?.length} entries for ${n} images`);
  const p = o.classDropout ?? 0;
  if (!(p >= 0 && p < 1)) throw new ConfigError(`classDropout must be in [0,1), got ${p}`);
  if (p > 0 && (!cond || o.nullClassId === undefined)) {
    throw new ConfigError('classDropout needs class labels and a nullClassId (the unconditional class row)');
  }
  if (o.checkpoint && (!Number.isInteger(o.checkpoint.every) || o.checkpoint.every < 1)) {
    throw new ConfigError(`checkpoint.every must be a positive integer, got ${o.checkpoint.every}`);
  }
}

function varsToSafetensors(values: Iterable<[string, tf.Tensor | Float32Array]>, shapes: ReadonlyMap<string, tf.Variable>): Uint8Array {
  const out: Record<string, { dtype: 'F32'; shape: number[]; data: Float32Array }> = {};
  for (const [k, v] of values) {
    const shape = shapes.get(k)?.shape ?? [];
    out[k] = { dtype: 'F32', shape: [...shape], data: v instanceof Float32Array ? v : (v.dataSync() as Float32Array) };
  }
  return writeSafetensors(out, { layout: 'diffmem-internal' });
}

function readVarFile(file: string, vars: ReadonlyMap<string, tf.Variable>): Map<string, Float32Array> {
  let bytes: Buffer;
  try {
    bytes = fs.readFileSync(file);
  } catch (err) {
    throw new CheckpointError('CHECKPOINT_CORRUPT', `checkpoint file ${file} is missing or unreadable: ${(err as Error).message}`);
  }
  let parsed;
  try {
    parsed = readSafetensors(new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength), { copy: true });
  } catch (err) {
    throw new CheckpointError('CHECKPOINT_CORRUPT', `checkpoint file ${file} is corrupt: ${(err as Error).message}`);
  }
  const out = new Map<string, Float32Array>();
  for (const [k, t] of parsed.tensors) {
    const v = vars.get(k.replace(/^(m|v)\//, ''));
    if (!v || !(t.data instanceof Float32Array) || t.data.length !== v.size) {
      throw new CheckpointError('CHECKPOINT_MISMATCH', `checkpoint tensor "${k}" in ${file} does not match the model`);
    }
    for (let i = 0; i < t.data.length; i++) {
      if (!Number.isFinite(t.data[i] as number)) {
        throw new CheckpointError('CHECKPOINT_CORRUPT', `checkpoint tensor "${k}" in ${file} holds non-finite values`);
      }
    }
    out.set(k, t.data);
  }
  return out;
}

/** Checkpoint folders in `dir`, newest first. */
export function listCheckpoints(dir: string): string[] {
  if (!fs.existsSync(dir)) return [];
  return fs
    .readdirSync(dir)
    .filter((d) => /^checkpoint-\d+$/.test(d))
    .sort((a, b) => Number(b.slice(11)) - Number(a.slice(11)))
    .map((d) => path.join(dir, d));
}

/** The newest checkpoint folder in `dir` (from its `latest` pointer, else the highest step), or null. */
export function latestCheckpoint(dir: string): string | null {
  const pointer = path.join(dir, 'latest');
  if (fs.existsSync(pointer)) {
    const p = path.join(dir, fs.readFileSync(pointer, 'utf8').trim());
    if (fs.existsSync(path.join(p, STATE_FILE))) return p;
  }
  return listCheckpoints(dir)[0] ?? null;
}

function readState(ckpt: string): TrainerState {
  const file = path.join(ckpt, STATE_FILE);
  let s: TrainerState;
  try {
    s = JSON.parse(fs.readFileSync(file, 'utf8')) as TrainerState;
  } catch (err) {
    throw new CheckpointError('CHECKPOINT_CORRUPT', `cannot resume: ${file} is missing or not JSON (${(err as Error).message})`);
  }
  if (s?.format !== 'diffmem-trainer-state' || s.version !== 1 || !Number.isInteger(s.step) || !Array.isArray(s.epochOrder)) {
    throw new CheckpointError('CHECKPOINT_CORRUPT', `cannot resume: ${file} is not a diffmem trainer state`);
  }
  return s;
}

/**
 * Trains `model` in place. Returns when `maxSteps` is reached or `signal` aborts; with
 * `checkpoint`, state is saved every `checkpoint.every` steps and at the end, and `resume`
 * continues the newest checkpoint exactly (same data order, noise, timesteps and optimizer state).
 */
export async function trainDiffusionModel(model: TrainableDenoiser, o: TrainOptions): Promise<TrainResult> {
  const vars = model.variables;
  checkOptions(o, vars);
  const t0 = performance.now();
  const predictionType = o.predictionType ?? 'epsilon';
  const T = o.alphasCumprod.length;
  const sqrtA = Float32Array.from(o.alphasCumprod, (a) => Math.sqrt(a));
  const sqrtOneMinusA = Float32Array.from(o.alphasCumprod, (a) => Math.sqrt(1 - a));
  const varShapes: Record<string, number[]> = Object.fromEntries([...vars].map(([k, v]) => [k, [...v.shape]]));
  const modelConfig = o.checkpoint?.modelConfig ?? null;
  const hyper = { batchSize: o.batchSize, predictionType, seed: o.seed, trainSize: o.trainIndices.length };

  const opt = new AdamOptimizer(o.optimizer);
  let ema: EmaWeights | null = o.ema === false ? null : new EmaWeights(vars, o.ema ?? {});
  let rng = new Generator(o.seed);
  let step = 0;
  let epochOrder: number[] = [];
  let cursor = 0;
  let lossHistory: Array<{ step: number; loss: number }> = [];
  let resumedFrom = 0;

  const ckdir = o.checkpoint?.dir;
  if (ckdir) {
    const latest = latestCheckpoint(ckdir);
    if (latest && !o.resume) {
      opt.dispose();
      ema?.dispose();
      throw new CheckpointError(
        'CHECKPOINT_EXISTS',
        `${ckdir} already holds checkpoints (${path.basename(latest)}); pass resume to continue it or choose an empty folder (nothing was overwritten)`,
      );
    }
    if (latest && o.resume) {
      try {
        const s = readState(latest);
        if (JSON.stringify(s.modelConfig) !== JSON.stringify(modelConfig)) {
          throw new CheckpointError('CHECKPOINT_MISMATCH', `cannot resume from ${latest}: it was trained with another model configuration`);
        }
        if (JSON.stringify(s.variables) !== JSON.stringify(varShapes)) {
          throw new CheckpointError('CHECKPOINT_MISMATCH', `cannot resume from ${latest}: its weights have other names or shapes than the model`);
        }
        if (JSON.stringify(s.hyper) !== JSON.stringify(hyper)) {
          throw new CheckpointError(
            'CHECKPOINT_MISMATCH',
            `cannot resume from ${latest}: batch size, prediction type, seed or training set size differ (${JSON.stringify(s.hyper)})`,
          );
        }
        const weights = readVarFile(path.join(latest, 'training', 'weights.safetensors'), vars);
        const moments = readVarFile(path.join(latest, 'training', 'optimizer.safetensors'), vars);
        const emaVals = ema ? readVarFile(path.join(latest, 'training', 'ema.safetensors'), vars) : null;
        for (const k of vars.keys()) if (!weights.has(k)) throw new CheckpointError('CHECKPOINT_CORRUPT', `${latest} lacks weights for "${k}"`);
        tf.tidy(() => {
          for (const [k, v] of vars) v.assign(tf.tensor(weights.get(k) as Float32Array, v.shape));
        });
        const m = new Map<string, Float32Array>();
        const v = new Map<string, Float32Array>();
        for (const [k, arr] of moments) (k.startsWith('m/') ? m : v).set(k.slice(2), arr);
        opt.setState({ step: s.step, m, v }, vars);
        if (ema && emaVals) {
          ema.setValues(emaVals);
          ema.optimizationStep = s.emaStep;
        }
        rng = Generator.fromState(s.rng);
        step = s.step;
        epochOrder = s.epochOrder;
        cursor = s.cursor;
        lossHistory = s.lossHistory;
        resumedFrom = s.step;
      } catch (err) {
        opt.dispose();
        ema?.dispose();
        throw err;
      }
    }
  }

  let lastCheckpoint: string | null = null;
  const writeCheckpoint = async (): Promise<void> => {
    if (!o.checkpoint || !ckdir) return;
    const name = `checkpoint-${String(step).padStart(6, '0')}`;
    const final = path.join(ckdir, name);
    const tmp = path.join(ckdir, `.tmp-${name}-${process.pid}`);
    fs.rmSync(tmp, { recursive: true, force: true });
    fs.mkdirSync(path.join(tmp, 'training'), { recursive: true });
    const st = opt.getState();
    const momentEntries: Array<[string, Float32Array]> = [
      ...[...st.m].map(([k, a]) => [`m/${k}`, a] as [string, Float32Array]),
      ...[...st.v].map(([k, a]) => [`v/${k}`, a] as [string, Float32Array]),
    ];
    const shapes = new Map<string, tf.Variable>();
    for (const [k, a] of vars) {
      shapes.set(k, a);
      shapes.set(`m/${k}`, a);
      shapes.set(`v/${k}`, a);
    }
    writeFileAtomicSync(path.join(tmp, 'training', 'weights.safetensors'), varsToSafetensors(vars, vars));
    writeFileAtomicSync(path.join(tmp, 'training', 'optimizer.safetensors'), varsToSafetensors(momentEntries, shapes));
    if (ema) writeFileAtomicSync(path.join(tmp, 'training', 'ema.safetensors'), varsToSafetensors(ema.shadow, vars));
    for (const [f, json] of Object.entries(o.checkpoint.extraFiles ?? {})) {
      writeFileAtomicSync(path.join(tmp, f), JSON.stringify(json, null, 1));
    }
    if (o.checkpoint.saveModel) {
      // The public model carries the EMA weights (what diffusers' training scripts export).
      const backup = ema ? new Map([...vars].map(([k, v]) => [k, tf.clone(v)])) : null;
      try {
        if (ema) for (const [k, v] of vars) v.assign(ema.shadow.get(k) as tf.Variable);
        await o.checkpoint.saveModel(tmp);
      } finally {
        if (backup) {
          for (const [k, v] of vars) v.assign(backup.get(k) as tf.Tensor);
          tf.dispose([...backup.values()]);
        }
      }
    }
    const state: TrainerState = {
      format: 'diffmem-trainer-state',
      version: 1,
      step,
      epochOrder,
      cursor,
      rng: rng.getState(),
      emaStep: ema?.optimizationStep ?? 0,
      lossHistory,
      modelConfig,
      variables: varShapes,
      hyper,
    };
    // state.json last: a folder without it is incomplete and never resumed from.
    writeFileAtomicSync(path.join(tmp, STATE_FILE), JSON.stringify(state));
    fs.rmSync(final, { recursive: true, force: true });
    fs.renameSync(tmp, final);
    writeFileAtomicSync(path.join(ckdir, 'latest'), name);
    for (const old of listCheckpoints(ckdir).slice(o.checkpoint.keep ?? 2)) fs.rmSync(old, { recursive: true, force: true });
    lastCheckpoint = final;
  };

  const images = o.images;
  const labelsAll = o.labels;
  const [_, H, W, C] = images.shape;
  const logEvery = o.logEvery ?? 25;
  let windowLoss = 0;
  let windowSteps = 0;
  let lastGradNorm: number | null = null;
  let windowStart = performance.now();
  const startStep = step;
  let interrupted = false;

  try {
    while (step < o.maxSteps) {
      if (o.signal?.aborted) {
        interrupted = true;
        break;
      }
      // Draw the batch: sequential over a seeded permutation of the training set per epoch.
      const idx: number[] = [];
      while (idx.length < o.batchSize) {
        if (cursor >= epochOrder.length) {
          epochOrder = rng.permutation(o.trainIndices.length).map((j) => o.trainIndices[j] as number);
          cursor = 0;
        }
        idx.push(epochOrder[cursor++] as number);
      }
      const B = idx.length;
      const ts = Int32Array.from(idx, () => rng.randint(T));
      const noise = rng.normalArray(B * H * W * C);
      const flips = o.randomFlip ? idx.map(() => rng.random() < 0.5) : null;
      let labels: Int32Array | undefined;
      if (labelsAll) {
        labels = Int32Array.from(idx, (i) => labelsAll[i] as number);
        const p = o.classDropout ?? 0;
        if (p > 0) for (let j = 0; j < B; j++) if (rng.random() < p) labels[j] = o.nullClassId as number;
      }
      const lr = learningRateAt(o.optimizer.learningRate, step, o.lrSchedule ?? 'constant_with_warmup', o.warmupSteps ?? 0, o.maxSteps);
      opt.learningRate = lr;

      const { value, grads } = tf.tidy(() => {
        let x0 = tf.gather(images, tf.tensor1d(idx, 'int32')) as tf.Tensor4D;
        if (flips?.some(Boolean)) {
          const flipped = tf.reverse(x0, 2);
          const mask = tf.reshape(tf.tensor1d(flips.map((f) => (f ? 1 : 0)), 'float32'), [-1, 1, 1, 1]);
          x0 = tf.add(tf.mul(flipped, mask), tf.mul(x0, tf.sub(1, mask))) as tf.Tensor4D;
        }
        const inputs = {
          x0,
          noise: tf.tensor4d(noise, [B, H, W, C]),
          timesteps: tf.tensor1d(ts, 'int32'),
          sqrtAlphaBar: tf.tensor1d(Float32Array.from(ts, (t) => sqrtA[t] as number)),
          sqrtOneMinusAlphaBar: tf.tensor1d(Float32Array.from(ts, (t) => sqrtOneMinusA[t] as number)),
          ...(labels ? { labels: tf.tensor1d(labels, 'int32') } : {}),
        };
        return tf.variableGrads(() => diffusionLoss(model, inputs, predictionType), [...vars.values()]);
      });
      const loss = (await value.data())[0] as number;
      value.dispose();
      if (!Number.isFinite(loss)) {
        tf.dispose(Object.values(grads));
        throw new NonFiniteError(`training loss became ${loss} at step ${step + 1} (lower the learning rate or check the data)`, {
          step: step + 1,
        });
      }
      // variableGrads keys by variable name; map them back to state-dict names.
      const byName: Record<string, tf.Tensor> = {};
      for (const [k, v] of vars) {
        const g = grads[v.name];
        if (g) byName[k] = g;
      }
      if (o.maxGradNorm !== null) lastGradNorm = clipGradNorm(byName, o.maxGradNorm ?? 1);
      opt.apply(vars, byName);
      tf.dispose(Object.values(byName));
      ema?.update(vars);
      step++;
      windowLoss += loss;
      windowSteps++;

      const last = step === o.maxSteps;
      if (step % logEvery === 0 || last) {
        const now = performance.now();
        const sps = windowSteps / Math.max(1e-9, (now - windowStart) / 1000);
        const mean = windowLoss / windowSteps;
        lossHistory.push({ step, loss: mean });
        o.onProgress?.({
          step,
          totalSteps: o.maxSteps,
          loss: mean,
          learningRate: lr,
          stepsPerSecond: sps,
          etaSeconds: (o.maxSteps - step) / Math.max(sps, 1e-9),
          gradNorm: lastGradNorm,
        });
        windowLoss = 0;
        windowSteps = 0;
        windowStart = now;
      }
      if (o.checkpoint && (step % o.checkpoint.every === 0 || last)) await writeCheckpoint();
      // Yield to the event loop so SIGINT handlers can run between steps.
      await new Promise<void>((r) => setImmediate(r));
    }
    if (interrupted && step > startStep) await writeCheckpoint();
  } finally {
    opt.dispose();
  }
  return {
    steps: step,
    interrupted,
    resumedFrom,
    lossHistory,
    seconds: (performance.now() - t0) / 1000,
    ema,
    lastCheckpoint,
  };
}
