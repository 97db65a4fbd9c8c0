/**
 * InvMM on several threads for ONE image (data parallelism within an inversion).
 *
 * Each optimisation step, the main thread draws every random number exactly as the sequential
 * inversion does (noises n [B·dim], timesteps, Gumbel uniforms), splits the B samples into S
 * contiguous shards (S = this thread + the pool's workers), posts shards 1…S−1 to the workers,
 * computes shard 0 itself, and combines
 *
 * ```
 * p_loss   = (1/B)·Σ_s Σ_{b∈s} p_b            ∂p_loss = (1/B)·Σ_s ∂(Σ_{b∈s} p_b)
 * loss     = p_loss + λ·r_loss                 (r_loss and ∂r_loss on this thread, objective.ts)
 * ```
 *
 * which equals the whole-batch objective of `objective.ts` (A.3 of the reference document) up to
 * float32 rounding; the existing Adam then steps as before. Verification splits the n samples
 * x_T (drawn here, as before) the same way; with `stopAtFirstFailure` a round is S samples, one
 * per thread. The replication test runs on this thread, on the gathered samples.
 *
 * Workers load the model from a serialisable {@link InvMMModelSource} (cached per worker); at
 * start every worker is probed, and a model that differs from this thread's is refused.
 * @module
 */
import * as tf from '@tensorflow/tfjs-core';
import { ConfigError, NonFiniteError, WorkerPool, WorkerTaskError, compiledModuleUrl } from '@diffmem/core';
import {
  ensureInvMMGradKernels,
  type InvMMExecutor,
  type InvMMExecutorContext,
  type InvMMStepDraws,
  type InvMMStepResult,
  type InvMMVariables,
} from './executor.js';
import type { InvMMClassCondition, InvMMModelSource } from './model.js';
import { klToStandardNormal } from './objective.js';
import type { InvMMVerificationConfig } from './presets.js';
import {
  computeGradShard,
  computeProbe,
  computeSampleShard,
  type InvMMConditionData,
  type InvMMGradShardResult,
  type InvMMGradShardTaskArg,
  type InvMMProbeResult,
  type InvMMProbeTaskArg,
  type InvMMSampleShardTaskArg,
} from './shard_task.js';

/** Data parallelism within one inversion (option `parallel` of `invertImage`). */
export interface InvMMParallelOptions {
  /**
   * Where the workers load the model from. It must be the model passed to `invertImage` (same
   * weights and noise schedule): every worker is probed at start and a mismatch is a ConfigError.
   */
  source: InvMMModelSource;
  /**
   * Participating threads S, this one included (default 2): a pool of S − 1 workers is created
   * and closed when the inversion ends. Ignored when `pool` is given. 1 = no workers.
   */
  threads?: number;
  /** An existing pool (not closed here): S = `pool.size` + 1. */
  pool?: WorkerPool;
  /** Backend preference of a created pool's workers (default `wasm,cpu`; use this thread's backend for identical arithmetic). */
  backend?: string;
}

/**
 * Contiguous, near-equal shards of `total` items over at most `shards` parts: sizes differ by at
 * most one, larger first; empty shards are dropped. Returns `[start, end)` pairs.
 */
export function shardRanges(total: number, shards: number): Array<[number, number]> {
  if (!Number.isInteger(total) || total < 0) throw new ConfigError(`total must be a non-negative integer, got ${total}`);
  if (!Number.isInteger(shards) || shards < 1) throw new ConfigError(`shards must be a positive integer, got ${shards}`);
  const out: Array<[number, number]> = [];
  const base = Math.floor(total / shards);
  const extra = total % shards;
  let start = 0;
  for (let s = 0; s < shards; s++) {
    const size = base + (s < extra ? 1 : 0);
    if (size === 0) break;
    out.push([start, start + size]);
    start += size;
  }
  return out;
}

