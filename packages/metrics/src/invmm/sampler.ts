/**
 * The verification sampler of InvMM: deterministic DDIM (Song et al. 2021 eq. 12 with η = 0)
 * from x_T ~ N(μ, σ²), in the two forms of {@link InvMMSamplerKind}.
 * @module
 */
import * as tf from '@tensorflow/tfjs-core';
import { NonFiniteError, type Denoiser } from '@diffmem/core';
import { conditionalModelOutput, ddimFromScheduler, type InvMMClassCondition, type InvMMScheduler } from './model.js';
import type { InvMMSamplerKind } from './presets.js';

/**
 * The official DDIM grid (`GaussianDiffusionDDIMSampler.forward`, `ddpm/diffusion.py`):
 * `times = int(torch.linspace(−1, T−1, n+1))` reversed, i.e. n model timesteps from T−1 down,
 * the last step going to "−1" (ᾱ = 1). Computed as torch's float32 `linspace` kernel does
 * (first half from the start, second half from the end) and truncated toward zero like `.int()`.
 * Returns the n+1 values, descending, ending with −1.
 */
export function officialDDIMTimes(numTrainTimesteps: number, numInferenceSteps: number): number[] {
  const f = Math.fround;
  const steps = numInferenceSteps + 1;
  const start = -1;
  const end = numTrainTimesteps - 1;
  const step = f(f(end - start) / (steps - 1));
  const half = Math.floor(steps / 2);
  const out: number[] = [];
  for (let i = 0; i < steps; i++) {
    const v = i < half ? f(start + f(step * i)) : f(end - f(step * (steps - i - 1)));
    out.push(Math.trunc(v));
  }
  return out.reverse();
}

/** Options of {@link sampleVerificationDDIM}. */
export interface SampleVerificationDDIMOptions {
  numInferenceSteps: number;
  sampler: InvMMSamplerKind;
  condition: InvMMClassCondition;
  guidanceScale?: number;
  nullClassId?: number;
}

/**
 * Runs deterministic DDIM from `xT` ([N,H,W,C], not disposed) and returns x̂0 clamped to
 * [−1, 1] (model space). `'official'`: x_next = √ᾱ_next·x̂0 + √(1−ᾱ_next)·ε̂ on
 * {@link officialDDIMTimes}, returning the last x̂0 unclipped-in-loop (then clamped).
 * `'scheduler'`: `DDIMScheduler.step(…, {eta: 0})` with the model's scheduler configuration.
 * @throws NonFiniteError when the sample becomes NaN/Inf.
 */
export async function sampleVerificationDDIM(
  denoiser: Denoiser,
  scheduler: InvMMScheduler,
  xT: tf.Tensor4D,
  o: SampleVerificationDDIMOptions,
): Promise<tf.Tensor4D> {
  const w = o.guidanceScale ?? 1;
  const nullId = o.nullClassId ?? -1;
  const a = scheduler.alphasCumprod;
  let x: tf.Tensor4D = xT;
  const replace = (next: tf.Tensor4D): void => {
    if (x !== xT) x.dispose();
    x = next;
  };
  try {
    if (o.sampler === 'official') {
      const times = officialDDIMTimes(scheduler.numTrainTimesteps, o.numInferenceSteps);
      for (let i = 0; i + 1 < times.length; i++) {
        const t = times[i] as number;
        const tNext = times[i + 1] as number;
        const cur = x;
        const next = tf.tidy(() => {
          const out = conditionalModelOutput(denoiser, cur, t, o.condition, w, nullId);
          const { x0, eps } = scheduler.predictX0AndEps(out, cur, t);
          // The official loop breaks at t_next < 0 and returns clip(x̂0).
          if (tNext < 0) return tf.clipByValue(x0, -1, 1) as tf.Tensor4D;
          const aNext = a[tNext] as number;
          return tf.add(tf.mul(x0, Math.fround(Math.sqrt(aNext))), tf.mul(eps, Math.fround(Math.sqrt(1 - aNext)))) as tf.Tensor4D;
        });
        replace(next);
        await checkFiniteAsync(x, `InvMM verification sampling, step ${i} (t = ${t})`);
      }
    } else {
      const ddim = ddimFromScheduler(scheduler);
      ddim.setTimesteps(o.numInferenceSteps);
      for (const t of ddim.timesteps) {
        const cur = x;
        const next = tf.tidy(() => {
          const out = conditionalModelOutput(denoiser, cur, t, o.condition, w, nullId);
          const s = ddim.step(out, t, cur, { eta: 0 });
          s.predOriginalSample.dispose();
          return s.prevSample;
        });
        replace(next);
        await checkFiniteAsync(x, `InvMM verification sampling (t = ${t})`);
      }
      replace(tf.tidy(() => tf.clipByValue(x, -1, 1)));
    }
    return x === xT ? tf.clone(xT) : x;
  } catch (err) {
    if (x !== xT) x.dispose();
    throw err;
  }
}

async function checkFiniteAsync(t: tf.Tensor, what: string): Promise<void> {
  const flag = tf.tidy(() => tf.sum(tf.mul(t, 0)));
  const v = (await flag.data())[0] as number;
  flag.dispose();
  if (!Number.isFinite(v)) throw new NonFiniteError(`${what}: the sample became non-finite (NaN or Infinity)`);
}
