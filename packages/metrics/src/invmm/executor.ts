/**
 * Where the two expensive parts of an InvMM inversion run: the per-step gradient of the
 * objective (B noise samples through the denoiser and back) and the verification sampling (n
 * DDIM chains). `invertImage` drives one control flow (random draws, λ schedule, Adam, checks,
 * records) and delegates these two parts to an {@link InvMMExecutor}:
 *
 * - {@link LocalInvMMExecutor}: everything on this thread (the official loop, as before);
 * - `ShardedInvMMExecutor` (`parallel.ts`): the B samples of a step and the n verification
 *   samples are split across this thread and worker threads (data parallelism within one image).
 *
 * This module also holds the per-shard computation both executors' shards share
 * ({@link reconstructionShardGrads}), so a worker shard runs exactly the code the main thread runs.
 * @module
 */
import * as tf from '@tensorflow/tfjs-core';
import { registerCpuGradKernelFixes, registerWasmGradKernels } from '@diffmem/core';
import type { InvMMClassCondition, InvMMModel } from './model.js';
import { gumbelSoftmax, klToStandardNormal, reconstructionLoss, reparameterize } from './objective.js';
import type { InvMMConfig, InvMMVerificationConfig } from './presets.js';
import { sampleVerificationDDIM } from './sampler.js';

let kernelsRegistered = false;

/**
 * Backward passes through conv nets need core's gradient kernels on wasm (tfjs-backend-wasm 4.22
 * lacks Conv2DBackpropFilter and is slow or leaky for others) and its ResizeNearestNeighborGrad
 * fix on cpu. Idempotent, per thread (worker shards call it too).
 */
export function ensureInvMMGradKernels(): void {
  if (kernelsRegistered) return;
  registerWasmGradKernels();
  registerCpuGradKernelFixes();
  kernelsRegistered = true;
}

/** The optimised parameters of one inversion: μ, logvar ([1,H,W,C]) and, for soft labels, the class logits z ([K]). */
export interface InvMMVariables {
  mu: tf.Variable;
  logvar: tf.Variable;
  logits: tf.Variable | null;
}

/** The random draws of one optimisation step (made on the main thread, in the sequential order). */
export interface InvMMStepDraws {
  /** n ~ N(0, I), [B·H·W·C] row-major (sample-major). */
  noise: Float32Array;
  /** B timesteps t_b ~ U{0, …, T−1}. */
  timesteps: number[];
  /** Soft labels: Gumbel uniforms in (0, 1), [B·K]; else null. */
  uniforms: Float32Array | null;
}

/** What one step's gradient computation returns (the caller disposes every tensor). */
export interface InvMMStepResult {
  /** ∂(p_loss + λ·r_loss)/∂v, keyed by variable name (the keys `AdamOptimizer.apply` expects). */
  grads: tf.NamedTensorMap;
  /** p_loss: mean over the B samples and the pixels. */
  pLoss: tf.Scalar;
  /** r_loss = KL(N(μ,σ²) ‖ N(0,I)) per dimension. */
  rLoss: tf.Scalar;
}

/** Everything an executor needs besides the per-call arguments. */
export interface InvMMExecutorContext {
  model: InvMMModel;
  /** The target in model space [−1, 1], [1,H,W,C]. Owned by the caller. */
  x0: tf.Tensor4D;
  config: InvMMConfig;
  /** The given class label, or null. */
  label: number | null;
  /** Soft labels: K (0 = no soft label). */
  soft: number;
  /** The "unconditional" class for guidance scales ≠ 1. */
  nullId: number;
}

/** Runs the gradient and sampling work of one inversion (see the module notes). */
export interface InvMMExecutor {
  /** Participating threads S (1 for the local executor). */
  readonly threads: number;
  /** loss = p_loss + λ·r_loss and its gradient w.r.t. the variables, for one step's draws. */
  lossAndGrads(vars: InvMMVariables, draws: InvMMStepDraws, lambda: number): Promise<InvMMStepResult>;
  /**
   * Samples per verification round when `stopAtFirstFailure` is on: the configured `chunkSize`
   * on one thread, S (one sample per thread) when sharded.
   */
  verificationChunkSize(v: InvMMVerificationConfig): number;
  /** Deterministic DDIM from `xT` ([N,H,W,C], not disposed) → x̂0 in [−1, 1] (a new tensor). */
  sample(xT: tf.Tensor4D, condition: InvMMClassCondition, guidanceScale: number): Promise<tf.Tensor4D>;
  /** Releases what the executor owns (worker pools it created). */
  close(): Promise<void>;
}

/**
 * The class condition of a training step: Gumbel-softmax weights of the logits z (soft labels,
 * `uniforms` is [b·K]), the given label, or none.
 */