/** The compiled shard tasks (their `dist/` build under jest; see core's `compiledModuleUrl`). */
export function invmmShardTaskModuleUrl(): URL {
  return compiledModuleUrl(import.meta.url, './shard_task.js', 'InvMM shard task');
}

/** A worker failure as a typed error: non-finite samples stay {@link NonFiniteError} (status `'non-finite'`), the rest name the shard. */
function workerFailure(err: unknown, what: string): Error {
  if (err instanceof WorkerTaskError) {
    const code = (err.details as { code?: string } | undefined)?.code;
    if (code === 'NON_FINITE') return new NonFiniteError(err.message, { shard: what });
    return new WorkerTaskError(`InvMM ${what} failed in a worker thread: ${err.message}`, { ...(err.details ?? {}), shard: what });
  }
  return err instanceof Error ? err : new Error(String(err));
}

function conditionData(condition: InvMMClassCondition, start: number, end: number): InvMMConditionData {
  if (condition.kind === 'soft') {
    const k = condition.weights.shape[1];
    const all = condition.weights.dataSync() as Float32Array;
    return { kind: 'soft', weights: all.slice(start * k, end * k), classes: k };
  }
  return condition.kind === 'label' ? { kind: 'label', label: condition.label } : { kind: 'none' };
}

/** Relative agreement of two probe outputs (the same weights on two threads agree to rounding). */
function probeMismatch(a: InvMMProbeResult, b: InvMMProbeResult): string | null {
  for (const k of ['sampleSize', 'inChannels', 'outChannels', 'numClassEmbeds', 'numTrainTimesteps', 'predictionType'] as const) {
    if (a[k] !== b[k]) return `${k} ${String(b[k])} vs ${String(a[k])}`;
  }
  let dA = 0;
  for (let i = 0; i < a.alphasCumprod.length; i++) dA = Math.max(dA, Math.abs((a.alphasCumprod[i] as number) - (b.alphasCumprod[i] as number)));
  if (dA > 1e-6) return `noise schedules differ (max |Δᾱ| = ${dA.toExponential(2)})`;
  let scale = 0;
  let diff = 0;
  for (let i = 0; i < a.output.length; i++) {
    scale = Math.max(scale, Math.abs(a.output[i] as number));
    diff = Math.max(diff, Math.abs((a.output[i] as number) - (b.output[i] as number)));
  }
  if (a.output.length !== b.output.length || !(diff <= 1e-3 * scale + 1e-5)) {
    return `denoiser outputs differ on a probe input (max |Δ| = ${diff.toExponential(2)} for outputs up to ${scale.toExponential(2)}): different weights`;
  }
  return null;
}

/**
 * The sharded executor (see the module notes). Create with {@link ShardedInvMMExecutor.open};
 * `close` closes the pool if it was created here.
 */
export class ShardedInvMMExecutor implements InvMMExecutor {
  readonly threads: number;
  private readonly module = invmmShardTaskModuleUrl();
  private readonly x0Data: Float32Array;
  private readonly shape: [number, number, number];

  private constructor(
    private readonly ctx: InvMMExecutorContext,
    private readonly source: InvMMModelSource,
    private readonly pool: WorkerPool | null,
    private readonly ownsPool: boolean,
  ) {
    ensureInvMMGradKernels();
    this.threads = (pool?.size ?? 0) + 1;
    const [, h, w, c] = ctx.x0.shape;
    this.shape = [h, w, c];
    this.x0Data = Float32Array.from(ctx.x0.dataSync() as Float32Array);
  }

