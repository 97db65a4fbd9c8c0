/**
 * InvMM for one image (Ma et al., ICCV 2025, "Could It Be Generated? Towards Practical Analysis of
 * Memorization in Text-To-Image Diffusion Models" — the inversion-based memorization measure):
 * find the Gaussian N(μ, diag σ²) over the sampler's starting noise that makes the model
 * replicate the image while staying as close to N(0, I) as possible; the score is its KL to
 * N(0, I) per dimension (lower = more memorized), or ∞ when no replicating distribution was
 * found within the budget. Control flow of the official `ddpm/inverion.py::inversion`.
 * @module
 */
import * as tf from '@tensorflow/tfjs-core';
import {
  AdamOptimizer,
  ConfigError,
  DiffmemError,
  NonFiniteError,
  ShapeError,
  ValueRangeError,
  asImageBatch,
  toGenerator,
  type Generator,
  type ImageBatch,
  type RandomSource,
} from '@diffmem/core';
import { LocalInvMMExecutor, type InvMMExecutor, type InvMMExecutorContext } from './executor.js';
import { checkInvMMModel, type InvMMClassCondition, type InvMMModel } from './model.js';
import { gumbelSoftmax, invmmScore, klToStandardNormal, reparameterize } from './objective.js';
import { ShardedInvMMExecutor, type InvMMParallelOptions } from './parallel.js';
import { resolveInvMMConfig, type InvMMConfig, type InvMMConfigInput } from './presets.js';
import { describeReplication, replicationPassed, type ReplicationDescriptor, type ReplicationTest } from './replication.js';
import { AdaptiveKLWeight } from './schedule.js';

/** How an inversion ended. */
export type InvMMStatus = 'replicated' | 'not-replicated' | 'non-finite';

/** One verification at a checkpoint. */
export interface InvMMCheck {
  /** 0-based optimisation step after which the check ran (the official `step`). */
  step: number;
  /** λ that weighted this step's loss. */
  lambda: number;
  /** λ after the checkpoint rule (halved on a stall, else + δ). */
  lambdaNext: number;
  /** True when the checkpoint halved λ. */
  stalled: boolean;
  /** KL(N(μ,σ²) ‖ N(0,I)) per dimension after the step: the score if this check passed. */
  kl: number;
  /** p_loss of this step. */
  loss: number;
  /** Moving average of p_loss (the quantity the λ rule compares). */
  lossAverage: number;
  /**
   * Per-sample values of the replication test (similarities, or distances for distance tests) at
   * the deciding guidance scale: the first that passed, else the one closest to passing. With
   * `verification.stopAtFirstFailure`, a failed check lists the samples up to the failing chunk.
   */
  similarities: number[];
  /** The guidance scale of `similarities`. */
  guidanceScale: number;
  /** Every scale's values when more than one scale was tried. */
  perScale?: Array<{ guidanceScale: number; similarities: number[]; passed: boolean }>;
  passed: boolean;
}

/** The result of inverting one image. Tensors are not involved: everything is plain data. */
export interface InvMMRecord {
  id: string;
  status: InvMMStatus;
  /** True iff a check passed. */
  replicated: boolean;
  /** KL per dimension (or summed, per `config.scoreReduction`) on success; Infinity if not replicated; NaN if non-finite. */
  score: number;
  /** [H, W, C] of μ and logvar. */
  shape: [number, number, number];
  mu: Float32Array;
  logvar: Float32Array;
  /** The given class label, or null (unconditional, or soft label). */
  label: number | null;
  /** Soft-label inversion: the learned class logits z (weights = softmax(z)); else null. */
  classLogits: Float32Array | null;
  checks: InvMMCheck[];
  /** Optimisation steps taken. */
  steps: number;
  /** Wall-clock seconds of this inversion. */
  seconds: number;
  /** The per-image seed of every random draw. */
  seed: number;
  config: InvMMConfig;
  replication: ReplicationDescriptor;
  /** What went wrong for status `non-finite`. */
  error?: string;
}

/** The inversion was stopped by its AbortSignal (nothing of this image is kept). */
export class InvMMAbortedError extends DiffmemError {
  constructor(id: string) {
    super('ABORTED', `InvMM inversion of ${id} was aborted`, { id });
  }
}

