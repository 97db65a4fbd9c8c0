/**
 * Inference-time memorization detection of Wen et al. (ICLR 2024, "Detecting, Explaining, and
 * Mitigating Memorization in Diffusion Models"): memorized conditions make the conditional noise
 * prediction differ strongly from the unconditional one, so
 *
 *   d = (1/|T'|) Σ_{t∈T'} ‖ε_θ(x_t, c) − ε_θ(x_t, ∅)‖_p            (p = 2)
 *
 * per generated sample, averaged over the chosen steps T' and then over the generations of one
 * condition (official code: `local_sd_pipeline.py` `track_noise_norm`, `det_mem_viz.ipynb`:
 * `np.mean(text_noise_norm[:num_gens, start:end])`; defaults 50 DDIM steps, CFG 7.5, 4 generations).
 * The difference is the raw model-output difference (not multiplied by the guidance scale), the
 * norm is taken over the whole sample tensor of each generation, no training data is needed.
 *
 * Here the condition is a class id and ∅ a caller-chosen null class id (for a model trained with
 * class dropout into an extra embedding row, `info.numClassEmbeds`). The detector is independent
 * of any scheduler API: feed it x_t from your own sampling loop ({@link WenDetector.observe} or
 * {@link WenDetector.callback}), pass a recorded trajectory ({@link wenScore}), or let
 * {@link sampleWithWenScore} run a minimal DDIM (η = 0) loop with classifier-free guidance.
 * @module
 */
import * as tf from '@tensorflow/tfjs-core';
import { ConfigError, ShapeError, randn, type Denoiser, type RandomSource } from '@diffmem/core';
import { checkInt, checkTensor } from '../internal/checks.js';

/** Options shared by the detector functions. */
export interface WenOptions {
  /** Class id used as the unconditional input ∅ (e.g. `denoiser.info.numClassEmbeds`). */
  nullClass: number;
  /** Norm order (default 2, Wen's `lp=2`); `Infinity` is the max-norm. */
  p?: number;
}

/** One point of a sampling trajectory. */
export interface TrajectoryStep {
  /** Position in the sampling loop (0 = first, noisiest step). Defaults to the iteration order. */
  stepIndex?: number;
  /** The model timestep t. */
  timestep: number;
  /** x_t, [N,H,W,C]. */
  sample: tf.Tensor4D;
}

/** Which steps to score: indices into the sampling loop, or a predicate. Default: all. */
export type StepSelection = readonly number[] | ((stepIndex: number, timestep: number) => boolean);

/** The detector's output. */
export interface WenResult {
  /** Per generation: mean magnitude over the scored steps. */
  perSample: number[];
  /** Magnitudes [scored step][generation], in observation order. */
  perStep: number[][];
  stepIndices: number[];
  timesteps: number[];
  /** The condition's score: mean of `perSample` over generations (higher = more memorized). */
  score: number;
}

function checkNorm(p: unknown): number {
  const v = p ?? 2;
  if (typeof v !== 'number' || !(v >= 1)) throw new ConfigError(`p must be a number ≥ 1 (or Infinity), got ${String(p)}`);
  return v;
}

function checkNullClass(denoiser: Denoiser, nullClass: unknown): number {
  const k = denoiser?.info?.numClassEmbeds;
  if (k === null || k === undefined) {
    throw new ConfigError('Wen et al. detection needs a conditional denoiser (info.numClassEmbeds is null: the model is unconditional)');
  }
  if (typeof nullClass !== 'number' || !Number.isInteger(nullClass) || nullClass < 0 || nullClass > k) {
    throw new ConfigError(`nullClass must be an integer in [0, ${k}] (${k} = the extra "null" row of a model trained with class dropout), got ${String(nullClass)}`, {
      nullClass,
      numClassEmbeds: k,
    });
  }
  return nullClass;
}

function labelArray(labels: tf.Tensor1D | readonly number[] | number, n: number, denoiser: Denoiser): Int32Array {
  let arr: ArrayLike<number>;
  if (typeof labels === 'number') arr = new Array<number>(n).fill(labels);
  else if (labels instanceof tf.Tensor) {
    if (labels.rank !== 1) throw new ShapeError(`classLabels must be [N], got [${labels.shape.join(',')}]`);
    arr = labels.dataSync();
  } else arr = labels;
  if (arr.length !== n) throw new ShapeError(`${arr.length} class labels for ${n} samples`, { expected: n, actual: arr.length });
  const k = denoiser.info.numClassEmbeds as number;
  const out = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    const c = arr[i] as number;
    if (!Number.isInteger(c) || c < 0 || c > k) throw new ConfigError(`class label ${c} (sample ${i}) is outside [0, ${k}]`, { index: i, value: c });
    out[i] = c;
  }
  return out;
}

