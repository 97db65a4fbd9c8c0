/**
 * UNet2DModel with the fused GroupNorm / SiLU kernels (registered on first use) against the same
 * model on the composite ops: output, input gradient and every weight gradient, on wasm and cpu.
 */
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import '@tensorflow/tfjs-backend-wasm';
import '../../backend/gradients.js';
import {
  DiffmemGroupNorm,
  DiffmemSiLU,
  registerCpuGradKernelFixes,
  registerFusedOpKernels,
  registerWasmGradKernels,
  unregisterFusedOpKernels,
} from '../../backend/kernels/index.js';
import { seededUniformArray, tinyUNetConfig } from '../../testing/index.js';
import { UNet2DModel } from '../index.js';


interface Run {
  y: Float32Array;
  dx: Float32Array;
  dw: Map<string, Float32Array>;
  kernels: string[];
  leaked: number;
}

const B = 2;
const CONFIG = tinyUNetConfig({ num_class_embeds: 3, norm_num_groups: 4, norm_eps: 1e-6 });

function makeModel(): UNet2DModel {
  const model = UNet2DModel.fromConfig(CONFIG, { seed: 7 });
  // Non-trivial γ, β (init is 1, 0), so their gradients and the affine path are exercised.
  let seed = 100;
  for (const [name, v] of model.variables) {
    if (/norm.*\.(weight|bias)$/.test(name)) v.assign(tf.tensor(seededUniformArray(v.size, seed++, 0.3, name.endsWith('weight') ? 1 : 0), v.shape));
  }
  return model;
}

async function run(model: UNet2DModel): Promise<Run> {
  const x = tf.variable(tf.tensor4d(seededUniformArray(B * 8 * 8 * 3, 1, 1), [B, 8, 8, 3]), true, `x_${tf.getBackend()}_${Math.random()}`);
  const t = tf.tensor1d([3, 700], 'int32');
  const labels = tf.tensor1d([0, 2], 'int32');
  const target = tf.tensor4d(seededUniformArray(B * 8 * 8 * 3, 2, 1), [B, 8, 8, 3]);
  const loss = (): tf.Scalar => tf.mean(tf.square(tf.sub(model.predict(x, t, labels), target)));
  const step = (): Pick<Run, 'dx' | 'dw'> => {
    const { value, grads } = tf.variableGrads(loss, [x, ...model.trainableVariables()]);
    const dw = new Map<string, Float32Array>();
    for (const [name, g] of Object.entries(grads)) if (name !== x.name) dw.set(name, g.dataSync() as Float32Array);
    const dx = grads[x.name]!.dataSync() as Float32Array;
    tf.dispose([value, ...Object.values(grads)]);
    return { dx, dw };
  };
  step(); // warm-up (kernel set-up, lazy registrations)
  const before = tf.memory().numTensors;
  const { dx, dw } = step();
  const yT = tf.tidy(() => model.predict(x, t, labels));
  const y = (await yT.data()) as Float32Array;
  yT.dispose();
  const leaked = tf.memory().numTensors - before;
  const kernels = (await tf.profile(() => tf.tidy(() => model.predict(x, t, labels)))).kernelNames;
  tf.dispose([x, t, labels, target]);
  return { y, dx, dw, kernels, leaked };
}

function relErr(a: Float32Array, b: Float32Array, floor = 1e-12): number {
  let err = 0;
  let mag = floor;
  for (let i = 0; i < b.length; i++) {
    err = Math.max(err, Math.abs(a[i]! - b[i]!));
    mag = Math.max(mag, Math.abs(b[i]!));
  }
  return err / mag;
}

it('registers the fused kernels on the first model call, with no set-up call', async () => {
  await tf.setBackend('wasm');
  expect(tf.getKernel(DiffmemGroupNorm, 'wasm')).toBeUndefined();
  const model = UNet2DModel.fromConfig(CONFIG, { seed: 1 });
  const y = model.predict(tf.zeros([1, 8, 8, 3]) as tf.Tensor4D, 10, tf.tensor1d([1], 'int32'));
  expect(tf.getKernel(DiffmemGroupNorm, 'wasm')).toBeDefined();
  expect(tf.getKernel(DiffmemSiLU, 'cpu')).toBeDefined();
  y.dispose();
  model.dispose();
});

describe.each(['wasm', 'cpu'] as const)('UNet2DModel on %s', (backend) => {
  beforeAll(async () => {
    expect(await tf.setBackend(backend)).toBe(true);
    registerWasmGradKernels();
    registerCpuGradKernelFixes();
  });
  afterAll(() => registerFusedOpKernels());

  it('forward, input gradient and weight gradients match the composite ops within 1e-5', async () => {
    const model = makeModel();
    const paramNames = new Map([...model.variables].map(([param, v]) => [v.name, param]));
    registerFusedOpKernels();
    const fused = await run(model);
    unregisterFusedOpKernels();
    const composite = await run(model);
    registerFusedOpKernels();
    model.dispose();

    expect(fused.kernels).toEqual(expect.arrayContaining([DiffmemGroupNorm, DiffmemSiLU]));
    expect(fused.kernels).not.toContain('Sigmoid');
    expect(composite.kernels).not.toContain(DiffmemGroupNorm);
    expect({ fused: fused.leaked, composite: composite.leaked }).toEqual({ fused: 0, composite: 0 });
    expect(relErr(fused.y, composite.y)).toBeLessThan(1e-5);
    expect(relErr(fused.dx, composite.dx)).toBeLessThan(1e-5);
    expect([...fused.dw.keys()].sort()).toEqual([...composite.dw.keys()].sort());
    expect(fused.dw.size).toBeGreaterThan(20);
    // Attention key biases get exactly zero gradient in exact arithmetic (softmax is shift
    // invariant), i.e. pure rounding noise: judge every tensor against at least 1e-3 of the
    // model's largest weight gradient.
    let scale = 0;
    for (const g of composite.dw.values()) for (const v of g) scale = Math.max(scale, Math.abs(v));
    const bad: string[] = [];
    for (const [name, g] of fused.dw) {
      const ref = composite.dw.get(name)!;
      const e = relErr(g, ref, 1e-3 * scale);
      if (!(e < 1e-5)) bad.push(`${paramNames.get(name) ?? name}: ${e.toExponential(2)} max|ref| ${Math.max(...Array.from(ref, Math.abs)).toExponential(2)} max|got| ${Math.max(...Array.from(g, Math.abs)).toExponential(2)}`);
    }
    expect(bad).toEqual([]);
  });
});
