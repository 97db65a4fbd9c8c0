/**
 * `diffmem bench`: what this machine's selected backend does per second — the convolution kernels
 * (forward, input gradient, filter gradient), the demo UNet (forward, training step, DDIM
 * sampling) and exact k-NN search over a synthetic reference set. The measuring functions live in
 * `src/bench/` and are shared with `npm run bench` (scripts/bench.mjs), which adds the PyTorch
 * side-by-side.
 * @module
 */
import { InvalidArgumentError } from 'commander';
import * as os from 'node:os';
import * as tf from '@tensorflow/tfjs-core';
import { ConfigError, smallUNetConfig } from '@diffmem/core';
import { benchConvKernels, convCases, type ConvCase, type ConvKernelResult } from '../bench/kernels.js';
import { benchKnn, type KnnBenchResult } from '../bench/knn.js';
import { formatMs } from '../bench/timing.js';
import { benchUNetConfig, demoBenchConfig, type UNetBenchResult } from '../bench/unet.js';
import { ProgressBar } from '../progress.js';
import type { GlobalFlags } from '../util.js';

/** Parts of the benchmark. */
export type BenchPart = 'conv' | 'unet' | 'knn';

/** Options of {@link runBench}. */
export interface BenchOptions extends GlobalFlags {
  /** Parts to skip. */
  skip: BenchPart[];
  /** All UNet conv shapes instead of the dominant one. */
  convAll: boolean;
  /** A custom 3×3 'same' convolution `N,H,W,Cin,Cout` instead of the presets. */
  convShape?: number[];
  convReps: number;
  /** UNet batch (default 8). */
  batch: number;
  /** DDIM steps of the timed sampling run (default 50). */
  ddimSteps: number;
  /** Timed repeats of forward / train step (default 5 / 3). */
  reps?: number;
  /** UNet side and widths (default: the demo model, 16×16×1, [32,64,64], 11 class rows). */
  unetSize?: number;
  unetWidths?: number[];
  refs: number;
  queries: number;
  knnSize: number;
  k: number;
  workers: number;
  /** 60000 references of 32×32×3 (the CIFAR-10 training set size). */
  full: boolean;
}

/** What {@link runBench} returns. */
export interface BenchResult {
  machine: { node: string; cores: number; cpu: string | null; loadavg: number[] };
  backend: string;
  conv: ConvKernelResult[] | null;
  unet: (Omit<UNetBenchResult, 'io'> & { config: Record<string, unknown> }) | null;
  knn: KnnBenchResult | null;
  seconds: number;
}

/** Parses `--conv-shape 8,32,32,64,64`. */
export function parseConvShape(v: string): number[] {
  const s = v.split(',').map(Number);
  if (s.length !== 5 || s.some((x) => !Number.isInteger(x) || x < 1)) throw new InvalidArgumentError(`--conv-shape must be N,H,W,Cin,Cout (positive integers), got "${v}"`);
  return s;
}

/** Runs the benchmark parts in order (conv, unet, knn). */
export async function runBench(o: BenchOptions): Promise<BenchResult> {
  const t0 = performance.now();
  const quiet = o.quiet || o.json;
  const parts = (['conv', 'unet', 'knn'] as const).filter((p) => !o.skip.includes(p));
  if (parts.length === 0) throw new ConfigError('--skip removed every part of the benchmark (conv, unet, knn)');
  const bar = new ProgressBar('bench', parts.length, { quiet });
  let done = 0;
  let conv: BenchResult['conv'] = null;
  let unet: BenchResult['unet'] = null;
  let knn: BenchResult['knn'] = null;
  if (parts.includes('conv')) {
    bar.update(done, 'conv kernels');
    let cases: ConvCase[] = convCases(o.convAll);
    if (o.convShape) {
      const [n, h, w, ci, co] = o.convShape as [number, number, number, number, number];
      cases = [{ name: `3x3 ${ci}->${co} ${n}x${h}x${w} s1 same`, x: [n, h, w, ci], filter: [3, 3, ci, co], strides: 1, pad: 'same' }];
    }
    conv = await benchConvKernels(cases, { reps: o.convReps });
    bar.update(++done, 'conv kernels');
  }
  if (parts.includes('unet')) {
    bar.update(done, 'UNet');
    const config =
      o.unetSize !== undefined || o.unetWidths !== undefined
        ? smallUNetConfig({ sampleSize: o.unetSize ?? 16, channels: 1, blockOutChannels: o.unetWidths ?? [32, 64, 64], numClassEmbeds: 11 })
        : demoBenchConfig();
    const r = await benchUNetConfig(config, {
      batch: o.batch,
      ddimSteps: o.ddimSteps,
      ...(o.reps !== undefined ? { reps: { forward: o.reps, train: o.reps, ddim: 1 } } : {}),
      onStage: (s) => bar.update(done, `UNet ${s}`),
    });
    const { io: _io, ...rest } = r;
    unet = { ...rest, config };
    bar.update(++done, 'UNet');
  }
  if (parts.includes('knn')) {
    bar.update(done, 'k-NN');
    const refs = o.full ? 60000 : o.refs;
    const size = o.full ? 32 : o.knnSize;
    knn = await benchKnn({ refs, queries: o.queries, size, k: o.k, workers: o.workers, variants: o.full, streamed: o.full });
    bar.update(++done, 'k-NN');
  }
  return {
    machine: { node: process.version, cores: os.cpus().length, cpu: os.cpus()[0]?.model ?? null, loadavg: os.loadavg().map((v) => Number(v.toFixed(2))) },
    backend: tf.getBackend(),
    conv,
    unet,
    knn,
    seconds: (performance.now() - t0) / 1000,
  };
}