function perSampleNorm(d: tf.Tensor, p: number): tf.Tensor1D {
  const n = d.shape[0] as number;
  const flat = tf.reshape(d, [n, -1]);
  if (p === Infinity) return tf.max(tf.abs(flat), 1) as tf.Tensor1D;
  if (p === 2) return tf.sqrt(tf.sum(tf.square(flat), 1)) as tf.Tensor1D;
  return tf.pow(tf.sum(tf.pow(tf.abs(flat), p), 1), 1 / p) as tf.Tensor1D;
}

/**
 * One batched model call on [x_t; x_t] with labels [c; ∅]. Returns the conditional and
 * unconditional outputs (caller disposes). @internal
 */
export function predictCondUncond(denoiser: Denoiser, sample: tf.Tensor4D, timestep: number, labels: Int32Array, nullClass: number): [tf.Tensor4D, tf.Tensor4D] {
  const n = sample.shape[0];
  return tf.tidy(() => {
    const both = tf.concat([sample, sample], 0);
    const lab = new Int32Array(2 * n);
    lab.set(labels, 0);
    lab.fill(nullClass, n);
    const out = denoiser.predict(both, timestep, tf.tensor1d(lab, 'int32'));
    if (!(out instanceof tf.Tensor) || out.shape[0] !== 2 * n) {
      throw new ShapeError(`denoiser.predict must return [${2 * n},H,W,C], got ${out instanceof tf.Tensor ? `[${out.shape.join(',')}]` : typeof out}`);
    }
    const [c, u] = tf.split(out, 2, 0) as [tf.Tensor4D, tf.Tensor4D];
    return [c, u];
  });
}

/**
 * ‖ε(x_t, c) − ε(x_t, ∅)‖_p of every sample at one step (one batched model call of 2N).
 * Inputs are not disposed.
 */
export function conditionalNoiseMagnitude(
  denoiser: Denoiser,
  sample: tf.Tensor4D,
  timestep: number,
  classLabels: tf.Tensor1D | readonly number[] | number,
  options: WenOptions,
): number[] {
  const nullClass = checkNullClass(denoiser, options?.nullClass);
  const p = checkNorm(options.p);
  checkTensor(sample, 'sample');
  if (sample.rank !== 4) throw new ShapeError(`sample must be [N,H,W,C], got [${sample.shape.join(',')}]`);
  const labels = labelArray(classLabels, sample.shape[0], denoiser);
  const [c, u] = predictCondUncond(denoiser, sample, timestep, labels, nullClass);
  const m = tf.tidy(() => perSampleNorm(tf.sub(c, u), p));
  c.dispose();
  u.dispose();
  const v = Array.from(m.dataSync());
  m.dispose();
  return v;
}

function selected(sel: StepSelection | undefined, stepIndex: number, timestep: number): boolean {
  if (sel === undefined) return true;
  if (typeof sel === 'function') return sel(stepIndex, timestep);
  return sel.includes(stepIndex);
}

/**
 * Accumulates Wen et al.'s magnitude over the steps of a sampling loop you run yourself.
 *
 * @example
 * ```ts
 * const det = new WenDetector(unet, { nullClass: 10, steps: [0] });
 * for (const [i, t] of timesteps.entries()) { det.observe(i, t, x, labels); x = step(x, t); }
 * det.result().score;
 * ```
 */
export class WenDetector {
  private readonly nullClass: number;
  private readonly p: number;
  private readonly steps: StepSelection | undefined;
  private perStep: number[][] = [];
  private stepIdx: number[] = [];
  private ts: number[] = [];

  constructor(
    private readonly denoiser: Denoiser,
    options: WenOptions & { steps?: StepSelection },
  ) {
    this.nullClass = checkNullClass(denoiser, options?.nullClass);
    this.p = checkNorm(options.p);
    this.steps = options.steps;
  }

  /** Scores x_t at loop position `stepIndex` (if selected); returns the magnitudes or null. */
  observe(stepIndex: number, timestep: number, sample: tf.Tensor4D, classLabels: tf.Tensor1D | readonly number[] | number): number[] | null {
    if (!selected(this.steps, stepIndex, timestep)) return null;
    const m = conditionalNoiseMagnitude(this.denoiser, sample, timestep, classLabels, { nullClass: this.nullClass, p: this.p });
    if (this.perStep.length > 0 && (this.perStep[0] as number[]).length !== m.length) {
      throw new ShapeError(`step ${stepIndex} has ${m.length} samples but earlier steps had ${(this.perStep[0] as number[]).length}`);
    }
    this.perStep.push(m);
    this.stepIdx.push(stepIndex);
    this.ts.push(timestep);
    return m;
  }

