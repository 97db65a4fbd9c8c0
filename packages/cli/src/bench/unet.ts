/**
 * UNet2DModel benchmark: forward ε_θ(x_t, t[, y]) without gradients, one training step (forward +
 * backward + AdamW update of core's `diffusionLoss` on ε — the per-step work of
 * `trainDiffusionModel` without EMA and clipping) and a DDIM sampling run (core's `DDIMPipeline`,
 * diffusers' default `DDIMScheduler`), on the current backend. `npm run bench` reuses it and
 * keeps the inputs/outputs for its PyTorch parity check.
 * @module
 */
import * as tf from '@tensorflow/tfjs-core';
import {
  AdamOptimizer,
  DDIMPipeline,
  DDIMScheduler,
  DDPMScheduler,
  Generator,
  diffusionLoss,
  smallUNetConfig,
  UNet2DModel,
} from '@diffmem/core';
import { timed, type Timing } from './timing.js';

/** The demo model's configuration (16×16×1, [32,64,64], attention at 8×8, 10 classes + null row). */
export function demoBenchConfig(): Record<string, unknown> {
  return smallUNetConfig({ sampleSize: 16, channels: 1, blockOutChannels: [32, 64, 64], numClassEmbeds: 11 });
}

/** Options of {@link benchUNet}. */
export interface UNetBenchOptions {
  batch: number;
  /** Timed repeats per operation (default forward 5, train 3, DDIM 1). */
  reps?: { forward?: number; train?: number; ddim?: number };
  /** DDIM steps of the timed sampling run (default 50). */
  ddimSteps?: number;
  /** Skip the training step (e.g. on the slow cpu backend). */
  skipTrain?: boolean;
  /** Skip DDIM sampling. */
  skipDdim?: boolean;
  /** Profile one training step by kernel (tfjs' profiler). */
  profile?: boolean;
  /**
   * Keep the inputs and outputs for a parity check elsewhere (returned in `io`, caller disposes);
   * with `checkSteps`, also a short DDIM run from the same latents.
   */
  keepIO?: boolean;
  checkSteps?: number;
  /** Seed of the inputs (default 1234). */
  seed?: number;
  /** Called before each operation (progress). */
  onStage?: (stage: 'forward' | 'ddim' | 'train' | 'profile') => void;
}

/** Tensors of a run, for a parity check (all owned by the caller). */
export interface UNetBenchIO {
  sample: tf.Tensor4D;
  timesteps: tf.Tensor1D;
  classLabels: tf.Tensor1D | null;
  outForward: tf.Tensor4D;
  trainX0: tf.Tensor4D;
  trainNoise: tf.Tensor4D;
  trainT: tf.Tensor1D;
  trainLoss: number | null;
  ddimLatents: tf.Tensor4D;
  ddimOut: tf.Tensor4D | null;
}

/** What {@link benchUNet} measured. */
export interface UNetBenchResult {
  backend: string;
  params: number;
  batch: number;
  forward: Timing;
  train: Timing | null;
  ddim: (Timing & { steps: number }) | null;
  profile: { kernelsPerStep: number; kernelMs: number; top: { name: string; ms: number; share: number }[] } | null;
  io: UNetBenchIO | null;
}

