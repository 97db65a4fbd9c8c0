/**
 * Conformance of the fused GroupNorm and SiLU kernels (DiffmemGroupNorm, DiffmemSiLU and their
 * gradients), one suite run over the wasm and cpu backends: forward and gradients against the
 * composite ops they replace, against float64 references (values and central differences),
 * memory, registration/fallback, and typed errors.
 */
import * as tf from '@tensorflow/tfjs-core';
import { MathBackendCPU } from '@tensorflow/tfjs-backend-cpu';
import '@tensorflow/tfjs-backend-wasm';
import '../../gradients.js';
import { DTypeError, ShapeError, ValueRangeError } from '../../../errors.js';
import { groupNorm, groupNormComposite } from '../../../models/normalization.js';
import { silu, siluComposite } from '../../../models/activations.js';
import {
  DiffmemGroupNorm,
  DiffmemGroupNormGrad,
  DiffmemSiLU,
  DiffmemSiLUGrad,
  FUSED_OP_KERNEL_CONFIGS,
  fusedKernelAvailable,
  registerFusedOpKernels,
  unregisterFusedOpKernels,
} from '../index.js';
import { seededUniformArray } from '../../../testing/index.js';


type Shape4 = [number, number, number, number];
const size = (s: readonly number[]): number => s.reduce((a, b) => a * b, 1);

/** max |a − b| / max(max |b|, floor). */
function relErr(a: ArrayLike<number>, b: ArrayLike<number>, floor = 1e-6): number {
  expect(a.length).toBe(b.length);
  let err = 0;
  let mag = floor;
  for (let i = 0; i < b.length; i++) {
    err = Math.max(err, Math.abs(a[i]! - b[i]!));
    mag = Math.max(mag, Math.abs(b[i]!));
  }
  return Number.isFinite(err) ? err / mag : Infinity;
}

/** Float64 GroupNorm on NHWC data (the reference; also the function for finite differences). */
function groupNormF64(x: ArrayLike<number>, shape: Shape4, gamma: ArrayLike<number>, beta: ArrayLike<number>, groups: number, eps: number): Float64Array {
  const [n, h, w, c] = shape;
  const s = h * w;
  const cg = c / groups;
  const y = new Float64Array(size(shape));
  for (let i = 0; i < n; i++) {
    for (let g = 0; g < groups; g++) {
      let sum = 0;
      for (let p = 0; p < s; p++) for (let j = 0; j < cg; j++) sum += x[(i * s + p) * c + g * cg + j]!;
      const mean = sum / (s * cg);
      let sq = 0;
      for (let p = 0; p < s; p++) for (let j = 0; j < cg; j++) sq += (x[(i * s + p) * c + g * cg + j]! - mean) ** 2;
      const rstd = 1 / Math.sqrt(sq / (s * cg) + eps);
      for (let p = 0; p < s; p++) {
        for (let j = 0; j < cg; j++) {
          const k = (i * s + p) * c + g * cg + j;
          y[k] = (x[k]! - mean) * rstd * gamma[g * cg + j]! + beta[g * cg + j]!;
        }
      }
    }
  }
  return y;
}

interface GNCase {
  name: string;
  shape: Shape4;
  groups: number;
  eps: number;
  /** Scale and offset of x: an offset well above the spread stresses the statistics. */
  scale: number;
  offset: number;
}

const GN_CASES: GNCase[] = [
  { name: '[2,4,4,8] G=4', shape: [2, 4, 4, 8], groups: 4, eps: 1e-5, scale: 1, offset: 0 },
  { name: '[3,5,3,6] G=3 eps=1e-6 (non-square)', shape: [3, 5, 3, 6], groups: 3, eps: 1e-6, scale: 2, offset: 0.5 },
  { name: '[1,8,8,32] G=32 (one channel per group)', shape: [1, 8, 8, 32], groups: 32, eps: 1e-5, scale: 1, offset: 0 },
  { name: '[2,3,3,16] G=1 eps=0.1 (layer norm)', shape: [2, 3, 3, 16], groups: 1, eps: 0.1, scale: 1, offset: 0 },
  { name: '[2,16,16,32] G=8 offset 20 (UNet-sized, off-centre)', shape: [2, 16, 16, 32], groups: 8, eps: 1e-6, scale: 0.5, offset: 20 },
];

const BACKENDS = ['wasm', 'cpu'] as const;

afterEach(() => registerFusedOpKernels());