  /** Records already computed ε(x_t,c) and ε(x_t,∅) (e.g. from a CFG loop) without a model call. */
  observeOutputs(stepIndex: number, timestep: number, epsCond: tf.Tensor, epsUncond: tf.Tensor): number[] | null {
    if (!selected(this.steps, stepIndex, timestep)) return null;
    const m = tf.tidy(() => perSampleNorm(tf.sub(epsCond, epsUncond), this.p));
    const v = Array.from(m.dataSync());
    m.dispose();
    this.perStep.push(v);
    this.stepIdx.push(stepIndex);
    this.ts.push(timestep);
    return v;
  }

  /** A `(stepIndex, timestep, x_t) => void` callback for sampling loops that take one. */
  callback(classLabels: tf.Tensor1D | readonly number[] | number): (stepIndex: number, timestep: number, sample: tf.Tensor4D) => void {
    return (i, t, x) => {
      this.observe(i, t, x, classLabels);
    };
  }

  /** The accumulated result. */
  result(): WenResult {
    if (this.perStep.length === 0) throw new ConfigError('no step was scored: the step selection matched none of the observed steps');
    const n = (this.perStep[0] as number[]).length;
    const perSample = Array.from({ length: n }, (_, j) => this.perStep.reduce((a, row) => a + (row[j] as number), 0) / this.perStep.length);
    return {
      perSample,
      perStep: this.perStep.map((r) => [...r]),
      stepIndices: [...this.stepIdx],
      timesteps: [...this.ts],
      score: perSample.reduce((a, b) => a + b, 0) / n,
    };
  }

  /** Clears the accumulated steps. */
  reset(): void {
    this.perStep = [];
    this.stepIdx = [];
    this.ts = [];
  }
}

/** Wen et al.'s score over a recorded trajectory (e.g. x_t saved by your sampler). */
export function wenScore(
  denoiser: Denoiser,
  trajectory: Iterable<TrajectoryStep>,
  options: WenOptions & { classLabels: tf.Tensor1D | readonly number[] | number; steps?: StepSelection },
): WenResult {
  const det = new WenDetector(denoiser, options);
  let i = 0;
  for (const s of trajectory) {
    det.observe(s.stepIndex ?? i, s.timestep, s.sample, options.classLabels);
    i++;
  }
  return det.result();
}

/** Options of {@link sampleWithWenScore}. */
export interface WenSamplingOptions extends WenOptions {
  /** The condition c: one class for all generations, or one per generation. */
  classLabel: number | readonly number[];
  /** Generations per condition (default 4, Wen's `num_images_per_prompt`). */
  numGenerations?: number;
  /** ᾱ_t of the model's training schedule, t = 0 … T−1 (e.g. from core's noise schedules). */
  alphasCumprod: ArrayLike<number>;
  /** DDIM steps (default 50), "leading" spacing like diffusers' DDIMScheduler. */
  numInferenceSteps?: number;
  /** Explicit descending timesteps (overrides numInferenceSteps). */
  timesteps?: readonly number[];
  /** diffusers `steps_offset` (default 0; Stable Diffusion configs use 1). */
  stepsOffset?: number;
  /** ᾱ used after the last step: 1 (default, diffusers `set_alpha_to_one`) or ᾱ_0. */
  setAlphaToOne?: boolean;
  /** Classifier-free guidance scale s: ε̂ = ε∅ + s(ε_c − ε∅) (default 7.5; 1 = conditional only). */
  guidanceScale?: number;
  /** What the model predicts (default 'epsilon'). Magnitudes are taken on the raw outputs. */
  predictionType?: 'epsilon' | 'v_prediction' | 'sample';
  /** Steps to score (default all). Wen et al. also report the first step alone. */
  steps?: StepSelection;
  /** Seed or generator of x_T. */
  seed: RandomSource;
  /** Also return the final samples (default false). */
  returnSamples?: boolean;
  /** Also return x_t at every scored step (cloned; caller disposes), e.g. for attribution. */
  keepTrajectory?: boolean;
}

/** diffusers DDIM "leading" timesteps: (arange(S)·(T//S))[::-1] + offset. */
export function ddimTimesteps(numTrainTimesteps: number, numInferenceSteps: number, stepsOffset = 0): number[] {
  checkInt(numTrainTimesteps, 'numTrainTimesteps');
  checkInt(numInferenceSteps, 'numInferenceSteps');
  if (numInferenceSteps > numTrainTimesteps) throw new ConfigError(`numInferenceSteps ${numInferenceSteps} > training timesteps ${numTrainTimesteps}`);
  const ratio = Math.floor(numTrainTimesteps / numInferenceSteps);
  return Array.from({ length: numInferenceSteps }, (_, i) => (numInferenceSteps - 1 - i) * ratio + stepsOffset);
}

