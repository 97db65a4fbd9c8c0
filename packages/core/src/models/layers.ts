/**
 * The torch layers the UNet is made of — `nn.Conv2d`, `nn.Linear`, `nn.Embedding` — in NHWC,
 * with torch's default initialisation and state-dict names.
 * @module
 */
import * as tf from '@tensorflow/tfjs-core';
import { joinName, torchDefaultBound, type ParamRegistry, type ParamSource } from './modeling_utils.js';

/**
 * True while a gradient tape is recording (inside `tf.grad`, `tf.variableGrads`, …).
 *
 * Fused conv/matMul ops differentiate through a custom gradient that computes the gradients of
 * *all* inputs, so `tf.grad` w.r.t. the input alone would still run `Conv2DBackpropFilter` (absent
 * on wasm) and waste a filter gradient. Unfused ops get per-input lazy gradients, so under a tape
 * the layers use them; outside a tape they use the faster fused kernels.
 */
export function isRecordingGradients(): boolean {
  return tf.engine().state.gradientDepth > 0;
}

/** Padding of a 2-D convolution: symmetric `p`, or explicit [top, bottom, left, right]. */
export type Conv2dPadding = number | readonly [number, number, number, number];

/**
 * `nn.Conv2d(in, out, kernel, stride, padding)` on NHWC input. Weights `[kh, kw, I, O]`
 * (torch `[O, I, kh, kw]`), kaiming-uniform(a=√5) init, i.e. U(±1/√(I·kh·kw)) for weight and bias.
 */
export class Conv2d {
  readonly weight: string;
  readonly bias: string | null;
  private readonly pad: [[number, number], [number, number], [number, number], [number, number]] | 'valid';

  constructor(
    reg: ParamRegistry,
    readonly prefix: string,
    readonly inChannels: number,
    readonly outChannels: number,
    readonly kernelSize: number,
    readonly options: { stride?: number; padding?: Conv2dPadding; bias?: boolean } = {},
  ) {
    const bound = torchDefaultBound(inChannels * kernelSize * kernelSize);
    this.weight = reg.add({
      name: joinName(prefix, 'weight'),
      shape: [outChannels, inChannels, kernelSize, kernelSize],
      layout: 'conv2d',
      init: { kind: 'uniform', bound },
      trainable: true,
    });
    this.bias =
      options.bias === false
        ? null
        : reg.add({ name: joinName(prefix, 'bias'), shape: [outChannels], layout: 'plain', init: { kind: 'uniform', bound }, trainable: true });
    const p = options.padding ?? 0;
    const [t, b, l, r] = typeof p === 'number' ? [p, p, p, p] : p;
    // Explicit padding reproduces torch exactly; TF's 'same' pads asymmetrically for stride 2.
    this.pad = t === 0 && b === 0 && l === 0 && r === 0 ? 'valid' : [[0, 0], [t, b], [l, r], [0, 0]];
  }

  forward(p: ParamSource, x: tf.Tensor4D): tf.Tensor4D {
    const stride = this.options.stride ?? 1;
    const filter = p.get(this.weight) as tf.Tensor4D;
    const bias = this.bias === null ? undefined : p.get(this.bias);
    if (isRecordingGradients()) {
      return tf.tidy(() => {
        const y = tf.conv2d(x, filter, stride, this.pad);
        return bias ? tf.add(y, bias) : y;
      });
    }
    return tf.fused.conv2d({ x, filter, strides: stride, pad: this.pad, bias });
  }
}

/**
 * `nn.Linear(in, out)` on the last axis. Weight `[I, O]` (torch `[O, I]`); U(±1/√I) init.
 */
export class Linear {
  readonly weight: string;
  readonly bias: string | null;

  constructor(
    reg: ParamRegistry,
    readonly prefix: string,
    readonly inFeatures: number,
    readonly outFeatures: number,
    bias = true,
  ) {
    const bound = torchDefaultBound(inFeatures);
    this.weight = reg.add({
      name: joinName(prefix, 'weight'),
      shape: [outFeatures, inFeatures],
      layout: 'linear',
      init: { kind: 'uniform', bound },
      trainable: true,
    });
    this.bias = bias
      ? reg.add({ name: joinName(prefix, 'bias'), shape: [outFeatures], layout: 'plain', init: { kind: 'uniform', bound }, trainable: true })
      : null;
  }

  /** y = x·W + b for x of any rank ≥ 2 (leading axes are batch axes). */
  forward<T extends tf.Tensor>(p: ParamSource, x: T): T {
    return tf.tidy(() => {
      const lead = x.shape.slice(0, -1);
      const x2 = x.rank === 2 ? (x as unknown as tf.Tensor2D) : tf.reshape(x, [-1, this.inFeatures]) as tf.Tensor2D;
      const b = this.bias === null ? undefined : p.get(this.bias);
      const w = p.get(this.weight) as tf.Tensor2D;
      const y = isRecordingGradients() ? (b ? tf.add(tf.matMul(x2, w), b) : tf.matMul(x2, w)) : tf.fused.matMul({ a: x2, b: w, bias: b });
      return (x.rank === 2 ? y : tf.reshape(y, [...lead, this.outFeatures])) as T;
    });
  }
}

/**
 * `nn.Embedding(num, dim)`: table `[num, dim]`, N(0, 1) init. Lookup is a one-hot matmul so its
 * gradient is a matmul too (TF.js' gather gradient needs UnsortedSegmentSum, absent on wasm).
 */
export class Embedding {
  readonly weight: string;

  constructor(
    reg: ParamRegistry,
    readonly prefix: string,
    readonly numEmbeddings: number,
    readonly embeddingDim: number,
  ) {
    this.weight = reg.add({
      name: joinName(prefix, 'weight'),
      shape: [numEmbeddings, embeddingDim],
      layout: 'plain',
      init: { kind: 'normal', std: 1 },
      trainable: true,
    });
  }

  /** Rows of the table for integer `ids` [N] → [N, dim]. */
  forward(p: ParamSource, ids: tf.Tensor1D): tf.Tensor2D {
    return tf.tidy(() => {
      // int32 one-hot then cast: wasm's OneHot kernel writes zeros when asked for float32 directly.
      const oneHot = tf.cast(tf.oneHot(tf.cast(ids, 'int32'), this.numEmbeddings), 'float32') as tf.Tensor2D;
      return tf.matMul(oneHot, p.get(this.weight) as tf.Tensor2D);
    });
  }
}
