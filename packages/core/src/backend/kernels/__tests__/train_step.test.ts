/**
 * A whole UNet-shaped training step — every op UNet2DModel's forward uses, differentiated by
 * tfjs' own gradient functions — runs on wasm with registerWasmGradKernels and matches the cpu
 * backend for every parameter, without leaking tensors.
 */
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import '@tensorflow/tfjs-backend-wasm';
// tfjs' gradient functions (tfjs-core alone registers none).
import '../../gradients.js';
import { registerCpuGradKernelFixes, registerWasmGradKernels } from '../index.js';
import { seededUniformArray } from '../../../testing/index.js';

type Params = Record<string, tf.Variable>;


const B = 2, H = 8, C0 = 3, C = 8, C2 = 12, G = 4, T = 16, CLASSES = 5;
const SPECS: Record<string, number[]> = {
  convIn: [3, 3, C0, C], convInB: [C],
  t1: [T, 32], t1b: [32], t2: [32, C],
  classEmb: [CLASSES, C],
  gn1g: [C], gn1b: [C], r1: [3, 3, C, C], gn2g: [C], gn2b: [C], r2: [3, 3, C, C],
  down1: [3, 3, C, C2], down2: [3, 3, C2, C2],
  gnAg: [C2], gnAb: [C2], q: [C2, C2], k: [C2, C2], v: [C2, C2], o: [C2, C2],
  up: [3, 3, C2, C], skip: [1, 1, 2 * C, C], gnOg: [C], gnOb: [C], convOut: [3, 3, C, C0], convOutB: [C0],
};

function makeParams(suffix: string): Params {
  const p: Params = {};
  let seed = 100;
  for (const [name, shape] of Object.entries(SPECS)) {
    const n = shape.reduce((a, b) => a * b, 1);
    const fanIn = shape.length > 1 ? n / shape[shape.length - 1]! : 1;
    const gain = /^gn.*g$/.test(name);
    const v = gain ? new Float32Array(n).fill(1) : seededUniformArray(n, seed, 1 / Math.sqrt(fanIn));
    seed++;
    p[name] = tf.variable(tf.tensor(v, shape), true, `${name}_${suffix}`);
  }
  return p;
}

const silu = (x: tf.Tensor): tf.Tensor => tf.mul(x, tf.sigmoid(x));

/** GroupNorm as UNet2DModel does it: groups on a reshaped channel axis, stats over [1,2,4]. */
function groupNorm(x: tf.Tensor4D, gamma: tf.Tensor, beta: tf.Tensor, viaMoments: boolean): tf.Tensor4D {
  const [b, h, w, c] = x.shape;
  const g = tf.reshape(x, [b, h, w, G, c / G]);
  let normed: tf.Tensor;
  if (viaMoments) {
    const { mean, variance } = tf.moments(g, [1, 2, 4], true);
    normed = tf.mul(tf.sub(g, mean), tf.rsqrt(tf.add(variance, 1e-5)));
  } else {
    const centred = tf.sub(g, tf.mean(g, [1, 2, 4], true));
    normed = tf.div(centred, tf.sqrt(tf.add(tf.mean(tf.square(centred), [1, 2, 4], true), 1e-5)));
  }
  return tf.add(tf.mul(tf.reshape(normed, [b, h, w, c]), gamma), beta) as tf.Tensor4D;
}

function timestepEmbedding(t: tf.Tensor1D): tf.Tensor2D {
  const half = T / 2;
  const freqs = tf.exp(tf.mul(tf.range(0, half, 1, 'float32'), -Math.log(10000) / half));
  const args = tf.mul(tf.reshape(t, [-1, 1]), tf.reshape(freqs, [1, half]));
  return tf.concat([tf.sin(args), tf.cos(args)], 1) as tf.Tensor2D;
}

function attention(x: tf.Tensor4D, p: Params): tf.Tensor4D {
  const [b, h, w, c] = x.shape;
  const seq = tf.reshape(groupNorm(x, p['gnAg']!, p['gnAb']!, true), [b * h * w, c]) as tf.Tensor2D;
  const proj = (m: tf.Tensor): tf.Tensor3D => tf.reshape(tf.matMul(seq, m as tf.Tensor2D), [b, h * w, c]);
  const q = proj(p['q']!), k = proj(p['k']!), v = proj(p['v']!);
  const probs = tf.softmax(tf.div(tf.matMul(q, k, false, true), Math.sqrt(c))) as tf.Tensor3D;
  const out = tf.matMul(tf.reshape(tf.matMul(probs, v), [b * h * w, c]) as tf.Tensor2D, p['o']! as tf.Tensor2D);
  return tf.add(x, tf.reshape(out, [b, h, w, c])) as tf.Tensor4D;
}