/**
 * Samples `numGenerations` images of one condition with DDIM (η = 0) and classifier-free
 * guidance while scoring Wen et al.'s magnitude from the same model calls (one batched call of
 * 2N per step: [x_t; x_t] with [c; ∅]). A minimal, self-contained loop (independent of the
 * schedulers in @diffmem/core): x̂0 = (x_t − √(1−ᾱ_t)ε̂)/√ᾱ_t, x_prev = √ᾱ_prev·x̂0 + √(1−ᾱ_prev)·ε̂.
 */
export function sampleWithWenScore(
  denoiser: Denoiser,
  options: WenSamplingOptions,
): WenResult & { samples?: tf.Tensor4D; trajectory?: TrajectoryStep[] } {
  const nullClass = checkNullClass(denoiser, options?.nullClass);
  const p = checkNorm(options.p);
  const n = checkInt(options.numGenerations ?? (Array.isArray(options.classLabel) ? options.classLabel.length : 4), 'numGenerations');
  const labels = labelArray(options.classLabel as number | readonly number[], n, denoiser);
  const ac = Array.from(options.alphasCumprod ?? []);
  if (ac.length === 0 || ac.some((a) => !(a > 0 && a <= 1))) throw new ConfigError('alphasCumprod must be a non-empty array of values in (0, 1]');
  const ts = options.timesteps ? [...options.timesteps] : ddimTimesteps(ac.length, options.numInferenceSteps ?? 50, options.stepsOffset ?? 0);
  for (const t of ts) if (!Number.isInteger(t) || t < 0 || t >= ac.length) throw new ConfigError(`timestep ${t} is outside [0, ${ac.length})`);
  const s = options.guidanceScale ?? 7.5;
  if (typeof s !== 'number' || !Number.isFinite(s) || s < 0) throw new ConfigError(`guidanceScale must be a finite number ≥ 0, got ${String(s)}`);
  const pred = options.predictionType ?? 'epsilon';
  if (!['epsilon', 'v_prediction', 'sample'].includes(pred)) throw new ConfigError(`unknown predictionType ${String(pred)}`);
  const final = options.setAlphaToOne === false ? (ac[0] as number) : 1;
  const { sampleSize, inChannels } = denoiser.info;
  const det = new WenDetector(denoiser, { nullClass, p, steps: options.steps });
  const trajectory: TrajectoryStep[] = [];
  let x: tf.Tensor4D = randn([n, sampleSize, sampleSize, inChannels], options.seed);
  let res: WenResult & { samples?: tf.Tensor4D; trajectory?: TrajectoryStep[] };
  try {
    ts.forEach((t, i) => {
      const aT = ac[t] as number;
      const prevT = i + 1 < ts.length ? (ts[i + 1] as number) : -1;
      const aPrev = prevT >= 0 ? (ac[prevT] as number) : final;
      const [c, u] = predictCondUncond(denoiser, x, t, labels, nullClass);
      try {
        const scored = det.observeOutputs(i, t, c, u);
        if (scored && options.keepTrajectory) trajectory.push({ stepIndex: i, timestep: t, sample: tf.clone(x) });
        const next = tf.tidy(() => {
          const out = tf.add(u, tf.mul(tf.sub(c, u), s)); // guided model output
          let eps: tf.Tensor;
          let x0: tf.Tensor;
          if (pred === 'epsilon') {
            eps = out;
            x0 = tf.div(tf.sub(x, tf.mul(eps, Math.sqrt(1 - aT))), Math.sqrt(aT));
          } else if (pred === 'v_prediction') {
            x0 = tf.sub(tf.mul(x, Math.sqrt(aT)), tf.mul(out, Math.sqrt(1 - aT)));
            eps = tf.add(tf.mul(out, Math.sqrt(aT)), tf.mul(x, Math.sqrt(1 - aT)));
          } else {
            x0 = out;
            eps = tf.div(tf.sub(x, tf.mul(x0, Math.sqrt(aT))), Math.sqrt(1 - aT));
          }
          return tf.add(tf.mul(x0, Math.sqrt(aPrev)), tf.mul(eps, Math.sqrt(1 - aPrev))) as tf.Tensor4D;
        });
        x.dispose();
        x = next;
      } finally {
        c.dispose();
        u.dispose();
      }
    });
    res = det.result();
  } catch (err) {
    x.dispose();
    for (const st of trajectory) st.sample.dispose();
    throw err;
  }
  if (options.returnSamples) res.samples = x;
  else x.dispose();
  if (options.keepTrajectory) res.trajectory = trajectory;
  return res;
}