/** Options of {@link invertImage}. */
export interface InvertImageOptions extends InvMMConfigInput {
  /** The replication test of the verification step (required: SSCD is not bundled). */
  replication: ReplicationTest;
  /** Seed (or Generator) of every random draw: noises, timesteps, Gumbel noise, verification x_T. */
  seed: RandomSource;
  /** Record id (default `'image'`). */
  id?: string;
  /**
   * Class conditioning for class-conditional models: a class id (the given label), or `'soft'` to
   * invert a soft label as well (learned logits z, Gumbel-softmax weights with τ = `gumbelTau`,
   * optimised jointly by the same Adam — the analogue of the official soft prompt). Must be
   * omitted for unconditional models.
   */
  label?: number | 'soft';
  /** The "unconditional" class for guidance scales ≠ 1 (default `numClassEmbeds − 1`, the extra row). */
  nullClassId?: number;
  /** Soft labels: number of classes K (rows 0…K−1, default `numClassEmbeds`). */
  softLabelClasses?: number;
  signal?: AbortSignal;
  /** Called after every verification. */
  onCheck?: (check: InvMMCheck) => void;
  /**
   * Spend several threads on this one image (see `parallel.ts`): each step's B samples and each
   * verification round's samples are split across this thread and worker threads loading
   * `parallel.source` (which must be this `model`). Same draws, same control flow: the result
   * equals the single-thread inversion up to float32 rounding, except that with
   * `verification.stopAtFirstFailure` a round holds S samples (one per thread) instead of
   * `chunkSize` — only the recorded values of a failed check can differ in length.
   */
  parallel?: InvMMParallelOptions;
}

/**
 * Validates one display image ([H,W,C] or [1,H,W,C], float32 in [0, 1], finite) and returns it
 * as a [1,H,W,C] batch (a new tensor).
 * @throws ShapeError, DTypeError, ValueRangeError, NonFiniteError naming the image.
 */
export function prepareInvMMTarget(image: tf.Tensor, name = 'image'): ImageBatch<'display'> {
  if (!(image instanceof tf.Tensor)) throw new ShapeError(`${name} must be a tf.Tensor [H,W,C] or [1,H,W,C]`);
  if (image.rank === 4 && image.shape[0] !== 1) {
    throw new ShapeError(`${name} must hold one image, got a batch of ${image.shape[0]} ([${image.shape.join(',')}])`);
  }
  if (image.rank !== 3 && image.rank !== 4) throw new ShapeError(`${name} must be [H,W,C] or [1,H,W,C], got [${image.shape.join(',')}]`);
  const batch = (image.rank === 3 ? tf.expandDims(image, 0) : tf.clone(image)) as tf.Tensor4D;
  try {
    asImageBatch(batch, 'display', { name, level: 'full', rangeTolerance: 1e-4 });
  } catch (err) {
    batch.dispose();
    if (err instanceof ValueRangeError) {
      const { min, max } = (err.details ?? {}) as { min?: number; max?: number };
      const hint =
        typeof max === 'number' && max > 1.5 ? ' (looks like 0..255 pixels: divide by 255)' : typeof min === 'number' && min < 0 && min >= -1.001 ? ' (looks like model space [-1, 1]: use toDisplayRange)' : '';
      throw new ValueRangeError(`${err.message}${hint}; InvMM takes display-space images`, { ...(err.details ?? {}), name });
    }
    throw err;
  }
  return batch as ImageBatch<'display'>;
}

function checkLabel(model: InvMMModel, o: InvertImageOptions): { label: number | null; soft: number; nullId: number } {
  const k = model.denoiser.info.numClassEmbeds;
  const scales = o.verification?.guidanceScales;
  if (k === null) {
    if (o.label !== undefined) throw new ConfigError(`label ${String(o.label)} was given but the denoiser is unconditional`);
    if (scales && scales.some((s) => s !== 1)) throw new ConfigError('guidance scales ≠ 1 need a class-conditional denoiser');
    return { label: null, soft: 0, nullId: -1 };
  }
  if (o.label === undefined) {
    throw new ConfigError(`the denoiser is class-conditional (${k} class embeddings): pass label (a class id) or label: 'soft'`);
  }
  const nullId = o.nullClassId ?? k - 1;
  if (!Number.isInteger(nullId) || nullId < 0 || nullId >= k) throw new ValueRangeError(`nullClassId ${nullId} is outside [0, ${k})`);
  if (o.label === 'soft') {
    const soft = o.softLabelClasses ?? k;
    if (!Number.isInteger(soft) || soft < 1 || soft > k) throw new ConfigError(`softLabelClasses must be an integer in [1, ${k}], got ${soft}`);
    return { label: null, soft, nullId };
  }
  if (!Number.isInteger(o.label) || o.label < 0 || o.label >= k) throw new ValueRangeError(`label ${o.label} is outside [0, ${k})`);
  return { label: o.label, soft: 0, nullId };
}