export function stepCondition(logits: tf.Tensor | null, uniforms: Float32Array | null, b: number, label: number | null, tau: number): InvMMClassCondition {
  if (logits && uniforms) {
    const k = logits.shape[0] as number;
    return { kind: 'soft', weights: gumbelSoftmax(logits as tf.Tensor1D, tf.tensor2d(uniforms, [b, k]), tau) };
  }
  return label !== null ? { kind: 'label', label } : { kind: 'none' };
}

/** One shard's share of a step: Σ over its samples of the per-sample p_loss, and its gradients. */
export interface InvMMShardGrads {
  /** Σ_b p_b with p_b = mean over pixels of (x̂0_b − x0)² (the shard's samples only). */
  lossSum: tf.Scalar;
  gradMu: tf.Tensor;
  gradLogvar: tf.Tensor;
  gradLogits: tf.Tensor | null;
}

/**
 * The p_loss part of the objective for a subset ("shard") of a step's B samples, as a **sum** of
 * per-sample terms: `b · reconstructionLoss(shard)` (`objective.ts`, eq. A.3), with its gradients
 * w.r.t. μ, logvar and z. Summing every shard's `lossSum` and gradients and dividing by B gives
 * p_loss and ∂p_loss exactly as the whole batch does, up to float32 rounding. Pure: depends on its
 * arguments only (tensors are not disposed; the results are new tensors).
 */
export function reconstructionShardGrads(
  model: InvMMModel,
  x0: tf.Tensor4D,
  params: { mu: tf.Tensor; logvar: tf.Tensor; logits: tf.Tensor | null },
  draws: InvMMStepDraws,
  label: number | null,
  gumbelTau: number,
): InvMMShardGrads {
  ensureInvMMGradKernels();
  const b = draws.timesteps.length;
  const [, h, w, c] = x0.shape;
  const args = params.logits ? [params.mu, params.logvar, params.logits] : [params.mu, params.logvar];
  const { value, grads } = tf.tidy(() => {
    const n = tf.tensor4d(draws.noise, [b, h, w, c]);
    return tf.valueAndGrads((...xs: tf.Tensor[]) => {
      const [mu, logvar, logits] = xs as [tf.Tensor, tf.Tensor, tf.Tensor | undefined];
      const noise = reparameterize(mu, logvar, n);
      const condition = stepCondition(logits ?? null, draws.uniforms, b, label, gumbelTau);
      return tf.mul(reconstructionLoss(model.denoiser, model.scheduler, x0, noise, draws.timesteps, condition), b) as tf.Scalar;
    })(args);
  });
  return { lossSum: value as tf.Scalar, gradMu: grads[0] as tf.Tensor, gradLogvar: grads[1] as tf.Tensor, gradLogits: grads[2] ?? null };
}

/** Every step and every verification sample on this thread (the official loop). */
export class LocalInvMMExecutor implements InvMMExecutor {
  readonly threads = 1;

  constructor(private readonly ctx: InvMMExecutorContext) {
    ensureInvMMGradKernels();
  }

  /**
   * `tf.variableGrads` of p_loss + λ·r_loss over the explicit variable list (the model's weights
   * are never touched), as `GaussianDiffusionInversionTrainer.forward` + `loss.backward()`.
   */
  async lossAndGrads(vars: InvMMVariables, draws: InvMMStepDraws, lambda: number): Promise<InvMMStepResult> {
    const { model, x0, config, label } = this.ctx;
    const { mu, logvar, logits } = vars;
    const varList = logits ? [mu, logvar, logits] : [mu, logvar];
    const b = draws.timesteps.length;
    const [, h, w, c] = x0.shape;
    const kept: { p?: tf.Scalar; r?: tf.Scalar } = {};
    const { value, grads } = tf.variableGrads(() => {
      const noise = reparameterize(mu, logvar, tf.tensor4d(draws.noise, [b, h, w, c]));
      const condition = stepCondition(logits, draws.uniforms, b, label, config.gumbelTau);
      const p = reconstructionLoss(model.denoiser, model.scheduler, x0, noise, draws.timesteps, condition);
      const r = klToStandardNormal(mu, logvar);
      kept.p = tf.keep(p);
      kept.r = tf.keep(r);
      return tf.add(p, tf.mul(r, lambda)) as tf.Scalar;
    }, varList);
    value.dispose();
    return { grads, pLoss: kept.p as tf.Scalar, rLoss: kept.r as tf.Scalar };
  }

  verificationChunkSize(v: InvMMVerificationConfig): number {
    return v.chunkSize;
  }

  sample(xT: tf.Tensor4D, condition: InvMMClassCondition, guidanceScale: number): Promise<tf.Tensor4D> {
    const { model, config, nullId } = this.ctx;
    return sampleVerificationDDIM(model.denoiser, model.scheduler, xT, {
      numInferenceSteps: config.verification.numInferenceSteps,
      sampler: config.verification.sampler,
      condition,
      guidanceScale,
      nullClassId: nullId,
    });
  }

  async close(): Promise<void> {
    // Nothing owned.
  }
}