describe.each(BACKENDS)('fused GroupNorm / SiLU on %s', (backend) => {
  beforeAll(async () => {
    expect(await tf.setBackend(backend)).toBe(true);
    registerFusedOpKernels();
  });

  it('registers on first use, for this backend', () => {
    expect(fusedKernelAvailable(DiffmemGroupNorm, backend)).toBe(true);
    for (const name of [DiffmemGroupNorm, DiffmemGroupNormGrad, DiffmemSiLU, DiffmemSiLUGrad]) {
      expect(tf.getKernel(name, backend)).toBeDefined();
    }
  });

  it.each(GN_CASES)('GroupNorm forward $name: matches the composite and a float64 reference', async (tc) => {
    const [, , , c] = tc.shape;
    const xv = seededUniformArray(size(tc.shape), 1, tc.scale, tc.offset);
    const gv = seededUniformArray(c, 2, 0.5, 1);
    const bv = seededUniformArray(c, 3, 0.5);
    const x = tf.tensor4d(xv, tc.shape);
    const gamma = tf.tensor1d(gv);
    const beta = tf.tensor1d(bv);
    const before = tf.memory().numTensors;
    const fusedT = groupNorm(x, gamma, beta, tc.groups, tc.eps);
    expect(tf.memory().numTensors).toBe(before + 1);
    const compositeT = groupNormComposite(x, gamma, beta, tc.groups, tc.eps);
    const fused = await fusedT.data();
    const composite = await compositeT.data();
    expect(fusedT.shape).toEqual(tc.shape);
    const ref = groupNormF64(xv, tc.shape, gv, bv, tc.groups, tc.eps);
    const errFused = relErr(fused, ref);
    const errComposite = relErr(composite, ref);
    expect(relErr(fused, composite)).toBeLessThan(1e-5 + errComposite);
    // float64 statistics: within a couple of float32 roundings of the exact result, and never
    // worse than the float32 composite.
    expect(errFused).toBeLessThan(5e-7);
    expect(errFused).toBeLessThanOrEqual(errComposite + 1e-7);
    tf.dispose([x, gamma, beta, fusedT, compositeT]);
    expect(tf.memory().numTensors).toBe(before - 3);
  });

  it.each(GN_CASES)('GroupNorm gradients $name: dx, dγ, dβ match the composite\'s autodiff', async (tc) => {
    const [, , , c] = tc.shape;
    const x = tf.tensor4d(seededUniformArray(size(tc.shape), 11, tc.scale, tc.offset), tc.shape);
    const gamma = tf.tensor1d(seededUniformArray(c, 12, 0.5, 1));
    const beta = tf.tensor1d(seededUniformArray(c, 13, 0.5));
    const weight = tf.tensor4d(seededUniformArray(size(tc.shape), 14), tc.shape); // a non-uniform dy
    const loss = (norm: typeof groupNorm) => (xx: tf.Tensor, gg: tf.Tensor, bb: tf.Tensor): tf.Scalar =>
      tf.sum(tf.mul(norm(xx as tf.Tensor4D, gg, bb, tc.groups, tc.eps), weight));
    const before = tf.memory().numTensors;
    const fused = tf.grads(loss(groupNorm))([x, gamma, beta]);
    expect(tf.memory().numTensors).toBe(before + 3);
    const composite = tf.grads(loss(groupNormComposite))([x, gamma, beta]);
    for (let i = 0; i < 3; i++) {
      expect(fused[i]!.shape).toEqual(composite[i]!.shape);
      const err = relErr(await fused[i]!.data(), await composite[i]!.data());
      // The composite's own float32 error grows with offset/scale (catastrophic cancellation in x − μ).
      expect({ input: ['x', 'gamma', 'beta'][i], ok: err < (tc.offset > 10 ? 2e-4 : 1e-5) || err }).toEqual({ input: ['x', 'gamma', 'beta'][i], ok: true });
    }
    tf.dispose([...fused, ...composite, x, gamma, beta, weight]);
    expect(tf.memory().numTensors).toBe(before - 4);
  });

  it('GroupNorm gradients match float64 central differences (tiny case)', async () => {
    const shape: Shape4 = [2, 2, 3, 4];
    const groups = 2;
    const eps = 1e-3;
    const c = shape[3];
    const xv = Array.from(seededUniformArray(size(shape), 21));
    const gv = Array.from(seededUniformArray(c, 22, 0.5, 1));
    const bv = Array.from(seededUniformArray(c, 23));
    const wv = Array.from(seededUniformArray(size(shape), 24));
    const f = (xa: number[], ga: number[], ba: number[]): number => {
      const y = groupNormF64(xa, shape, ga, ba, groups, eps);
      let s = 0;
      for (let i = 0; i < y.length; i++) s += y[i]! * wv[i]!;
      return s;
    };
    const numeric = (args: [number[], number[], number[]], which: 0 | 1 | 2): number[] => {
      const h = 1e-6;
      return args[which].map((_, i) => {
        const plus = args.map((a) => a.slice()) as [number[], number[], number[]];
        const minus = args.map((a) => a.slice()) as [number[], number[], number[]];
        plus[which][i]! += h;
        minus[which][i]! -= h;
        return (f(...plus) - f(...minus)) / (2 * h);
      });
    };
    const w = tf.tensor4d(wv, shape);
    const [dx, dg, db] = tf.grads((xx: tf.Tensor, gg: tf.Tensor, bb: tf.Tensor) =>
      tf.sum(tf.mul(groupNorm(xx as tf.Tensor4D, gg, bb, groups, eps), w)),
    )([tf.tensor4d(xv, shape), tf.tensor1d(gv), tf.tensor1d(bv)]);
    const args: [number[], number[], number[]] = [xv.map(Math.fround), gv.map(Math.fround), bv.map(Math.fround)];
    expect(relErr(await dx!.data(), numeric(args, 0))).toBeLessThan(1e-5);
    expect(relErr(await dg!.data(), numeric(args, 1))).toBeLessThan(1e-5);
    expect(relErr(await db!.data(), numeric(args, 2))).toBeLessThan(1e-5);
    tf.dispose([w, dx!, dg!, db!]);
  });

  it('GroupNorm of constant groups: y = β, dx = rstd·(dx̂ − mean_g dx̂) with rstd = 1/√eps', async () => {
    const x = tf.fill([1, 2, 2, 4], 3.5) as tf.Tensor4D;
    const gamma = tf.ones([4]);
    const beta = tf.tensor1d([0.1, 0.2, 0.3, 0.4]);
    const y = groupNorm(x, gamma, beta, 2, 1e-5);
    expect(Array.from(await y.data())).toEqual(Array.from({ length: 16 }, (_, i) => Math.fround([0.1, 0.2, 0.3, 0.4][i % 4]!)));
    const before = tf.memory().numTensors;
    // Only dx requested: the dγ, dβ the backward kernel also produces must be freed.
    const [dx] = tf.grads((xx: tf.Tensor) => tf.sum(tf.square(groupNorm(xx as tf.Tensor4D, gamma, beta, 2, 1e-5))))([x]);
    expect(tf.memory().numTensors).toBe(before + 1);
    // dy = 2y = 2β; x̂ = 0, so dx = (2β_c − mean_g 2β)/√eps = ±0.1/√eps within each group.
    const step = 0.1 / Math.sqrt(1e-5);
    expect(relErr(await dx!.data(), Array.from({ length: 16 }, (_, i) => (i % 2 === 0 ? -step : step)))).toBeLessThan(1e-5);
    tf.dispose([x, gamma, beta, y, dx!]);
  });

  it('SiLU forward and gradient match the composite, incl. extreme inputs', async () => {
    const xv = seededUniformArray(4 * 8 * 8 * 6, 31, 6);
    xv.set([0, -0, 1e-8, -1e-8, 30, -30, 100, -100, 1e4, -1e4, 88.7, -88.7, 1e30, -1e30]);
    const x = tf.tensor4d(xv, [4, 8, 8, 6]);
    const dyv = seededUniformArray(xv.length, 32);
    const dy = tf.tensor4d(dyv, [4, 8, 8, 6]);
    const before = tf.memory().numTensors;
    const y = silu(x);
    expect(tf.memory().numTensors).toBe(before + 1);
    const yRef = siluComposite(x);
    expect(relErr(await y.data(), await yRef.data())).toBeLessThan(1e-6);
    const [dx] = tf.grads((xx: tf.Tensor) => tf.sum(tf.mul(silu(xx), dy)))([x]);
    const [dxRef] = tf.grads((xx: tf.Tensor) => tf.sum(tf.mul(siluComposite(xx), dy)))([x]);
    const got = await dx!.data();
    const ref = await dxRef!.data();
    // Exact float64 derivative, for the extreme entries the composite may get wrong.
    const exact = Array.from(xv, (v, i) => {
      const s = 1 / (1 + Math.exp(-v));
      return dyv[i]! * s * (1 + v * (1 - s));
    });
    expect(Array.from(got).every(Number.isFinite)).toBe(true);
    expect(relErr(got, exact)).toBeLessThan(1e-6);
    expect(relErr(got.subarray(14), ref.subarray(14))).toBeLessThan(1e-5);
    tf.dispose([y, yRef, dx!, dxRef!]);
    expect(tf.memory().numTensors).toBe(before);
    tf.dispose([x, dy]);
  });

  it('SiLU gradient matches float64 central differences', async () => {
    const xv = Array.from(seededUniformArray(40, 41, 5));
    const x = tf.tensor1d(xv);
    const [dx] = tf.grads((xx: tf.Tensor) => tf.sum(silu(xx)))([x]);
    const h = 1e-6;
    const f = (v: number): number => v / (1 + Math.exp(-v));
    const numeric = xv.map((v) => (f(Math.fround(v) + h) - f(Math.fround(v) - h)) / (2 * h));
    expect(relErr(await dx!.data(), numeric)).toBeLessThan(1e-6);
    tf.dispose([x, dx!]);
  });

  it('SiLU of a non-float32 tensor is a DTypeError', () => {
    const x = tf.tensor1d([-2, 0, 3], 'int32');
    expect(() => silu(x)).toThrow(DTypeError);
    expect(() => silu(x)).toThrow(/silu: x must be float32, got int32/);
    x.dispose();
  });

  it('the models run the fused kernels when registered and the composite after unregister', async () => {
    const x = tf.tensor4d(seededUniformArray(2 * 4 * 4 * 8, 51), [2, 4, 4, 8]);
    const gamma = tf.ones([8]);
    const beta = tf.zeros([8]);
    const kernelsOf = async (): Promise<string[]> =>
      (await tf.profile(() => silu(groupNorm(x, gamma, beta, 4, 1e-5)))).kernelNames;
    const fusedNames = await kernelsOf();
    expect(fusedNames).toEqual(expect.arrayContaining([DiffmemGroupNorm, DiffmemSiLU]));
    expect(fusedNames).not.toContain('Sigmoid');
    const fused = await tf.tidy(() => silu(groupNorm(x, gamma, beta, 4, 1e-5))).data();

    unregisterFusedOpKernels();
    expect(fusedKernelAvailable(DiffmemGroupNorm, backend)).toBe(false); // sticky: not re-registered
    const compositeNames = await kernelsOf();
    expect(compositeNames).not.toContain(DiffmemGroupNorm);
    expect(compositeNames).toEqual(expect.arrayContaining(['Mean', 'Sigmoid']));
    const composite = await tf.tidy(() => silu(groupNorm(x, gamma, beta, 4, 1e-5))).data();
    expect(relErr(fused, composite)).toBeLessThan(1e-5);

    expect(registerFusedOpKernels().length).toBe(FUSED_OP_KERNEL_CONFIGS.length);
    expect(registerFusedOpKernels()).toEqual([]); // idempotent
    tf.dispose([x, gamma, beta]);
  });

  it('bad inputs throw typed errors naming the problem', () => {
    const x = tf.zeros([1, 2, 2, 4]) as tf.Tensor4D;
    const g = tf.ones([4]);
    const b = tf.zeros([4]);
    const rank3 = tf.zeros([2, 2, 4]) as unknown as tf.Tensor4D;
    const intX = tf.zeros([1, 2, 2, 4], 'int32') as tf.Tensor4D;
    const intG = tf.ones([4], 'int32');
    const shortG = tf.ones([3]);
    const matB = tf.zeros([1, 4]);
    const before = tf.memory().numTensors;
    expect(() => groupNorm(rank3, g, b, 2, 1e-5)).toThrow(ShapeError);
    expect(() => groupNorm(intX, g, b, 2, 1e-5)).toThrow(DTypeError);
    expect(() => groupNorm(x, intG, b, 2, 1e-5)).toThrow(/gamma must be float32/);
    expect(() => groupNorm(x, shortG, b, 2, 1e-5)).toThrow(ShapeError);
    expect(() => groupNorm(x, g, matB, 2, 1e-5)).toThrow(/beta must have shape \[4\]/);
    expect(() => groupNorm(x, g, b, 3, 1e-5)).toThrow(ValueRangeError);
    expect(() => groupNorm(x, g, b, 0, 1e-5)).toThrow(/numGroups = 0/);
    expect(() => groupNorm(x, g, b, 2, -1)).toThrow(ValueRangeError);
    expect(() => groupNorm(x, g, b, 2, Number.NaN)).toThrow(/eps must be finite/);
    expect(tf.memory().numTensors).toBe(before);
    tf.dispose([x, g, b, rank3, intX, intG, shortG, matB]);
  });

  it('the kernels themselves (via runKernel) reject bad inputs with typed errors', () => {
    const x = tf.zeros([1, 2, 2, 4]);
    const g = tf.ones([4]);
    const dy3 = tf.zeros([1, 2, 4]);
    const before = tf.memory().numTensors;
    const run = (name: string, inputs: Record<string, tf.Tensor>, attrs: Record<string, number> = {}) => () =>
      tf.engine().runKernel(name, inputs, attrs);
    expect(run(DiffmemGroupNorm, { x, gamma: g }, { numGroups: 2, eps: 1e-5 })).toThrow(/missing input 'beta'/);
    expect(run(DiffmemGroupNorm, { x, gamma: g, beta: g }, { numGroups: 3, eps: 1e-5 })).toThrow(ValueRangeError);
    expect(run(DiffmemGroupNorm, { x, gamma: g, beta: tf.zeros([2]) }, { numGroups: 2, eps: 1e-5 })).toThrow(ShapeError);
    expect(run(DiffmemGroupNormGrad, { dy: dy3, x, gamma: g }, { numGroups: 2, eps: 1e-5 })).toThrow(/dy \[1,2,4\] must have the shape of x/);
    expect(run(DiffmemSiLU, { x: tf.zeros([3], 'int32') })).toThrow(DTypeError);
    expect(run(DiffmemSiLUGrad, { dy: dy3, x })).toThrow(ShapeError);
    expect(tf.memory().numTensors).toBe(before + 2); // the two inline zeros
    tf.dispose([x, g, dy3]);
  });
});