function seedOf(source: RandomSource): number {
  return typeof source === 'number' ? source : -1;
}

const yieldToEventLoop = (): Promise<void> => new Promise((r) => setImmediate(r));

/**
 * Inverts one image (display space [0, 1], [H,W,C] or [1,H,W,C]; not disposed) with the official
 * control flow:
 *
 * 1. μ = logvar = 0 (shape of x_T), Adam (torch semantics, lr 0.1, no weight decay) on
 *    (μ, logvar[, z]) only — `tf.variableGrads` with an explicit variable list, so the model's
 *    weights are never touched;
 * 2. each step: B noises ε = μ + σ·n and B timesteps, loss = p_loss + λ·r_loss
 *    (see `objective.ts`); λ follows {@link AdaptiveKLWeight};
 * 3. every C steps: draw n x_T ~ N(μ, σ²), run the deterministic DDIM sampler, apply the
 *    replication test (any guidance scale may pass); stop at the first success;
 * 4. score = KL per dimension on success, else ∞.
 *
 * A NaN/Inf in the loss or the samples stops the image with status `'non-finite'` (score NaN).
 * @throws ShapeError / ValueRangeError / NonFiniteError for a bad image, ConfigError for bad
 *   options or a model/scheduler mismatch, {@link InvMMAbortedError} when `signal` aborts.
 */
export async function invertImage(model: InvMMModel, image: tf.Tensor, options: InvertImageOptions): Promise<InvMMRecord> {
  const config = resolveInvMMConfig(stripRunOptions(options));
  const id = options.id ?? 'image';
  const test = options.replication;
  if (!test || typeof test.score !== 'function') throw new ConfigError('options.replication must be a ReplicationTest (e.g. rmsReplicationTest({threshold}))');
  if (options.seed === undefined) throw new ConfigError('options.seed is required: every random draw of InvMM is seeded');
  const { label, soft, nullId } = checkLabel(model, options);
  const target = prepareInvMMTarget(image, id);
  const [, h, w, c] = target.shape;
  try {
    checkInvMMModel(model, [h, w, c], label ?? (soft > 0 ? 0 : null));
    return await runInversion(model, target, config, { ...options, id, label, soft, nullId });
  } finally {
    target.dispose();
  }
}

function stripRunOptions(o: InvertImageOptions): InvMMConfigInput {
  const { replication: _r, seed: _s, id: _i, label: _l, nullClassId: _n, softLabelClasses: _k, signal: _g, onCheck: _c, parallel: _p, ...rest } = o;
  return rest;
}

interface RunContext extends Omit<InvertImageOptions, 'label'> {
  id: string;
  label: number | null;
  soft: number;
  nullId: number;
}

