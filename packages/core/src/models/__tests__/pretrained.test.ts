import { tinyUNetConfig } from '../../testing/index.js';
import { copyFile, mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-wasm';
import { DiffmemError } from '../../errors.js';
import { loadSafetensorsFile, readSafetensors, saveSafetensorsFile, type SafetensorsTensor } from '../../safetensors/index.js';
import { loadUNet2DFromFolder, readSchedulerConfigFromFolder, saveUNet2DToFolder, UNet2DModel } from '../index.js';

const FIXTURES = join(dirname(fileURLToPath(import.meta.url)), 'fixtures');
const TINY = tinyUNetConfig({ downsample_padding: 0 });
const DDPM_SCHEDULER = { _class_name: 'DDPMScheduler', num_train_timesteps: 1000, beta_schedule: 'linear', beta_start: 0.0001, beta_end: 0.02 };

async function expectReject(p: Promise<unknown>, code: string, messagePart?: string): Promise<void> {
  let caught: unknown;
  try {
    await p;
  } catch (e) {
    caught = e;
  }
  expect(caught).toBeInstanceOf(DiffmemError);
  expect((caught as DiffmemError).code).toBe(code);
  if (messagePart) expect((caught as Error).message).toContain(messagePart);
}

function maxDiff(a: UNet2DModel, b: UNet2DModel): number {
  return tf.tidy(() => {
    const x = tf.randomNormal([2, 8, 8, 3], 0, 1, 'float32', 11) as tf.Tensor4D;
    return tf.max(tf.abs(tf.sub(a.predict(x, 321), b.predict(x, 321)))).dataSync()[0] as number;
  });
}

let dir: string;
beforeAll(async () => {
  await tf.setBackend('wasm');
  dir = await mkdtemp(join(tmpdir(), 'diffmem-unet-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('saveUNet2DToFolder / loadUNet2DFromFolder', () => {
  it('writes a diffusers folder and loads it back with identical outputs and no leaks', async () => {
    const model = UNet2DModel.fromConfig({ ...TINY, _diffusers_version: '0.30.0' }, { seed: 1 });
    const out = join(dir, 'flat');
    try {
      await saveUNet2DToFolder(model, out, { schedulerConfig: DDPM_SCHEDULER });
      expect((await readdir(out)).sort()).toEqual(['config.json', 'diffusion_pytorch_model.safetensors', 'scheduler_config.json']);
      const config = JSON.parse(await readFile(join(out, 'config.json'), 'utf8')) as Record<string, unknown>;
      expect(config['_class_name']).toBe('UNet2DModel');
      expect(config['_diffusers_version']).toBe('0.30.0');
      expect(config['block_out_channels']).toEqual([8, 16]);
      expect(config['downsample_padding']).toBe(0);
      const st = await loadSafetensorsFile(join(out, 'diffusion_pytorch_model.safetensors'));
      expect(st.metadata).toEqual({ format: 'pt' });
      expect(st.tensors.get('conv_in.weight')?.shape).toEqual([8, 3, 3, 3]); // torch layout
      expect(st.tensors.size).toBe(UNet2DModel.parameterSpecs(TINY).length);
      expect(await readSchedulerConfigFromFolder(out)).toEqual(DDPM_SCHEDULER);

      const before = tf.memory().numTensors;
      const loaded = await loadUNet2DFromFolder(out);
      expect(tf.memory().numTensors).toBe(before + st.tensors.size);
      expect(loaded.config).toEqual(model.config);
      expect(maxDiff(model, loaded)).toBe(0);
      loaded.dispose();
      expect(tf.memory().numTensors).toBe(before);
    } finally {
      model.dispose();
    }
  });

  it('saves half precision on request (F16 / BF16 rounding)', async () => {
    const model = UNet2DModel.fromConfig(TINY, { seed: 2 });
    const out = join(dir, 'half');
    try {
      await saveUNet2DToFolder(model, out, { dtype: 'F16' });
      const raw = readSafetensors(await readFile(join(out, 'diffusion_pytorch_model.safetensors')), { keepDtype: true });
      expect(raw.tensors.get('conv_out.weight')?.dtype).toBe('F16');
      const loaded = await loadUNet2DFromFolder(out);
      const d = maxDiff(model, loaded);
      expect(d).toBeGreaterThan(0);
      expect(d).toBeLessThan(5e-2);
      loaded.dispose();
      await expectReject(saveUNet2DToFolder(model, out, { dtype: 'I8' as 'F16' }), 'CONFIG');
    } finally {
      model.dispose();
    }
  });

  it('finds the model in a pipeline folder (unet/ subfolder) and reads sharded or variant weights', async () => {
    const model = UNet2DModel.fromConfig(TINY, { seed: 3 });
    const pipe = join(dir, 'pipeline');
    try {
      await saveUNet2DToFolder(model, join(pipe, 'unet'));
      await writeFile(join(pipe, 'model_index.json'), JSON.stringify({ _class_name: 'DDPMPipeline', unet: ['diffusers', 'UNet2DModel'] }));
      await mkdir(join(pipe, 'scheduler'));
      await writeFile(join(pipe, 'scheduler', 'scheduler_config.json'), JSON.stringify(DDPM_SCHEDULER));
      const a = await loadUNet2DFromFolder(pipe);
      expect(maxDiff(model, a)).toBe(0);
      a.dispose();
      expect(await readSchedulerConfigFromFolder(pipe)).toEqual(DDPM_SCHEDULER);

      // Sharded: two files plus the index diffusers writes for large models.
      const shardDir = join(dir, 'sharded');
      await mkdir(shardDir);
      await copyFile(join(pipe, 'unet', 'config.json'), join(shardDir, 'config.json'));
      const all = [...model.stateDict().entries()];
      const half = Math.floor(all.length / 2);
      const shards: Array<[string, Array<[string, SafetensorsTensor]>]> = [
        ['diffusion_pytorch_model-00001-of-00002.safetensors', all.slice(0, half)],
        ['diffusion_pytorch_model-00002-of-00002.safetensors', all.slice(half)],
      ];
      const weightMap: Record<string, string> = {};
      for (const [file, entries] of shards) {
        await saveSafetensorsFile(join(shardDir, file), new Map(entries));
        for (const [k] of entries) weightMap[k] = file;
      }
      await writeFile(join(shardDir, 'diffusion_pytorch_model.safetensors.index.json'), JSON.stringify({ metadata: {}, weight_map: weightMap }));
      const b = await loadUNet2DFromFolder(shardDir);
      expect(maxDiff(model, b)).toBe(0);
      b.dispose();

      // Variant: diffusion_pytorch_model.fp16.safetensors.
      await copyFile(join(pipe, 'unet', 'diffusion_pytorch_model.safetensors'), join(pipe, 'unet', 'diffusion_pytorch_model.fp16.safetensors'));
      const c = await loadUNet2DFromFolder(pipe, { subfolder: 'unet', variant: 'fp16' });
      expect(maxDiff(model, c)).toBe(0);
      c.dispose();
    } finally {
      model.dispose();
    }
  });

  it('loads the committed CIFAR-topology fixture (F16, legacy attention names)', async () => {
    const m = await loadUNet2DFromFolder(join(FIXTURES, 'ddpm_cifar10_tiny'));
    try {
      expect(m.parameterSpecs()).toHaveLength(328);
      expect(m.info.sampleSize).toBe(32);
    } finally {
      m.dispose();
    }
  });

  it('explains what is wrong with a folder', async () => {
    await expectReject(loadUNet2DFromFolder(join(dir, 'does-not-exist')), 'MODEL_NOT_FOUND');
    const pickle = join(dir, 'pickle');
    await mkdir(pickle);
    await writeFile(join(pickle, 'config.json'), JSON.stringify(TINY));
    await expectReject(loadUNet2DFromFolder(pickle), 'WEIGHTS_NOT_FOUND');
    await writeFile(join(pickle, 'diffusion_pytorch_model.bin'), 'not really a pickle');
    await expectReject(loadUNet2DFromFolder(pickle), 'WEIGHTS_PICKLE_UNSUPPORTED', 'safe_serialization');
    const badJson = join(dir, 'badjson');
    await mkdir(badJson);
    await writeFile(join(badJson, 'config.json'), '{"sample_size": 8,');
    await expectReject(loadUNet2DFromFolder(badJson), 'CONFIG', 'not valid JSON');
    // A config/weights mismatch names the tensor.
    const mismatch = join(dir, 'mismatch');
    const model = UNet2DModel.fromConfig(TINY, { seed: 4 });
    await saveUNet2DToFolder(model, mismatch);
    model.dispose();
    await writeFile(join(mismatch, 'config.json'), JSON.stringify({ ...TINY, block_out_channels: [8, 24] }));
    await expectReject(loadUNet2DFromFolder(mismatch), 'WEIGHTS_SHAPE', 'down_blocks.1');
  });

  it('overwrites atomically, leaving no temporary files', async () => {
    const out = join(dir, 'overwrite');
    for (const seed of [5, 6]) {
      const m = UNet2DModel.fromConfig(TINY, { seed });
      await saveUNet2DToFolder(m, out);
      m.dispose();
    }
    expect((await readdir(out)).sort()).toEqual(['config.json', 'diffusion_pytorch_model.safetensors']);
  });
});
