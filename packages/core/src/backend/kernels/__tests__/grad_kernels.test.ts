/**
 * Conformance of the diffmem wasm gradient kernels against tfjs' cpu backend (the reference), on
 * seeded random inputs covering the UNet's conv geometries, plus leak and registration checks.
 */
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import '@tensorflow/tfjs-backend-wasm';
import {
  registerCpuGradKernelFixes,
  registerWasmGradKernels,
  unregisterCpuGradKernelFixes,
  unregisterWasmGradKernels,
  wasmKernelTuning,
  type ConvPad,
} from '../index.js';

type Shape4 = [number, number, number, number];

/** mulberry32: small deterministic PRNG so failures reproduce. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function randomArray(n: number, seed: number): Float32Array {
  const r = rng(seed);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = r() * 2 - 1;
  return out;
}

const size = (s: readonly number[]): number => s.reduce((a, b) => a * b, 1);

/** Runs `fn` with `backend` active and returns the result's values. */
async function on(backend: 'wasm' | 'cpu', fn: () => tf.Tensor): Promise<{ shape: number[]; values: Float32Array }> {
  await tf.setBackend(backend);
  const t = tf.tidy(fn);
  const values = (await t.data()) as Float32Array;
  const shape = t.shape;
  t.dispose();
  return { shape, values: Float32Array.from(values) };
}

/** Max |a−b| must stay within `rel` of the reference's magnitude. */
function expectClose(
  actual: { shape: number[]; values: Float32Array },
  ref: { shape: number[]; values: Float32Array },
  rel = 1e-4,
): void {
  expect(actual.shape).toEqual(ref.shape);
  let maxErr = 0;
  let maxRef = 0;
  for (let i = 0; i < ref.values.length; i++) {
    maxErr = Math.max(maxErr, Math.abs(actual.values[i]! - ref.values[i]!));
    maxRef = Math.max(maxRef, Math.abs(ref.values[i]!));
  }
  expect(Number.isFinite(maxErr)).toBe(true);
  expect(maxErr).toBeLessThanOrEqual(rel * Math.max(maxRef, 1e-3));
}

interface ConvCase {
  name: string;
  x: Shape4;
  filter: Shape4;
  strides: number | [number, number];
  pad: ConvPad;
  rounding?: 'floor' | 'round' | 'ceil';
}

const explicit = (t: number, b: number, l: number, r: number): ConvPad => [
  [0, 0],
  [t, b],
  [l, r],
  [0, 0],
];

const CONV_CASES: ConvCase[] = [
  { name: '3x3 s1 same, odd sizes', x: [2, 9, 7, 5], filter: [3, 3, 5, 6], strides: 1, pad: 'same' },
  // UNet downsample, pad right/bottom by 1 then a 'valid' stride-2 conv:
  { name: '3x3 s2 valid (after r/b pad)', x: [2, 11, 9, 3], filter: [3, 3, 3, 7], strides: 2, pad: 'valid' },
  { name: '3x3 s2 explicit pad 1', x: [3, 10, 7, 5], filter: [3, 3, 5, 7], strides: 2, pad: explicit(1, 1, 1, 1) },
  { name: '3x3 s2 same, even/odd', x: [2, 8, 9, 6], filter: [3, 3, 6, 5], strides: 2, pad: 'same' },
  { name: '1x1 s1 (shortcut)', x: [2, 5, 6, 7], filter: [1, 1, 7, 3], strides: 1, pad: 'valid' },
  { name: '1x1 s2', x: [2, 7, 6, 4], filter: [1, 1, 4, 3], strides: 2, pad: 'valid' },
  { name: '3x3 s1 numeric pad 1', x: [1, 6, 5, 3], filter: [3, 3, 3, 2], strides: 1, pad: 1 },
  { name: '3x3 s1 valid', x: [2, 7, 8, 3], filter: [3, 3, 3, 5], strides: 1, pad: 'valid' },
  { name: '3x3 s1 asymmetric explicit', x: [2, 6, 7, 3], filter: [3, 3, 3, 4], strides: 1, pad: explicit(2, 0, 1, 2) },
  { name: '3x3 s1 pad 3 > k-1 (col2im path)', x: [1, 5, 6, 2], filter: [3, 3, 2, 3], strides: 1, pad: 3 },
  { name: '2x3 kernel, strides [1,2]', x: [2, 7, 9, 3], filter: [2, 3, 3, 4], strides: [1, 2], pad: 'same' },
  { name: '3x3 s3 valid', x: [2, 10, 11, 3], filter: [3, 3, 3, 2], strides: 3, pad: 'valid' },
  { name: '2x2 s2 same (a phase with one tap)', x: [2, 7, 6, 3], filter: [2, 2, 3, 4], strides: 2, pad: 'same' },
  { name: '3x3 s2 pad 3 (col2im path)', x: [2, 9, 8, 3], filter: [3, 3, 3, 4], strides: 2, pad: 3 },
  { name: '5x5 s2 same, 16 channels', x: [2, 11, 10, 16], filter: [5, 5, 16, 17], strides: 2, pad: 'same' },
  { name: '3x3 s2 pad 1, dimRoundingMode ceil', x: [2, 6, 7, 3], filter: [3, 3, 3, 4], strides: 2, pad: 1, rounding: 'ceil' },
  { name: '3x3 s2 pad 1, dimRoundingMode round', x: [2, 6, 7, 3], filter: [3, 3, 3, 4], strides: 2, pad: 1, rounding: 'round' },
  { name: '3x3 s1 same, batch 4, 13 channels', x: [4, 8, 8, 13], filter: [3, 3, 13, 11], strides: 1, pad: 'same' },
];