  /**
   * Opens the workers (a new pool of `threads − 1`, or the caller's `pool`), loads the model in
   * each and checks it against this thread's.
   * @throws ConfigError for bad options or a worker model that differs from `ctx.model`;
   *   WorkerTaskError when a worker cannot load the model (the message names the cause).
   */
  static async open(ctx: InvMMExecutorContext, options: InvMMParallelOptions): Promise<ShardedInvMMExecutor> {
    const src = options?.source as { kind?: unknown } | undefined;
    if (!src || (src.kind !== 'folder' && src.kind !== 'module')) {
      throw new ConfigError('parallel.source must be a serialisable model source ({kind: "folder", dir} or {kind: "module", module, fn}) of the same model');
    }
    let pool: WorkerPool | null = options.pool ?? null;
    let owns = false;
    if (!pool) {
      const threads = options.threads ?? 2;
      if (!Number.isInteger(threads) || threads < 1) throw new ConfigError(`parallel.threads must be a positive integer, got ${String(threads)}`);
      if (threads > 1) {
        pool = new WorkerPool({ size: threads - 1, ...(options.backend !== undefined ? { backend: options.backend } : {}) });
        owns = true;
      }
    }
    const exec = new ShardedInvMMExecutor(ctx, options.source, pool, owns);
    try {
      await exec.probe();
    } catch (err) {
      await exec.close();
      throw err;
    }
    return exec;
  }

  private probeLabel(): number | null {
    return this.ctx.label ?? (this.ctx.soft > 0 ? 0 : null);
  }

  private async probe(): Promise<void> {
    if (!this.pool) return;
    const arg: InvMMProbeTaskArg = { source: this.source, shape: this.shape, label: this.probeLabel() };
    const remote = Array.from({ length: this.pool.size }, () => this.pool!.run<InvMMProbeResult, InvMMProbeTaskArg>({ module: this.module, fn: 'invmmProbeTask', arg }));
    const settled = await Promise.allSettled(remote);
    const mine = computeProbe(this.ctx.model, this.shape, this.probeLabel());
    for (const s of settled) {
      if (s.status === 'rejected') throw workerFailure(s.reason, 'model loading');
      const why = probeMismatch(mine, s.value);
      if (why) throw new ConfigError(`parallel.source does not load the model given to invertImage: ${why}`);
    }
  }

  /**
   * Runs shard 0 here and shards 1… on the workers: the worker tasks are posted first, so they
   * compute while this thread does its share; every worker result is awaited before returning
   * (also on failure: nothing is left running unobserved).
   */
  private async runShards<R>(ranges: Array<[number, number]>, local: (r: [number, number]) => R | Promise<R>, remote: (r: [number, number]) => Promise<R>, what: string): Promise<R[]> {
    const pending = ranges.slice(1).map((r) => remote(r));
    const settled = Promise.allSettled(pending);
    let mine: R | undefined;
    let failure: unknown = null;
    try {
      mine = await local(ranges[0] as [number, number]);
    } catch (err) {
      failure = err;
    }
    const rest = await settled;
    if (failure !== null) throw failure;
    const out: R[] = [mine as R];
    rest.forEach((s, i) => {
      if (s.status === 'rejected') {
        const [a, b] = ranges[i + 1] as [number, number];
        throw workerFailure(s.reason, `${what} (samples ${a}…${b - 1})`);
      }
      out.push(s.value);
    });
    return out;
  }

