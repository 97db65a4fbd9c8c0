import * as tf from '@tensorflow/tfjs-core';
import { selectBackend } from '@diffmem/core';
import { runBench, type BenchOptions, type BenchResult } from '../bench.js';
import { benchConvKernels } from '../../bench/kernels.js';
import { benchUNetConfig } from '../../bench/unet.js';
import { median, timed } from '../../bench/timing.js';
import { smallUNetConfig } from '@diffmem/core';
import { runCli } from './harness.js';

beforeAll(async () => {
  await selectBackend({ prefer: ['wasm'] }); // with core's wasm gradient kernels, as the CLI
});

// Tiny sizes only: a 2×8×8×8 convolution, an 8×8 UNet at batch 1, 300 references of 8×8×3.
const tiny = ['--conv-shape', '2,8,8,8,8', '--conv-reps', '2', '--batch', '1', '--ddim-steps', '2', '--reps', '1', '--unet-size', '8', '--unet-widths', '8,16', '--refs', '300', '--queries', '4', '--knn-size', '8', '--k', '5'];

test('bench --json: conv kernels, UNet forward / train step / DDIM, k-NN queries/s on the selected backend', async () => {
  const r = await runCli(['--json', 'bench', ...tiny]);
  expect(r.code).toBe(0);
  const j = JSON.parse(r.stdout) as BenchResult;
  expect(j.backend).toBe('wasm');
  expect(j.conv).toHaveLength(1);
  const c = j.conv?.[0];
  expect(c?.name).toBe('3x3 8->8 2x8x8 s1 same');
  expect(c?.macs).toBe(2 * 8 * 8 * 9 * 8 * 8);
  for (const t of [c?.forward, c?.inputGrad, c?.filterGrad]) expect(t?.wallMs).toBeGreaterThan(0);
  expect(j.unet?.config['sample_size']).toBe(8);
  expect(j.unet?.batch).toBe(1);
  expect(j.unet?.train?.wallMs).toBeGreaterThan(0);
  expect(j.unet?.ddim?.steps).toBe(2);
  expect(j.knn?.refs).toBe(300);
  expect(j.knn?.dim).toBe(192);
  expect(Object.keys(j.knn?.rates ?? {})).toEqual(['k1', 'k50']);
  expect(j.knn?.rates['k50']?.label).toContain('k=5');
  expect(j.knn?.leakedTensors).toBe(0);
});

test('bench text table; parallel k-NN with worker threads; no tensors leak', async () => {
  const before = tf.memory().numTensors;
  const o: BenchOptions = {
    skip: ['conv', 'unet'],
    convAll: false,
    convReps: 1,
    batch: 1,
    ddimSteps: 1,
    refs: 300,
    queries: 4,
    knnSize: 8,
    k: 5,
    workers: 2,
    full: false,
    quiet: true,
  };
  const r = await runBench(o);
  expect(tf.memory().numTensors).toBe(before);
  expect(Object.keys(r.knn?.rates ?? {})).toEqual(['k1', 'k50', 'parK1', 'parK50']);
  expect(r.knn?.rates['parK1']?.threads).toBe(2);
  const t = await runCli(['-q', 'bench', ...tiny, '--skip', 'knn']);
  expect(t.code).toBe(0);
  expect(t.stdout).toMatch(/^diffmem bench: backend wasm/m);
  expect(t.stdout).toMatch(/conv 3x3 8->8 2x8x8 s1 same +forward +[\d.]+ ms/);
  expect(t.stdout).toMatch(/filter grad .* GFLOP\/s/);
  expect(t.stdout).toMatch(/train step \(AdamW\)/);
  expect(t.stdout).toMatch(/DDIM 2 steps .* images\/s/);
});

test('the shared measuring functions: median timing, kernels, UNet (keeps I/O for parity checks)', async () => {
  expect(median([3, 1, 2])).toBe(2);
  expect(median([4, 1, 2, 3])).toBe(2.5);
  let calls = 0;
  const t = await timed(() => void calls++, 3, 1);
  expect(calls).toBe(4);
  expect(t.reps).toBe(3);
  const before = tf.memory().numTensors;
  const k = await benchConvKernels([{ name: 'tiny', x: [1, 4, 4, 2], filter: [3, 3, 2, 2], strides: 1, pad: 'same' }], { reps: 1 });
  expect(k[0]?.filterGrad).not.toBeNull();
  const u = await benchUNetConfig(smallUNetConfig({ sampleSize: 8, channels: 1, blockOutChannels: [8, 16], numClassEmbeds: 3 }), {
    batch: 2,
    reps: { forward: 1, train: 1 },
    ddimSteps: 2,
    keepIO: true,
    checkSteps: 1,
  });
  const io = u.io;
  expect(io?.outForward.shape).toEqual([2, 8, 8, 1]);
  expect(io?.classLabels?.arraySync()).toEqual([0, 1]);
  expect(io?.trainLoss).toBeGreaterThan(0);
  expect(io?.ddimOut?.shape).toEqual([2, 8, 8, 1]);
  tf.dispose([io?.sample, io?.timesteps, io?.classLabels, io?.outForward, io?.trainX0, io?.trainNoise, io?.trainT, io?.ddimLatents, io?.ddimOut].filter((x): x is tf.Tensor => !!x));
  expect(tf.memory().numTensors).toBe(before);
});

test('bad input names the problem', async () => {
  const all = await runCli(['bench', '--skip', 'conv,unet,knn']);
  expect(all.code).toBe(2);
  expect(all.stderr).toContain('--skip removed every part');
  const bad = await runCli(['bench', '--skip', 'gpu']);
  expect(bad.code).toBe(1);
  expect(bad.stderr).toContain('--skip takes conv, unet, knn');
  expect((await runCli(['bench', '--conv-shape', '1,2'])).stderr).toContain('--conv-shape must be N,H,W,Cin,Cout');
  expect((await runCli(['bench', '--refs', 'many'])).stderr).toContain('--refs must be an integer >= 2');
  expect((await runCli(['bench', '--help'])).stdout).toContain('--full');
});