function makeInputs(c: ConvCase, seed: number): { x: Float32Array; w: Float32Array; dy: Float32Array; dyShape: Shape4 } {
  // Output shape from tfjs' own shape logic, on cpu (cheap).
  const info = tf.backend_util.computeConv2DInfo(c.x, c.filter, c.strides, 1, c.pad, c.rounding);
  const dyShape = info.outShape as Shape4;
  return {
    x: randomArray(size(c.x), seed),
    w: randomArray(size(c.filter), seed + 1),
    dy: randomArray(size(dyShape), seed + 2),
    dyShape,
  };
}

function backpropInput(c: ConvCase, w: Float32Array, dy: Float32Array, dyShape: Shape4): tf.Tensor {
  return tf.engine().runKernel(
    'Conv2DBackpropInput',
    { dy: tf.tensor4d(dy, dyShape), filter: tf.tensor4d(w, c.filter) },
    { strides: c.strides, pad: c.pad, dataFormat: 'NHWC', dimRoundingMode: c.rounding, inputShape: c.x } as unknown as tf.NamedAttrMap,
  ) as tf.Tensor;
}

function backpropFilter(c: ConvCase, x: Float32Array, dy: Float32Array, dyShape: Shape4): tf.Tensor {
  return tf.engine().runKernel(
    'Conv2DBackpropFilter',
    { x: tf.tensor4d(x, c.x), dy: tf.tensor4d(dy, dyShape) },
    { strides: c.strides, pad: c.pad, dataFormat: 'NHWC', dimRoundingMode: c.rounding, filterShape: c.filter } as unknown as tf.NamedAttrMap,
  ) as tf.Tensor;
}

beforeAll(async () => {
  registerWasmGradKernels();
  expect(await tf.setBackend('wasm')).toBe(true);
});

afterAll(async () => {
  await tf.setBackend('wasm');
});

describe('registerWasmGradKernels', () => {
  it('registers its kernels for wasm and is idempotent', () => {
    for (const name of [
      'Conv2DBackpropFilter', 'Conv2DBackpropInput', 'UnsortedSegmentSum', 'Identity', 'Cast', 'ResizeNearestNeighborGrad', 'BatchMatMul',
    ]) {
      expect(tf.getKernel(name, 'wasm')).toBeDefined();
    }
    expect(registerWasmGradKernels()).toEqual([]);
  });

  it('can restore the built-in Conv2DBackpropInput and re-install ours', () => {
    const ours = tf.getKernel('Conv2DBackpropInput', 'wasm').kernelFunc;
    unregisterWasmGradKernels();
    expect(tf.getKernel('Conv2DBackpropInput', 'wasm').kernelFunc).not.toBe(ours);
    expect(tf.getKernel('Conv2DBackpropFilter', 'wasm')).toBeUndefined();
    expect(registerWasmGradKernels().sort()).toEqual(
      ['BatchMatMul', 'Cast', 'Conv2DBackpropFilter', 'Conv2DBackpropInput', 'Identity', 'ResizeNearestNeighborGrad', 'SplitV', 'UnsortedSegmentSum'],
    );
    expect(tf.getKernel('Conv2DBackpropInput', 'wasm').kernelFunc).toBe(ours);
  });
});