describe('a backend without the fused kernels', () => {
  afterAll(async () => {
    tf.removeBackend('nofused');
    await tf.setBackend('wasm');
  });

  it('falls back to the composite ops (forward and gradients)', async () => {
    registerFusedOpKernels();
    tf.registerBackend('nofused', () => new MathBackendCPU());
    // The cpu kernels (ours included) under a new backend name, then ours removed.
    tf.copyRegisteredKernels('cpu', 'nofused');
    for (const name of [DiffmemGroupNorm, DiffmemGroupNormGrad, DiffmemSiLU, DiffmemSiLUGrad]) tf.unregisterKernel(name, 'nofused');
    expect(await tf.setBackend('nofused')).toBe(true);
    expect(fusedKernelAvailable(DiffmemGroupNorm, 'nofused')).toBe(false);
    const x = tf.tensor4d(seededUniformArray(2 * 3 * 3 * 4, 61), [2, 3, 3, 4]);
    const gamma = tf.tensor1d(seededUniformArray(4, 62, 0.5, 1));
    const beta = tf.tensor1d(seededUniformArray(4, 63));
    const f = (xx: tf.Tensor, gg: tf.Tensor, bb: tf.Tensor): tf.Scalar => tf.sum(tf.square(silu(groupNorm(xx as tf.Tensor4D, gg, bb, 2, 1e-5))));
    const prof = await tf.profile(() => tf.grads(f)([x, gamma, beta]));
    expect(prof.kernelNames).not.toContain(DiffmemGroupNorm);
    expect(prof.kernelNames).toEqual(expect.arrayContaining(['Mean', 'Sigmoid']));
    const fallback = await Promise.all(tf.grads(f)([x, gamma, beta]).map((t) => t.data()));
    const fallbackY = await tf.tidy(() => silu(groupNorm(x, gamma, beta, 2, 1e-5))).data();
    const values = await Promise.all([x, gamma, beta].map((t) => t.data()));

    await tf.setBackend('cpu');
    const [x2, g2, b2] = values.map((v, i) => tf.tensor(v, [x, gamma, beta][i]!.shape));
    const fused = await Promise.all(tf.grads(f)([x2!, g2!, b2!]).map((t) => t.data()));
    const fusedY = await tf.tidy(() => silu(groupNorm(x2 as tf.Tensor4D, g2!, b2!, 2, 1e-5))).data();
    expect(relErr(fusedY, fallbackY)).toBeLessThan(1e-5);
    for (let i = 0; i < 3; i++) expect(relErr(fused[i]!, fallback[i]!)).toBeLessThan(1e-5);
  });
});