async function runInversion(model: InvMMModel, targetDisplay: ImageBatch<'display'>, config: InvMMConfig, ctx: RunContext): Promise<InvMMRecord> {
  const t0 = performance.now();
  const [, h, w, c] = targetDisplay.shape;
  const dim = h * w * c;
  const T = model.scheduler.numTrainTimesteps;
  const B = config.batchSize;
  const K = ctx.soft;
  const gen: Generator = toGenerator(ctx.seed);
  const test = ctx.replication;

  // x0 in model space, as the official Normalize((0.5,)*3, (0.5,)*3).
  const x0 = tf.tidy(() => tf.sub(tf.mul(targetDisplay, 2), 1)) as tf.Tensor4D;
  // μ = logvar = 0: the search starts at N(0, I). Unique names: tfjs registers variables globally.
  const uid = `${Date.now().toString(36)}_${Math.random().toString(36).slice(2)}`;
  const zerosVar = (shape: number[], name: string): tf.Variable => tf.tidy(() => tf.variable(tf.zeros(shape), true, `invmm_${name}_${uid}`));
  const mu = zerosVar([1, h, w, c], 'mu');
  const logvar = zerosVar([1, h, w, c], 'logvar');
  const logits = K > 0 ? zerosVar([K], 'class_logits') : null;
  // Gradients are keyed by variable name, so the optimizer's map uses the same keys.
  const varList = logits ? [mu, logvar, logits] : [mu, logvar];
  const vars = new Map<string, tf.Variable>(varList.map((v) => [v.name, v]));
  // The per-step gradient and the verification sampling run here or sharded over threads; the
  // control flow below is the same either way.
  const execCtx: InvMMExecutorContext = { model, x0, config, label: ctx.label, soft: K, nullId: ctx.nullId };
  let executor: InvMMExecutor;
  try {
    executor = ctx.parallel ? await ShardedInvMMExecutor.open(execCtx, ctx.parallel) : new LocalInvMMExecutor(execCtx);
  } catch (err) {
    tf.dispose([x0, ...varList]);
    throw err;
  }
  const adam = new AdamOptimizer({ kind: 'adam', learningRate: config.learningRate, weightDecay: 0 });
  const lambda = new AdaptiveKLWeight(config);
  const checks: InvMMCheck[] = [];
  let status: InvMMStatus = 'not-replicated';
  let steps = 0;
  let error: string | undefined;

  const record = (): InvMMRecord => {
    const muV = mu.dataSync() as Float32Array;
    const lvV = logvar.dataSync() as Float32Array;
    let score = status === 'replicated' ? invmmScore(muV, lvV, config.scoreReduction) : status === 'non-finite' ? NaN : Infinity;
    if (status === 'replicated' && !Number.isFinite(score)) {
      status = 'non-finite';
      error = 'the inverted distribution holds non-finite values';
      score = NaN;
    }
    return {
      id: ctx.id,
      status,
      replicated: status === 'replicated',
      score,
      shape: [h, w, c],
      mu: Float32Array.from(muV),
      logvar: Float32Array.from(lvV),
      label: ctx.label,
      classLogits: logits ? Float32Array.from(logits.dataSync() as Float32Array) : null,
      checks,
      steps,
      seconds: (performance.now() - t0) / 1000,
      seed: seedOf(ctx.seed),
      config,
      replication: describeReplication(test),
      ...(error !== undefined ? { error } : {}),
    };
  };

  try {
    for (let step = 0; step < config.maxSteps; step++) {
      if (ctx.signal?.aborted) throw new InvMMAbortedError(ctx.id);
      // Random draws, in a fixed order: noises, timesteps, Gumbel uniforms.
      const n = gen.normalArray(B * dim);
      const ts: number[] = Array.from({ length: B }, () => gen.randint(T));
      const u = K > 0 ? openUniforms(gen, B * K) : null;
      const lambdaUsed = lambda.lambda;
      const { grads, pLoss: pT, rLoss: rT } = await executor.lossAndGrads({ mu, logvar, logits }, { noise: n, timesteps: ts, uniforms: u }, lambdaUsed);
      adam.apply(vars, grads);
      const both = tf.stack([pT, rT]);
      tf.dispose([pT, rT, ...Object.values(grads)]);
      const lossValues = await both.data();
      both.dispose();
      steps = step + 1;
      const pLoss = lossValues[0] as number;
      const rLoss = lossValues[1] as number;
      if (!Number.isFinite(pLoss) || !Number.isFinite(rLoss)) {
        status = 'non-finite';
        error = `the loss became non-finite at step ${step} (p_loss = ${pLoss}, r_loss = ${rLoss})`;
        break;
      }
      const upd = lambda.update(step, pLoss);
      if (upd.checkpoint) {
        const check = await verify(executor, targetDisplay, mu, logvar, logits, gen, config, ctx, test);
        const kl = tf.tidy(() => klToStandardNormal(mu, logvar));
        const full: InvMMCheck = {
          step,
          lambda: upd.lambdaUsed,
          lambdaNext: upd.lambda,
          stalled: upd.stalled,
          kl: (await kl.data())[0] as number,
          loss: pLoss,
          lossAverage: upd.movingAverage,
          ...check,
        };
        kl.dispose();
        checks.push(full);
        ctx.onCheck?.(full);
        if (full.passed) {
          status = 'replicated';
          break;
        }
      } else {
        await yieldToEventLoop();
      }
    }
  } catch (err) {
    if (err instanceof NonFiniteError) {
      status = 'non-finite';
      error = err.message;
    } else {
      tf.dispose([x0, ...varList]);
      adam.dispose();
      await executor.close();
      throw err;
    }
  }
  try {
    return record();
  } finally {
    tf.dispose([x0, ...varList]);
    adam.dispose();
    await executor.close();
  }
}