/** Times `unet` (weights are updated by the training step: pass a throw-away model). */
export async function benchUNet(unet: UNet2DModel, o: UNetBenchOptions): Promise<UNetBenchResult> {
  const B = o.batch;
  if (!Number.isInteger(B) || B < 1) throw new RangeError(`batch must be a positive integer, got ${B}`);
  const S = unet.info.sampleSize;
  const C = unet.info.inChannels;
  const cond = unet.info.numClassEmbeds !== null;
  const gen = new Generator(o.seed ?? 1234);
  const n = B * S * S * C;
  const x = tf.tensor4d(gen.normalArray(n), [B, S, S, C]);
  const t = tf.tensor1d(Int32Array.from({ length: B }, () => gen.randint(1000)), 'int32');
  const labelsArr = cond ? Array.from({ length: B }, (_, i) => i % Math.max(1, (unet.info.numClassEmbeds as number) - 1)) : null;
  const y = labelsArr ? tf.tensor1d(labelsArr, 'int32') : undefined;
  const x0 = tf.tensor4d(Float32Array.from(gen.uniformArray(n), (u) => 2 * u - 1), [B, S, S, C]);
  const noise = tf.tensor4d(gen.normalArray(n), [B, S, S, C]);
  const tTrain = tf.tensor1d(Int32Array.from({ length: B }, () => gen.randint(1000)), 'int32');
  const latents = tf.tensor4d(gen.normalArray(n), [B, S, S, C]);
  const keep: tf.Tensor[] = [];
  const disposeLater: tf.Tensor[] = [];
  const reps = { forward: o.reps?.forward ?? 5, train: o.reps?.train ?? 3, ddim: o.reps?.ddim ?? 1 };
  const steps = o.ddimSteps ?? 50;
  let opt: AdamOptimizer | null = null;
  try {
    o.onStage?.('forward');
    const fwd = (): tf.Tensor4D => tf.tidy(() => unet.predict(x, t, y));
    const outForward = o.keepIO ? fwd() : null;
    const forward = await timed(async () => {
      const r = fwd();
      await r.data();
      r.dispose();
    }, reps.forward);

    let ddim: UNetBenchResult['ddim'] = null;
    let ddimCheck: tf.Tensor4D | null = null;
    if (!o.skipDdim) {
      o.onStage?.('ddim');
      const pipe = new DDIMPipeline(unet, new DDIMScheduler());
      const cl = labelsArr ? { classLabels: labelsArr } : {};
      const tm = await timed(async () => {
        const r = await pipe.generate({ latents, numInferenceSteps: steps, ...cl });
        r.dispose();
      }, reps.ddim, 0);
      ddim = { ...tm, steps };
      if (o.keepIO && o.checkSteps) ddimCheck = await pipe.generate({ latents, numInferenceSteps: o.checkSteps, ...cl });
    }

    let train: Timing | null = null;
    let profile: UNetBenchResult['profile'] = null;
    let firstLoss: number | null = null;
    if (!o.skipTrain) {
      o.onStage?.('train');
      const abar = new DDPMScheduler().alphasCumprod;
      const tIdx = tTrain.dataSync();
      const sa = tf.tensor1d(Float32Array.from(tIdx, (k) => Math.sqrt(abar[k] as number)));
      const sb = tf.tensor1d(Float32Array.from(tIdx, (k) => Math.sqrt(1 - (abar[k] as number))));
      disposeLater.push(sa, sb);
      const inputs = { x0, noise, timesteps: tTrain, sqrtAlphaBar: sa, sqrtOneMinusAlphaBar: sb, ...(y ? { labels: y } : {}) };
      const optimizer = new AdamOptimizer({ kind: 'adamw', learningRate: 1e-4, weightDecay: 1e-2 });
      opt = optimizer;
      const vars = unet.variables;
      const trainable = unet.trainableVariables();
      const step = async (): Promise<void> => {
        const { value, grads } = tf.variableGrads(() => diffusionLoss(unet, inputs, 'epsilon'), trainable);
        const loss = (await value.data())[0] as number;
        if (firstLoss === null) firstLoss = loss;
        value.dispose();
        const byName: Record<string, tf.Tensor> = {};
        for (const [k, v] of vars) {
          const g = grads[v.name];
          if (g) byName[k] = g;
        }
        optimizer.apply(vars, byName);
        tf.dispose(Object.values(grads));
      };
      train = await timed(step, reps.train);
      if (o.profile) {
        o.onStage?.('profile');
        const prof = await tf.profile(step);
        const byKernel = new Map<string, number>();
        for (const k of prof.kernels) byKernel.set(k.name, (byKernel.get(k.name) ?? 0) + (typeof k.kernelTimeMs === 'number' ? k.kernelTimeMs : 0));
        const total = [...byKernel.values()].reduce((a, b) => a + b, 0);
        profile = {
          kernelsPerStep: prof.kernels.length,
          kernelMs: total,
          top: [...byKernel]
            .sort((a, b) => b[1] - a[1])
            .slice(0, 8)
            .map(([name, ms]) => ({ name, ms: Number(ms.toFixed(1)), share: total > 0 ? Number((ms / total).toFixed(3)) : 0 })),
        };
      }
    }
    let io: UNetBenchIO | null = null;
    if (o.keepIO) {
      io = {
        sample: x,
        timesteps: t,
        classLabels: y ?? null,
        outForward: outForward as tf.Tensor4D,
        trainX0: x0,
        trainNoise: noise,
        trainT: tTrain,
        trainLoss: firstLoss,
        ddimLatents: latents,
        ddimOut: ddimCheck,
      };
      keep.push(x, t, x0, noise, tTrain, latents, ...(y ? [y] : []));
    }
    return { backend: tf.getBackend(), params: unet.paramCount(), batch: B, forward, train, ddim, profile, io };
  } finally {
    opt?.dispose();
    tf.dispose(disposeLater);
    tf.dispose([x, t, x0, noise, tTrain, latents, ...(y ? [y] : [])].filter((v) => !keep.includes(v)));
  }
}

/** Builds a randomly initialised model of `config` (seed 0) and benchmarks it; the model is disposed. */
export async function benchUNetConfig(config: Record<string, unknown>, o: UNetBenchOptions): Promise<UNetBenchResult> {
  const unet = UNet2DModel.fromConfig(config, { seed: 0 });
  try {
    return await benchUNet(unet, o);
  } finally {
    unet.dispose();
  }
}