describe.each(CONV_CASES)('conv gradients match cpu: $name', (c) => {
  const seed = 1000 + CONV_CASES.indexOf(c) * 10;

  it('Conv2DBackpropInput', async () => {
    const { w, dy, dyShape } = makeInputs(c, seed);
    const got = await on('wasm', () => backpropInput(c, w, dy, dyShape));
    const ref = await on('cpu', () => backpropInput(c, w, dy, dyShape));
    expectClose(got, ref);
  });

  it('Conv2DBackpropFilter', async () => {
    const { x, dy, dyShape } = makeInputs(c, seed);
    const got = await on('wasm', () => backpropFilter(c, x, dy, dyShape));
    const ref = await on('cpu', () => backpropFilter(c, x, dy, dyShape));
    expectClose(got, ref);
  });
});

describe('chunked paths (small chunk budget)', () => {
  const saved = wasmKernelTuning.chunkFloats;
  afterEach(() => {
    wasmKernelTuning.chunkFloats = saved;
  });

  it.each([
    { name: '3x3 s1 same', x: [2, 9, 7, 5], filter: [3, 3, 5, 6], strides: 1, pad: 'same' },
    { name: '3x3 s2 pad 1', x: [2, 9, 8, 3], filter: [3, 3, 3, 4], strides: 2, pad: explicit(1, 1, 1, 1) },
    { name: '3x3 s2 pad 3 (col2im path)', x: [2, 9, 8, 3], filter: [3, 3, 3, 4], strides: 2, pad: 3 },
  ] as ConvCase[])('$name gives the same numbers in several chunks', async (c) => {
    wasmKernelTuning.chunkFloats = 300; // a few output rows / pixels per chunk
    const { x, w, dy, dyShape } = makeInputs(c, 77);
    expectClose(await on('wasm', () => backpropFilter(c, x, dy, dyShape)), await on('cpu', () => backpropFilter(c, x, dy, dyShape)));
    expectClose(await on('wasm', () => backpropInput(c, w, dy, dyShape)), await on('cpu', () => backpropInput(c, w, dy, dyShape)));
  });
});

describe('UnsortedSegmentSum', () => {
  it.each([
    { name: 'float32 rows, repeated and out-of-range ids', xShape: [6, 5], ids: [1, 3, 1, 0, 7, -1], n: 4, dtype: 'float32' },
    { name: 'float32 rank-3 values', xShape: [5, 2, 3], ids: [2, 2, 0, 1, 2], n: 3, dtype: 'float32' },
    { name: 'int32 values', xShape: [4, 3], ids: [0, 1, 0, 1], n: 2, dtype: 'int32' },
  ] as const)('$name', async ({ xShape, ids, n, dtype }) => {
    const vals = randomArray(size(xShape), 5).map((v) => (dtype === 'int32' ? Math.round(v * 100) : v));
    const run = () => tf.unsortedSegmentSum(tf.tensor(vals, [...xShape], dtype), tf.tensor1d([...ids], 'int32'), n);
    expectClose(await on('wasm', run), await on('cpu', run));
  });
});

describe('BatchMatMul matches cpu', () => {
  it.each([
    { name: '2D', a: [7, 5], b: [5, 6], tA: false, tB: false },
    { name: '2D transposeA', a: [5, 7], b: [5, 6], tA: true, tB: false },
    { name: '2D transposeB', a: [7, 5], b: [6, 5], tA: false, tB: true },
    { name: '2D both transposed', a: [5, 7], b: [6, 5], tA: true, tB: true },
    { name: '3D batched', a: [3, 7, 5], b: [3, 5, 6], tA: false, tB: false },
    { name: '3D batched, q·kᵀ', a: [3, 9, 4], b: [3, 9, 4], tA: false, tB: true },
    { name: '3D batched, transposeA', a: [3, 4, 9], b: [3, 4, 6], tA: true, tB: false },
    { name: '4D batched', a: [2, 3, 7, 5], b: [2, 3, 5, 6], tA: false, tB: false },
    { name: 'batched a, shared 2D b', a: [4, 7, 5], b: [5, 6], tA: false, tB: false },
    { name: 'batched a, shared b of batch 1, transposed', a: [4, 7, 5], b: [1, 6, 5], tA: false, tB: true },
    { name: 'shared 2D a, batched b', a: [7, 5], b: [4, 5, 6], tA: false, tB: false },
    { name: 'batch 1 a, batched b, transposeA', a: [1, 5, 7], b: [4, 5, 6], tA: true, tB: false },
  ])('$name', async ({ a, b, tA, tB }) => {
    const av = randomArray(size(a), 21);
    const bv = randomArray(size(b), 22);
    const run = () => tf.matMul(tf.tensor(av, a), tf.tensor(bv, b), tA, tB);
    expectClose(await on('wasm', run), await on('cpu', run), 1e-5);
  });

  it('reusing one buffer as the right-hand matrix in two shapes gives the right answers', async () => {
    // XNNPACK caches packed weights by tensor id; a reshape shares the id with another shape.
    await tf.setBackend('wasm');
    const bv = randomArray(24, 5);
    const av = randomArray(12, 6);
    const b = tf.tensor2d(bv, [4, 6]);
    const first = tf.matMul(tf.tensor2d(av.subarray(0, 8), [2, 4]), b);
    const second = tf.matMul(tf.tensor2d(av, [2, 6]), tf.reshape(b, [6, 4]));
    const got = { shape: second.shape, values: Float32Array.from(await second.data()) };
    tf.dispose([b, first, second]);
    const ref = await on('cpu', () => tf.matMul(tf.tensor2d(av, [2, 6]), tf.tensor2d(bv, [6, 4])));
    expectClose(got, ref, 1e-5);
  });
});