/** The table `diffmem bench` prints. */
export function formatBench(r: BenchResult): string {
  const rows: [string, string, string, string, string][] = [];
  if (r.conv) {
    for (const c of r.conv) {
      const g = (t: { wallMs: number } | null): string => (t ? `${((2 * c.macs) / t.wallMs / 1e6).toFixed(1)} GFLOP/s` : 'no kernel');
      rows.push([`conv ${c.name}`, 'forward', formatMs(c.forward.wallMs), formatMs(c.forward.cpuMs), g(c.forward)]);
      rows.push(['', 'input grad', formatMs(c.inputGrad.wallMs), formatMs(c.inputGrad.cpuMs), g(c.inputGrad)]);
      rows.push(['', 'filter grad', formatMs(c.filterGrad?.wallMs), formatMs(c.filterGrad?.cpuMs), g(c.filterGrad)]);
    }
  }
  if (r.unet) {
    const u = r.unet;
    const per = (ms: number, n: number, what: string): string => `${((1000 * n) / ms).toFixed(1)} ${what}/s`;
    const name = `UNet ${u.config['sample_size']}x${u.config['sample_size']} (${(u.params / 1e6).toFixed(2)} M), batch ${u.batch}`;
    rows.push([name, 'forward', formatMs(u.forward.wallMs), formatMs(u.forward.cpuMs), per(u.forward.wallMs, u.batch, 'images')]);
    if (u.train) rows.push(['', 'train step (AdamW)', formatMs(u.train.wallMs), formatMs(u.train.cpuMs), per(u.train.wallMs, 1, 'steps')]);
    if (u.ddim) rows.push(['', `DDIM ${u.ddim.steps} steps`, formatMs(u.ddim.wallMs), formatMs(u.ddim.cpuMs), per(u.ddim.wallMs, u.batch, 'images')]);
  }
  if (r.knn) {
    const k = r.knn;
    const name = `exact k-NN, ${k.refs} refs x ${k.dim}-d`;
    let first = true;
    for (const s of Object.values(k.rates)) {
      rows.push([first ? name : '', s.label.replace(/^search /, ''), formatMs(s.wallMs), formatMs(s.cpuMs), `${s.wall.toFixed(1)} queries/s`]);
      first = false;
    }
    if (k.matmul) rows.push(['', `matMul ${k.matmul.shape}`, '', '', `${k.matmul.gflopsWall.toFixed(1)} GFLOP/s`]);
  }
  const w = [0, 1, 2, 3, 4].map((i) => Math.max(...rows.map((row) => row[i]?.length ?? 0), ['part', 'operation', 'wall', 'CPU', 'rate'][i]?.length ?? 0));
  const line = (c: string[]): string => c.map((s, i) => (i >= 2 ? s.padStart(w[i] as number) : s.padEnd(w[i] as number))).join('  ');
  return [
    `diffmem bench: backend ${r.backend}, node ${r.machine.node}, ${r.machine.cores} cores (${r.machine.cpu ?? '?'}), load ${r.machine.loadavg.join(' ')}`,
    line(['part', 'operation', 'wall', 'CPU', 'rate']),
    w.map((x) => '-'.repeat(x)).join('  '),
    ...rows.map(line),
    `(${r.seconds.toFixed(1)} s; conv: best of N; UNet: median; CPU = process CPU time over all threads)`,
  ].join('\n');
}