function forward(p: Params, x: tf.Tensor4D, t: tf.Tensor1D, labels: tf.Tensor1D): tf.Tensor4D {
  const w = (name: string): tf.Tensor4D => p[name]! as tf.Tensor4D;
  let emb = tf.add(tf.matMul(timestepEmbedding(t), p['t1']! as tf.Tensor2D), p['t1b']!) as tf.Tensor2D;
  emb = tf.matMul(silu(emb) as tf.Tensor2D, p['t2']! as tf.Tensor2D);
  emb = tf.add(emb, tf.gather(p['classEmb']!, labels)); // gradient: UnsortedSegmentSum
  const embMap = tf.reshape(emb, [B, 1, 1, C]);

  const h0 = tf.add(tf.conv2d(x, w('convIn'), 1, 'same'), p['convInB']!) as tf.Tensor4D;
  let h = tf.conv2d(silu(groupNorm(h0, p['gn1g']!, p['gn1b']!, true)) as tf.Tensor4D, w('r1'), 1, 'same');
  h = tf.add(h, embMap);
  h = tf.conv2d(silu(groupNorm(h, p['gn2g']!, p['gn2b']!, false)) as tf.Tensor4D, w('r2'), 1, [[0, 0], [1, 1], [1, 1], [0, 0]]);
  const skip = tf.add(h0, h) as tf.Tensor4D;

  // Both downsample spellings: pad right/bottom + 'valid' stride 2, and explicit pad 1 stride 2.
  let d = tf.conv2d(tf.pad(skip, [[0, 0], [0, 1], [0, 1], [0, 0]]), w('down1'), 2, 'valid');
  const d2 = tf.conv2d(d, w('down2'), 2, [[0, 0], [1, 1], [1, 1], [0, 0]]);
  d = tf.add(d, tf.image.resizeNearestNeighbor(d2, [H / 2, H / 2]));
  d = attention(d, p);

  let u = tf.conv2d(tf.image.resizeNearestNeighbor(d, [H, H]), w('up'), 1, 'same');
  u = tf.conv2d(tf.concat([u, skip], 3), w('skip'), 1, 'valid');
  u = silu(groupNorm(u, p['gnOg']!, p['gnOb']!, false)) as tf.Tensor4D;
  return tf.fused.conv2d({ x: u, filter: w('convOut'), bias: p['convOutB']!, strides: 1, pad: 'same' });
}

interface StepResult {
  loss: number;
  grads: Record<string, Float32Array>;
  leaked: number;
}

async function trainStep(backend: 'wasm' | 'cpu'): Promise<StepResult> {
  expect(await tf.setBackend(backend)).toBe(true);
  const p = makeParams(backend);
  const x = tf.tensor4d(seededUniformArray(B * H * H * C0, 1, 1), [B, H, H, C0]);
  const target = tf.tensor4d(seededUniformArray(B * H * H * C0, 2, 1), [B, H, H, C0]);
  const t = tf.tensor1d([3, 41]);
  const labels = tf.tensor1d([4, 1], 'int32');
  const once = (): { loss: number; grads: Record<string, Float32Array> } => {
    const { value, grads } = tf.variableGrads(() => tf.mean(tf.square(tf.sub(forward(p, x, t, labels), target))) as tf.Scalar);
    const out: Record<string, Float32Array> = {};
    for (const [name, g] of Object.entries(grads)) out[name.replace(/_(wasm|cpu)$/, '')] = g.dataSync() as Float32Array;
    const loss = value.dataSync()[0]!;
    tf.dispose([value, ...Object.values(grads)]);
    return { loss, grads: out };
  };
  const first = once();
  const before = tf.memory().numTensors;
  once();
  const leaked = tf.memory().numTensors - before;
  tf.dispose([x, target, t, labels, ...Object.values(p)]);
  return { ...first, leaked };
}

it('variableGrads of a UNet-shaped model on wasm matches cpu for every parameter', async () => {
  registerWasmGradKernels();
  // The cpu reference needs its ResizeNearestNeighborGrad fixed (wrong for batch > 1 in 4.22).
  registerCpuGradKernelFixes();
  const wasm = await trainStep('wasm');
  const cpu = await trainStep('cpu');

  expect(Math.abs(wasm.loss - cpu.loss)).toBeLessThan(1e-5 * Math.abs(cpu.loss));
  expect({ wasm: wasm.leaked, cpu: cpu.leaked }).toEqual({ wasm: 0, cpu: 0 });
  expect(Object.keys(wasm.grads).sort()).toEqual(Object.keys(SPECS).sort());
  for (const name of Object.keys(SPECS)) {
    const got = wasm.grads[name]!;
    const ref = cpu.grads[name]!;
    let maxErr = 0;
    let maxRef = 0;
    for (let i = 0; i < ref.length; i++) {
      maxErr = Math.max(maxErr, Math.abs(got[i]! - ref[i]!));
      maxRef = Math.max(maxRef, Math.abs(ref[i]!));
    }
    expect({ name, relErr: maxErr / Math.max(maxRef, 1e-6) < 1e-4 }).toEqual({ name, relErr: true });
  }
});