describe('ResizeNearestNeighborGrad is the adjoint of the forward resize', () => {
  /** Brute force: push dy through the transpose of the forward's own gather, found by probing it. */
  async function adjoint(
    backend: 'wasm' | 'cpu',
    xShape: Shape4,
    size: [number, number],
    alignCorners: boolean,
    halfPixelCenters: boolean,
    dy: Float32Array,
  ): Promise<Float32Array> {
    await tf.setBackend(backend);
    const [b, h, w, c] = xShape;
    // Forward-resize an image of pixel indices to learn which input pixel each output pixel copies.
    const ids = tf.tidy(() =>
      tf.image.resizeNearestNeighbor(tf.reshape(tf.range(0, b * h * w * c), xShape) as tf.Tensor4D, size, alignCorners, halfPixelCenters),
    );
    const src = await ids.data();
    ids.dispose();
    const out = new Float32Array(b * h * w * c);
    for (let i = 0; i < src.length; i++) out[src[i]!] = out[src[i]!]! + dy[i]!;
    return out;
  }

  it.each([
    { name: 'x2 upsample, batch 3', x: [3, 4, 5, 6] as Shape4, size: [8, 10] as [number, number], ac: false, hp: false },
    { name: 'odd ratio', x: [2, 3, 5, 2] as Shape4, size: [7, 4] as [number, number], ac: false, hp: false },
    { name: 'alignCorners', x: [2, 4, 3, 3] as Shape4, size: [9, 7] as [number, number], ac: true, hp: false },
    { name: 'halfPixelCenters', x: [2, 4, 3, 3] as Shape4, size: [9, 7] as [number, number], ac: false, hp: true },
  ])('$name, on wasm and on cpu (with the cpu fix)', async ({ x, size: sz, ac, hp }) => {
    registerCpuGradKernelFixes();
    try {
      const dy = randomArray(x[0] * sz[0] * sz[1] * x[3], 9);
      for (const backend of ['wasm', 'cpu'] as const) {
        const want = await adjoint(backend, x, sz, ac, hp, dy);
        const got = await on(backend, () =>
          tf.engine().runKernel('ResizeNearestNeighborGrad', { images: tf.zeros(x), dy: tf.tensor4d(dy, [x[0], sz[0], sz[1], x[3]]) }, {
            alignCorners: ac, halfPixelCenters: hp,
          }) as tf.Tensor,
        );
        expectClose(got, { shape: x, values: want }, 1e-6);
      }
    } finally {
      unregisterCpuGradKernelFixes();
    }
  });

  it("documents the cpu built-in's batch > 1 bug that registerCpuGradKernelFixes works around", async () => {
    // If this starts failing, tfjs fixed its cpu kernel and the fix can be dropped.
    const x: Shape4 = [2, 2, 2, 1];
    const dy = randomArray(2 * 4 * 4, 3);
    const want = await adjoint('cpu', x, [4, 4], false, false, dy);
    const got = await on('cpu', () =>
      tf.engine().runKernel('ResizeNearestNeighborGrad', { images: tf.zeros(x), dy: tf.tensor4d(dy, [2, 4, 4, 1]) }, {
        alignCorners: false, halfPixelCenters: false,
      }) as tf.Tensor,
    );
    const maxErr = Math.max(...got.values.map((v, i) => Math.abs(v - want[i]!)));
    expect(maxErr).toBeGreaterThan(0.01);
  });
});

