/**
 * Convolution kernel micro-benchmark: the three kernels a UNet training step spends most of its
 * time in — Conv2D (forward), Conv2DBackpropInput (∂L/∂x, `tf.conv2dTranspose`) and
 * Conv2DBackpropFilter (∂L/∂W) — on the current backend (with diffmem's wasm gradient kernels
 * when core's `selectBackend` chose wasm).
 * @module
 */
import * as tf from '@tensorflow/tfjs-core';
import { bestOf, type Timing } from './timing.js';

/** One convolution shape: NHWC input, HWIO filter. */
export interface ConvCase {
  name: string;
  x: [number, number, number, number];
  filter: [number, number, number, number];
  strides: number;
  pad: 'same' | 'valid' | [[number, number], [number, number], [number, number], [number, number]];
}

/** The default case (the UNet's dominant shape at 32×32) and, with `all`, the other UNet shapes. */
export function convCases(all = false): ConvCase[] {
  const cases: ConvCase[] = [{ name: '3x3 64->64 8x32x32 s1 same', x: [8, 32, 32, 64], filter: [3, 3, 64, 64], strides: 1, pad: 'same' }];
  if (all) {
    cases.push(
      { name: '3x3 64->64 8x32x32 s2 pad1', x: [8, 32, 32, 64], filter: [3, 3, 64, 64], strides: 2, pad: [[0, 0], [1, 1], [1, 1], [0, 0]] },
      { name: '3x3 64->64 8x33x33 s2 valid', x: [8, 33, 33, 64], filter: [3, 3, 64, 64], strides: 2, pad: 'valid' },
      { name: '1x1 64->128 8x32x32 s1', x: [8, 32, 32, 64], filter: [1, 1, 64, 128], strides: 1, pad: 'valid' },
      { name: '3x3 128->128 8x16x16 s1 same', x: [8, 16, 16, 128], filter: [3, 3, 128, 128], strides: 1, pad: 'same' },
      { name: '3x3 4->64 8x32x32 s1 same', x: [8, 32, 32, 4], filter: [3, 3, 4, 64], strides: 1, pad: 'same' },
      { name: '3x3 64->4 8x32x32 s1 same', x: [8, 32, 32, 64], filter: [3, 3, 64, 4], strides: 1, pad: 'same' },
    );
  }
  return cases;
}

/** Timings of one case; `filterGrad` is null when the backend has no Conv2DBackpropFilter kernel. */
export interface ConvKernelResult {
  name: string;
  backend: string;
  forward: Timing;
  inputGrad: Timing;
  filterGrad: Timing | null;
  /** Multiply-adds of the forward convolution (each gradient costs the same). */
  macs: number;
}

/** Times forward / input-gradient / filter-gradient of every case (best of `reps` after 2 warm-ups). */
export async function benchConvKernels(cases: readonly ConvCase[], o: { reps?: number; seed?: number } = {}): Promise<ConvKernelResult[]> {
  const reps = o.reps ?? 10;
  const seed = o.seed ?? 1;
  const out: ConvKernelResult[] = [];
  const run = (f: () => tf.Tensor) => () => {
    const r = f();
    r.dataSync();
    r.dispose();
  };
  for (const c of cases) {
    // Seeded draws (tfjs' own seeded generator keeps this module free of other dependencies).
    const x = tf.randomNormal(c.x, 0, 1, 'float32', seed) as tf.Tensor4D;
    const w = tf.randomNormal(c.filter, 0, 0.1, 'float32', seed + 1) as tf.Tensor4D;
    const y = tf.conv2d(x, w, c.strides, c.pad);
    const dy = tf.randomNormal(y.shape, 0, 1, 'float32', seed + 2) as tf.Tensor4D;
    try {
      const forward = await bestOf(run(() => tf.conv2d(x, w, c.strides, c.pad)), reps);
      const inputGrad = await bestOf(run(() => tf.conv2dTranspose(dy, w, c.x, c.strides, c.pad)), reps);
      let filterGrad: Timing | null = null;
      try {
        filterGrad = await bestOf(
          run(() => tf.engine().runKernel('Conv2DBackpropFilter', { x, dy }, { strides: c.strides, pad: c.pad, dataFormat: 'NHWC', filterShape: c.filter }) as tf.Tensor),
          reps,
        );
      } catch (e) {
        if (!/not registered|not found/i.test(String(e))) throw e;
      }
      const [, oh, ow] = y.shape;
      const macs = c.x[0] * oh * ow * c.filter[0] * c.filter[1] * c.filter[2] * c.filter[3];
      out.push({ name: c.name, backend: tf.getBackend(), forward, inputGrad, filterGrad, macs });
    } finally {
      tf.dispose([x, w, y, dy]);
    }
  }
  return out;
}
