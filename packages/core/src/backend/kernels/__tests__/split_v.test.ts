/**
 * The diffmem wasm `SplitV` (registered by registerWasmGradKernels) against tfjs' cpu backend:
 * every axis, equal and explicit (incl. −1) sizes, float32 and int32, the gradient of a channel
 * concat, memory, and the built-in fallback for other dtypes.
 */
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import '@tensorflow/tfjs-backend-wasm';
import '../../gradients.js';
import { registerWasmGradKernels, splitVWasm, unregisterWasmGradKernels } from '../index.js';

function values(n: number, seed: number): Float32Array {
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = Math.sin(i * 12.9898 + seed) * 100;
  return out;
}

interface Case {
  name: string;
  shape: number[];
  split: number | number[];
  axis: number;
  dtype?: 'float32' | 'int32';
}

const CASES: Case[] = [
  { name: 'UNet skip gradient, last axis [2,4,4,48] → [32,16]', shape: [2, 4, 4, 48], split: [32, 16], axis: -1 },
  { name: 'last axis, short rows [3,5,7] → [1,-1,2]', shape: [3, 5, 7], split: [1, -1, 2], axis: 2 },
  { name: 'middle axis, equal parts [2,6,3,5] / 3', shape: [2, 6, 3, 5], split: 3, axis: 1 },
  { name: 'first axis [4,70] → [1,3] (long rows)', shape: [4, 70], split: [1, 3], axis: 0 },
  { name: 'zero-size part [2,3,4] → [0,4]', shape: [2, 3, 4], split: [0, 4], axis: 2 },
  { name: 'int32 [2,3,8] → [5,3]', shape: [2, 3, 8], split: [5, 3], axis: -1, dtype: 'int32' },
];

async function splitOn(backend: 'wasm' | 'cpu', c: Case): Promise<{ shapes: number[][]; data: number[][] }> {
  await tf.setBackend(backend);
  const n = c.shape.reduce((a, b) => a * b, 1);
  const x = tf.tensor(c.dtype === 'int32' ? Int32Array.from(values(n, 1)) : values(n, 1), c.shape, c.dtype ?? 'float32');
  const before = tf.memory().numTensors;
  const parts = tf.split(x, c.split, c.axis);
  expect(tf.memory().numTensors).toBe(before + parts.length);
  const out = { shapes: parts.map((p) => p.shape), data: await Promise.all(parts.map(async (p) => Array.from(await p.data()))) };
  tf.dispose([x, ...parts]);
  expect(tf.memory().numTensors).toBe(before - 1);
  return out;
}

beforeAll(() => {
  registerWasmGradKernels();
});

it('is registered for wasm by registerWasmGradKernels', () => {
  expect(tf.getKernel('SplitV', 'wasm')?.kernelFunc).toBe(splitVWasm);
});

it.each(CASES)('$name: identical to the cpu backend', async (c) => {
  const wasm = await splitOn('wasm', c);
  const cpu = await splitOn('cpu', c);
  expect(wasm.shapes).toEqual(cpu.shapes);
  expect(wasm.data).toEqual(cpu.data);
});

it('the gradient of a channel concat splits dy exactly', async () => {
  await tf.setBackend('wasm');
  const a = tf.tensor4d(values(2 * 3 * 3 * 5, 2), [2, 3, 3, 5]);
  const b = tf.tensor4d(values(2 * 3 * 3 * 7, 3), [2, 3, 3, 7]);
  const w = tf.tensor4d(values(2 * 3 * 3 * 12, 4), [2, 3, 3, 12]);
  const [da, db] = tf.grads((p: tf.Tensor, q: tf.Tensor) => tf.sum(tf.mul(tf.concat([p, q], 3), w)))([a, b]);
  const ref = tf.split(w, [5, 7], 3);
  await tf.setBackend('cpu');
  const wc = tf.tensor4d(values(2 * 3 * 3 * 12, 4), [2, 3, 3, 12]);
  const [ra, rb] = tf.split(wc, [5, 7], 3);
  expect(Array.from(await da!.data())).toEqual(Array.from(await ra!.data()));
  expect(Array.from(await db!.data())).toEqual(Array.from(await rb!.data()));
  tf.dispose([a, b, w, da!, db!, ...ref, wc, ra!, rb!]);
});

it('bool tensors go to the built-in kernel', async () => {
  await tf.setBackend('wasm');
  const x = tf.tensor2d([true, false, true, true, false, false], [2, 3], 'bool');
  const [p, q] = tf.split(x, [1, 2], 1);
  expect(Array.from(await p!.data())).toEqual([1, 1]);
  expect(Array.from(await q!.data())).toEqual([0, 1, 0, 0]);
  tf.dispose([x, p!, q!]);
});

it('unregisterWasmGradKernels restores the built-in', async () => {
  unregisterWasmGradKernels();
  expect(tf.getKernel('SplitV', 'wasm')?.kernelFunc).not.toBe(splitVWasm);
  const c = CASES[0]!;
  const builtIn = await splitOn('wasm', c);
  registerWasmGradKernels();
  expect(await splitOn('wasm', c)).toEqual(builtIn);
});