describe('Identity and same-dtype Cast share the buffer', () => {
  it('Cast to the same dtype shares; to another dtype converts', async () => {
    await tf.setBackend('wasm');
    const backend = tf.backend() as unknown as { numDataIds(): number };
    const a = tf.tensor1d([1.5, -2, 0]);
    const before = backend.numDataIds();
    const same = tf.cast(a, 'float32');
    expect(backend.numDataIds()).toBe(before);
    const asInt = tf.cast(a, 'int32');
    const asBool = tf.cast(a, 'bool');
    expect(Array.from(await asInt.data())).toEqual([1, -2, 0]);
    expect(Array.from(await asBool.data())).toEqual([1, 1, 0]);
    expect(Array.from(await same.data())).toEqual([1.5, -2, 0]);
    tf.dispose([a, same, asInt, asBool]);
  });

  it('tf.clone on wasm allocates no new data and keeps values after the source is disposed', async () => {
    await tf.setBackend('wasm');
    const backend = tf.backend() as unknown as { numDataIds(): number };
    const a = tf.tensor1d([1, 2, 3]);
    const before = backend.numDataIds();
    const b = tf.clone(a);
    expect(backend.numDataIds()).toBe(before);
    a.dispose();
    expect(Array.from(await b.data())).toEqual([1, 2, 3]);
    b.dispose();
    expect(backend.numDataIds()).toBe(before - 1);
  });
});

describe('unsupported attributes throw instead of computing wrong numbers', () => {
  beforeEach(async () => {
    await tf.setBackend('wasm');
  });

  it('rejects NCHW', () => {
    const dy = tf.zeros([1, 2, 4, 4]);
    const w = tf.zeros([3, 3, 2, 2]);
    const x = tf.zeros([1, 2, 4, 4]);
    expect(() =>
      tf.engine().runKernel('Conv2DBackpropFilter', { x, dy }, {
        strides: 1, pad: 'same', dataFormat: 'NCHW', filterShape: [3, 3, 2, 2],
      } as unknown as tf.NamedAttrMap),
    ).toThrow(/NHWC/);
    expect(() =>
      tf.engine().runKernel('Conv2DBackpropInput', { dy, filter: w }, {
        strides: 1, pad: 'same', dataFormat: 'NCHW', inputShape: [1, 2, 4, 4],
      } as unknown as tf.NamedAttrMap),
    ).toThrow(/NHWC/);
    tf.dispose([dy, w, x]);
  });

  it('rejects dilation and a dy that does not match the forward output', () => {
    const x = tf.zeros([1, 5, 5, 2]);
    const dy = tf.zeros([1, 5, 5, 3]);
    expect(() =>
      tf.engine().runKernel('Conv2DBackpropFilter', { x, dy }, {
        strides: 1, pad: 'same', dataFormat: 'NHWC', filterShape: [3, 3, 2, 3], dilations: 2,
      } as unknown as tf.NamedAttrMap),
    ).toThrow(/dilation/);
    expect(() =>
      tf.engine().runKernel('Conv2DBackpropFilter', { x, dy }, {
        strides: 2, pad: 'same', dataFormat: 'NHWC', filterShape: [3, 3, 2, 3],
      } as unknown as tf.NamedAttrMap),
    ).toThrow(/does not match/);
    tf.dispose([x, dy]);
  });

  it('both conv gradients name a missing or non-float32 input', () => {
    const x = tf.zeros([1, 4, 4, 2]);
    const dy = tf.zeros([1, 4, 4, 3]);
    const w = tf.zeros([3, 3, 2, 3]);
    const xInt = tf.zeros([1, 4, 4, 2], 'int32');
    const wInt = tf.zeros([3, 3, 2, 3], 'int32');
    const filterAttrs = { strides: 1, pad: 'same', filterShape: [3, 3, 2, 3] } as unknown as tf.NamedAttrMap;
    const inputAttrs = { strides: 1, pad: 'same', inputShape: [1, 4, 4, 2] } as unknown as tf.NamedAttrMap;
    expect(() => tf.engine().runKernel('Conv2DBackpropFilter', { x }, filterAttrs)).toThrow(/needs inputs x and dy/);
    expect(() => tf.engine().runKernel('Conv2DBackpropInput', { dy }, inputAttrs)).toThrow(/needs inputs dy and filter/);
    expect(() => tf.engine().runKernel('Conv2DBackpropFilter', { x: xInt, dy }, filterAttrs)).toThrow(/'x' must be float32/);
    expect(() => tf.engine().runKernel('Conv2DBackpropInput', { dy, filter: wInt }, inputAttrs)).toThrow(/'filter' must be float32/);
    tf.dispose([x, dy, w, xInt, wInt]);
  });

  it('an empty batch gives all-zero gradients of the right shape', () => {
    const before = tf.memory().numTensors;
    const x = tf.zeros([0, 4, 4, 2]);
    const dy = tf.zeros([0, 4, 4, 3]);
    const w = tf.ones([3, 3, 2, 3]);
    const dW = tf.engine().runKernel('Conv2DBackpropFilter', { x, dy }, { strides: 1, pad: 'same', filterShape: [3, 3, 2, 3] } as unknown as tf.NamedAttrMap) as tf.Tensor;
    const dx = tf.engine().runKernel('Conv2DBackpropInput', { dy, filter: w }, { strides: 1, pad: 'same', inputShape: [0, 4, 4, 2] } as unknown as tf.NamedAttrMap) as tf.Tensor;
    expect(dW.shape).toEqual([3, 3, 2, 3]);
    expect(Array.from(dW.dataSync()).every((v) => v === 0)).toBe(true);
    expect(dx.shape).toEqual([0, 4, 4, 2]);
    tf.dispose([x, dy, w, dW, dx]);
    expect(tf.memory().numTensors).toBe(before);
  });
});