// Uniforms in the open interval (0, 1), so the Gumbel transform −log(−log u) stays finite.
function openUniforms(gen: Generator, count: number): Float32Array {
  const out = new Float32Array(count);
  for (let i = 0; i < count; i++) {
    let v = 0;
    while (v <= 0 || v >= 1) v = Math.fround(gen.random());
    out[i] = v;
  }
  return out;
}

async function verify(
  executor: InvMMExecutor,
  targetDisplay: ImageBatch<'display'>,
  mu: tf.Variable,
  logvar: tf.Variable,
  logits: tf.Variable | null,
  gen: Generator,
  config: InvMMConfig,
  ctx: RunContext,
  test: ReplicationTest,
): Promise<Omit<InvMMCheck, 'step' | 'lambda' | 'lambdaNext' | 'stalled' | 'kl' | 'loss' | 'lossAverage'>> {
  const v = config.verification;
  const [, h, w, c] = targetDisplay.shape;
  const nS = v.numSamples;
  const xT = tf.tidy(() => reparameterize(mu, logvar, tf.tensor4d(gen.normalArray(nS * h * w * c), [nS, h, w, c])));
  // One Gumbel-softmax draw shared by the samples (the official `sample_tokens`).
  const weights =
    logits && ctx.soft > 0
      ? tf.tidy(() => tf.tile(gumbelSoftmax(logits as tf.Variable<tf.Rank.R1>, tf.tensor2d(openUniforms(gen, ctx.soft), [1, ctx.soft]), config.gumbelTau), [nS, 1]) as tf.Tensor2D)
      : null;
  const condition: InvMMClassCondition = weights ? { kind: 'soft', weights } : ctx.label !== null ? { kind: 'label', label: ctx.label } : { kind: 'none' };
  const perScale: Array<{ guidanceScale: number; similarities: number[]; passed: boolean }> = [];
  // All n samples at once (official), or in chunks that stop at the first failing sample (the
  // decision is the same: min ≥ β fails iff some sample fails). Sharded: a chunk is S samples.
  const chunk = v.stopAtFirstFailure ? Math.min(executor.verificationChunkSize(v), nS) : nS;
  try {
    for (const scale of v.guidanceScales) {
      const values: number[] = [];
      let passed = true;
      for (let start = 0; start < nS && passed; start += chunk) {
        const size = Math.min(chunk, nS - start);
        const part = size === nS ? xT : (tf.slice(xT, [start, 0, 0, 0], [size, -1, -1, -1]) as tf.Tensor4D);
        const partWeights = weights && size !== nS ? (tf.slice(weights, [start, 0], [size, -1]) as tf.Tensor2D) : weights;
        const partCondition: InvMMClassCondition = partWeights ? { kind: 'soft', weights: partWeights } : condition;
        let x: tf.Tensor4D;
        try {
          x = await executor.sample(part, partCondition, scale);
        } finally {
          if (part !== xT) part.dispose();
          if (partWeights && partWeights !== weights) partWeights.dispose();
        }
        const display = tf.tidy(() => tf.add(tf.mul(x, 0.5), 0.5)) as ImageBatch<'display'>;
        x.dispose();
        try {
          const got = await test.score(targetDisplay, display);
          values.push(...got);
          passed = replicationPassed(test, got);
        } finally {
          display.dispose();
        }
      }
      perScale.push({ guidanceScale: scale, similarities: values, passed });
      if (passed) break; // the SD rule: any scale passing is a success
    }
  } finally {
    xT.dispose();
    weights?.dispose();
  }
  const decisive = perScale.find((p) => p.passed) ?? bestOf(perScale, test);
  return {
    similarities: decisive.similarities,
    guidanceScale: decisive.guidanceScale,
    ...(v.guidanceScales.length > 1 ? { perScale } : {}),
    passed: decisive.passed,
  };
}

function bestOf<T extends { similarities: number[] }>(list: T[], test: ReplicationTest): T {
  const worst = (s: number[]): number => (test.kind === 'similarity' ? Math.min(...s) : -Math.max(...s));
  return list.reduce((a, b) => (worst(b.similarities) > worst(a.similarities) ? b : a));
}