  /**
   * Σ-of-shards gradient (see the module notes): shard sums in shard order, divided by B, plus
   * λ·∂r_loss computed here with tf (the KL term depends on μ, logvar only).
   */
  async lossAndGrads(vars: InvMMVariables, draws: InvMMStepDraws, lambda: number): Promise<InvMMStepResult> {
    const { config, label } = this.ctx;
    const B = draws.timesteps.length;
    const dim = this.x0Data.length;
    const K = vars.logits ? (vars.logits.shape[0] as number) : 0;
    const mu = Float32Array.from(vars.mu.dataSync() as Float32Array);
    const logvar = Float32Array.from(vars.logvar.dataSync() as Float32Array);
    const logits = vars.logits ? Float32Array.from(vars.logits.dataSync() as Float32Array) : null;
    const dataOf = (r: [number, number]) => ({
      shape: this.shape,
      x0: this.x0Data,
      mu,
      logvar,
      logits,
      noise: draws.noise.slice(r[0] * dim, r[1] * dim),
      timesteps: draws.timesteps.slice(r[0], r[1]),
      uniforms: draws.uniforms ? draws.uniforms.slice(r[0] * K, r[1] * K) : null,
      label,
      gumbelTau: config.gumbelTau,
    });
    const results = await this.runShards<InvMMGradShardResult>(
      shardRanges(B, this.threads),
      (r) => computeGradShard(this.ctx.model, dataOf(r)),
      (r) =>
        (this.pool as WorkerPool).run<InvMMGradShardResult, InvMMGradShardTaskArg>({
          module: this.module,
          fn: 'invmmGradShardTask',
          arg: { source: this.source, ...dataOf(r) },
        }),
      'gradient shard',
    );
    const [, h, w, c] = this.ctx.x0.shape;
    return tf.tidy(() => {
      const sum = (arrays: Float32Array[], shape: number[]): tf.Tensor => tf.div(tf.addN(arrays.map((a) => tf.tensor(a, shape))), B);
      const pLoss = tf.div(tf.addN(results.map((r) => tf.scalar(r.lossSum))), B) as tf.Scalar;
      const { value: rLoss, grads: rGrads } = tf.valueAndGrads((m: tf.Tensor, lv: tf.Tensor) => klToStandardNormal(m, lv))([vars.mu, vars.logvar]);
      const grads: tf.NamedTensorMap = {
        [vars.mu.name]: tf.add(sum(results.map((r) => r.gradMu), [1, h, w, c]), tf.mul(rGrads[0] as tf.Tensor, lambda)),
        [vars.logvar.name]: tf.add(sum(results.map((r) => r.gradLogvar), [1, h, w, c]), tf.mul(rGrads[1] as tf.Tensor, lambda)),
      };
      if (vars.logits) grads[vars.logits.name] = sum(results.map((r) => r.gradLogits as Float32Array), [K]);
      return { grads, pLoss, rLoss: rLoss as tf.Scalar };
    });
  }

  /** S: one verification sample per thread per round. */
  verificationChunkSize(_v: InvMMVerificationConfig): number {
    return this.threads;
  }

  /**
   * Deterministic DDIM (`sampleVerificationDDIM`) of the rows of `xT` split into S contiguous
   * shards (soft class weights split with their rows); the samples come back in row order.
   */
  async sample(xT: tf.Tensor4D, condition: InvMMClassCondition, guidanceScale: number): Promise<tf.Tensor4D> {
    const v = this.ctx.config.verification;
    const n = xT.shape[0];
    const dim = this.x0Data.length;
    const all = xT.dataSync() as Float32Array;
    const dataOf = (r: [number, number]) => ({
      shape: this.shape,
      xT: all.slice(r[0] * dim, r[1] * dim),
      count: r[1] - r[0],
      condition: conditionData(condition, r[0], r[1]),
      guidanceScale,
      nullClassId: this.ctx.nullId,
      numInferenceSteps: v.numInferenceSteps,
      sampler: v.sampler,
    });
    const parts = await this.runShards<Float32Array>(
      shardRanges(n, this.threads),
      (r) => computeSampleShard(this.ctx.model, dataOf(r)),
      (r) =>
        (this.pool as WorkerPool).run<Float32Array, InvMMSampleShardTaskArg>({
          module: this.module,
          fn: 'invmmSampleShardTask',
          arg: { source: this.source, ...dataOf(r) },
        }),
      'verification shard',
    );
    const out = new Float32Array(n * dim);
    let offset = 0;
    for (const p of parts) {
      out.set(p, offset);
      offset += p.length;
    }
    const [h, w, c] = this.shape;
    return tf.tensor4d(out, [n, h, w, c]);
  }

  /** Closes the worker pool if this executor created it (a caller's pool stays open). */
  async close(): Promise<void> {
    if (this.ownsPool && this.pool) await this.pool.close();
  }
}