describe('no leaks', () => {
  interface WasmBackendView {
    numDataIds(): number;
    wasm: { HEAPU8: Uint8Array };
  }

  it('gradient of a conv (through tfjs autograd) leaves no tensors and a stable heap', async () => {
    await tf.setBackend('wasm');
    const backend = tf.backend() as unknown as WasmBackendView;
    const x = tf.tensor4d(randomArray(2 * 12 * 12 * 8, 1), [2, 12, 12, 8]);
    const w = tf.tensor4d(randomArray(3 * 3 * 8 * 8, 2), [3, 3, 8, 8]);
    const dyS2 = tf.tensor4d(randomArray(2 * 6 * 6 * 8, 3), [2, 6, 6, 8]);
    const dyS1 = tf.tensor4d(randomArray(2 * 12 * 12 * 8, 4), [2, 12, 12, 8]);
    // fused.conv2d carries its own gradient (customGrad), which calls both backprop kernels.
    const step = () => {
      const s1 = tf.grads((...t: tf.Tensor[]) => tf.fused.conv2d({ x: t[0] as tf.Tensor4D, filter: t[1] as tf.Tensor4D, strides: 1, pad: 'same' }));
      const s2 = tf.grads((...t: tf.Tensor[]) =>
        tf.fused.conv2d({ x: t[0] as tf.Tensor4D, filter: t[1] as tf.Tensor4D, strides: 2, pad: [[0, 0], [1, 1], [1, 1], [0, 0]] }),
      );
      tf.dispose([...s1([x, w], dyS1), ...s2([x, w], dyS2)]);
    };
    step();
    step();
    const tensors = tf.memory().numTensors;
    const dataIds = backend.numDataIds();
    const heapBytes = backend.wasm.HEAPU8.byteLength;
    for (let i = 0; i < 10; i++) step();
    expect(tf.memory().numTensors).toBe(tensors);
    expect(backend.numDataIds()).toBe(dataIds);
    expect(backend.wasm.HEAPU8.byteLength).toBe(heapBytes);
    tf.dispose([x, w, dyS1, dyS2]);
  });

  it('a throwing kernel frees its intermediates', async () => {
    await tf.setBackend('wasm');
    const backend = tf.backend() as unknown as WasmBackendView;
    const x = tf.zeros([1, 5, 5, 2]);
    const dy = tf.zeros([1, 5, 5, 3]);
    const before = backend.numDataIds();
    expect(() =>
      tf.engine().runKernel('Conv2DBackpropFilter', { x, dy }, {
        strides: 1, pad: 'same', dataFormat: 'NHWC', filterShape: [3, 3, 5, 3],
      } as unknown as tf.NamedAttrMap),
    ).toThrow();
    expect(backend.numDataIds()).toBe(before);
    tf.dispose([x, dy]);
  });
});
