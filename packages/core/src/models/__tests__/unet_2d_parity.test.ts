/**
 * Parity with the PyTorch reference (scripts/reference/unet2d_reference.py): fixtures written by
 * scripts/reference/make_unet_fixtures.py hold a config, torch-layout weights and the reference
 * outputs for fixed inputs. Max abs error must be ≤ 1e-4 in float32 on wasm and cpu.
 */
import { readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import '@tensorflow/tfjs-backend-wasm';
import { loadSafetensorsFile, type SafetensorsTensor } from '../../safetensors/index.js';
import { loadUNet2DFromFolder, type UNet2DModel } from '../index.js';

const FIXTURES = join(dirname(fileURLToPath(import.meta.url)), 'fixtures');
const CASES = readdirSync(FIXTURES).sort();

function toTensor(t: SafetensorsTensor): tf.Tensor {
  if (t.data instanceof BigInt64Array) return tf.tensor(Array.from(t.data, Number), t.shape, 'int32');
  return tf.tensor(t.data as Float32Array, t.shape, 'float32');
}

function maxAbsDiff(a: tf.Tensor, b: Float32Array): number {
  const av = a.dataSync();
  let m = 0;
  for (let i = 0; i < b.length; i++) m = Math.max(m, Math.abs((av[i] as number) - (b[i] as number)));
  return m;
}

describe.each(['wasm', 'cpu'])('UNet2DModel parity with the PyTorch reference on %s', (backend) => {
  beforeAll(async () => {
    await tf.setBackend(backend);
    await tf.ready();
  });

  it('has fixtures', () => {
    expect(CASES).toEqual(expect.arrayContaining(['ddpm_cifar10_tiny', 'class_conditional', 'multihead_defaults']));
  });

  it.each(CASES)('%s: max |Δ| ≤ 1e-4, no leaked tensors', async (name) => {
    const model: UNet2DModel = await loadUNet2DFromFolder(join(FIXTURES, name));
    const io = (await loadSafetensorsFile(join(FIXTURES, name, 'io.safetensors'))).tensors;
    const get = (k: string) => io.get(k) as SafetensorsTensor;
    const sample = toTensor(get('sample')) as tf.Tensor4D;
    const t = toTensor(get('timesteps')) as tf.Tensor1D;
    const labels = io.has('class_labels') ? (toTensor(get('class_labels')) as tf.Tensor1D) : undefined;
    try {
      const before = tf.memory().numTensors;
      const out = model.predict(sample, t, labels);
      expect(out.shape).toEqual(get('expected').shape);
      const err = maxAbsDiff(out, get('expected').data as Float32Array);
      out.dispose();
      expect(err).toBeLessThanOrEqual(1e-4);
      expect(tf.memory().numTensors).toBe(before);

      if (io.has('expected_scalar_t')) {
        const scalarT = Number((get('scalar_t').data as BigInt64Array)[0]);
        const errScalar = tf.tidy(() => maxAbsDiff(model.predict(sample, scalarT, labels), get('expected_scalar_t').data as Float32Array));
        expect(errScalar).toBeLessThanOrEqual(1e-4);
        expect(tf.memory().numTensors).toBe(before);
      }
    } finally {
      tf.dispose([sample, t, ...(labels ? [labels] : [])]);
      model.dispose();
    }
  });
});
