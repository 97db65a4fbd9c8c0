/**
 * Exact k-NN benchmark of `@diffmem/metrics`' `ReferenceIndex` on a synthetic reference set
 * (uniform random images, seeded): build (shards written to disk and loaded), queries/s of exact
 * RMS-ℓ2 search at k = 1 and k = K, the approximate-ranking variant, cosine, nL2, the streamed
 * (disk-resident) index, and a `ParallelSearcher` over worker threads. The raw matrix-product
 * throughput of the kernel the index uses is measured first, for context.
 * @module
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { Generator } from '@diffmem/core';
import { ParallelSearcher, ReferenceIndex, nl2 } from '@diffmem/metrics';
import { cpuMsOf } from './timing.js';

/** Options of {@link benchKnn}. */
export interface KnnBenchOptions {
  /** References (default 2000; `diffmem bench --full` uses 60000). */
  refs: number;
  /** Queries per timed search (default 64). */
  queries?: number;
  /** Image side; images are size×size×3 (default 32). */
  size?: number;
  /** Neighbourhood size K (default 50, nL2's). */
  k?: number;
  /** Worker threads of the parallel search (default 1 = skip it). */
  workers?: number;
  /** Also time the streamed index (residentBytes 0) — default true. */
  streamed?: boolean;
  /** Time the extra variants (approximate ranking, cosine, nL2) — default true. */
  variants?: boolean;
  /** Skip the matrix-product probe. */
  skipMatmul?: boolean;
  /** Only the streamed index (no resident shards). */
  streamedOnly?: boolean;
  seed?: number;
  /** Progress lines. */
  log?: (line: string) => void;
}

/** One search measurement: queries per second of wall time, and per second of CPU per thread used. */
export interface SearchRate {
  label: string;
  /** Queries/s, wall clock. */
  wall: number;
  /** Queries/s the same CPU time would give on `threads` otherwise idle cores. */
  idle: number;
  wallMs: number;
  cpuMs: number;
  threads: number;
}

/** What {@link benchKnn} measured. */
export interface KnnBenchResult {
  refs: number;
  queries: number;
  dim: number;
  k: number;
  backend: string;
  matmul: { shape: string; gflopsWall: number; gflopsCpu: number; ceilingWall: number; ceilingIdle: number } | null;
  buildSeconds: number;
  shardStats: unknown;
  /** Keys: k1, k50 (k = K), k50fast, cos, nl2, streamed, parK1, parK50, parCos (those that ran). */
  rates: Record<string, SearchRate>;
  leakedTensors: number;
}

/** Runs the benchmark (see the module docs); writes its index to a temporary folder it removes. */
export async function benchKnn(o: KnnBenchOptions): Promise<KnnBenchResult> {
  const N = o.refs;
  const Q = o.queries ?? 64;
  const S = o.size ?? 32;
  const K = Math.min(o.k ?? 50, N);
  const D = S * S * 3;
  for (const [v, name] of [[N, 'refs'], [Q, 'queries'], [S, 'size'], [K, 'k']] as const) {
    if (!Number.isInteger(v) || v < 1) throw new RangeError(`${name} must be a positive integer, got ${v}`);
  }
  const log = o.log ?? (() => {});
  let matmul: KnnBenchResult['matmul'] = null;
  if (!o.skipMatmul) {
    // rows[n,D]·qT[D,b] is the kernel the index runs per shard.
    const g = new Generator((o.seed ?? 0) + 7);
    const rowsN = Math.min(4096, Math.max(N, 256));
    const rows = tf.tensor2d(g.uniformArray(rowsN * D), [rowsN, D]);
    const qT = tf.tensor2d(g.uniformArray(D * Q), [D, Q]);
    let best = Infinity;
    let bestCpu = Infinity;
    for (let i = 0; i < 4; i++) {
      const c = process.cpuUsage();
      const t0 = performance.now();
      const p = tf.matMul(rows, qT);
      p.dataSync();
      best = Math.min(best, performance.now() - t0);
      bestCpu = Math.min(bestCpu, cpuMsOf(process.cpuUsage(c)));
      p.dispose();
    }
    tf.dispose([rows, qT]);
    const flops = 2 * rowsN * D * Q;
    const ceiling = (ms: number): number => ((flops / ms / 1e6) * 1e9) / (2 * N * D);
    matmul = { shape: `[${rowsN},${D}]x[${D},${Q}]`, gflopsWall: flops / best / 1e6, gflopsCpu: flops / bestCpu / 1e6, ceilingWall: ceiling(best), ceilingIdle: ceiling(bestCpu) };
    log(
      `matMul ${matmul.shape}: ${matmul.gflopsWall.toFixed(1)} GFLOP/s wall, ${matmul.gflopsCpu.toFixed(1)} GFLOP/s per CPU-second` +
        ` → single-core brute-force ceiling ${matmul.ceilingWall.toFixed(0)} (wall) / ${matmul.ceilingIdle.toFixed(0)} (idle core) queries/s`,
    );
  }

  const gen = new Generator(o.seed ?? 0);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'diffmem-knn-bench-'));
  const idxDir = path.join(dir, 'index');
  const rates: Record<string, SearchRate> = {};
  const before = tf.memory().numTensors;
  let queries: tf.Tensor4D | null = null;
  try {
    function* batches(): Iterable<tf.Tensor4D> {
      for (let s = 0; s < N; s += 5000) {
        const n = Math.min(5000, N - s);
        yield tf.tensor4d(gen.uniformArray(n * D), [n, S, S, 3]);
      }
    }
    let t0 = performance.now();
    // The parallel searcher splits shards over its workers: give every worker at least one
    // (shards of at most ~64 MiB, the index's default, otherwise).
    const workers = o.workers ?? 1;
    const shardSize = workers > 1 ? Math.max(1, Math.min(8192, Math.floor(16_777_216 / D), Math.ceil(N / workers))) : undefined;
    const index = await ReferenceIndex.build(batches(), {
      dir: idxDir,
      disposeBatches: true,
      ...(shardSize !== undefined ? { shardSize } : {}),
      ...(o.streamedOnly ? { residentBytes: 0 } : {}),
    });
    const buildSeconds = (performance.now() - t0) / 1000;
    const shardStats = index.shardStats;
    log(`build (write shards + load): ${buildSeconds.toFixed(1)} s, ${JSON.stringify(shardStats)}`);
    queries = tf.tensor4d(new Generator((o.seed ?? 0) + 1).uniformArray(Q * D), [Q, S, S, 3]);
    const q = queries;
    const rate = (label: string, wallMs: number, cpuMs: number, threads: number): SearchRate => {
      const r = { label, wall: Q / (wallMs / 1000), idle: Q / (cpuMs / 1000 / threads), wallMs, cpuMs, threads };
      log(`${label}: ${r.wall.toFixed(1)} queries/s wall (${wallMs.toFixed(0)} ms for ${Q}); CPU ${(cpuMs / 1000).toFixed(2)} s → ${r.idle.toFixed(1)} queries/s on ${threads} idle core(s)`);
      return r;
    };
    const run = async (key: string, label: string, fn: () => unknown, threads = 1): Promise<void> => {
      await fn(); // warm-up (kernel compilation, allocator)
      const c = process.cpuUsage();
      const t = performance.now();
      await fn();
      rates[key] = rate(label, performance.now() - t, cpuMsOf(process.cpuUsage(c)), threads);
    };
    try {
      await run('k1', 'search k=1 rms-l2 (exact re-score)', () => index.search(q, { k: 1 }));
      await run('k50', `search k=${K} rms-l2 (exact re-score)`, () => index.search(q, { k: K }));
      if (o.variants ?? true) {
        await run('k50fast', `search k=${K} rms-l2 (exact: false)`, () => index.search(q, { k: K, exact: false }));
        await run('cos', `search k=${K} cosine`, () => index.search(q, { k: K, metric: 'cosine' }));
        if (N > K) await run('nl2', `nl2 generated-centric (k=${K}, α=0.5)`, () => nl2(q, index, { k: K }));
      }
    } finally {
      index.dispose();
    }
    if ((o.streamed ?? true) && !o.streamedOnly) {
      const streamed = await ReferenceIndex.load(idxDir, { residentBytes: 0 });
      try {
        await run('streamed', `streamed from disk (residentBytes 0), k=${K}`, () => streamed.search(q, { k: K }));
      } finally {
        streamed.dispose();
      }
    }
    if (workers > 1) {
      t0 = performance.now();
      const par = await ParallelSearcher.open(idxDir, { threads: workers });
      log(`ParallelSearcher.open (${par.threads} workers load their shards): ${((performance.now() - t0) / 1000).toFixed(1)} s`);
      try {
        await run('parK1', `parallel (${par.threads} threads) k=1 rms-l2`, () => par.search(q, { k: 1 }), par.threads);
        await run('parK50', `parallel (${par.threads} threads) k=${K} rms-l2`, () => par.search(q, { k: K }), par.threads);
        if (o.variants ?? true) await run('parCos', `parallel (${par.threads} threads) k=${K} cosine`, () => par.search(q, { k: K, metric: 'cosine' }), par.threads);
      } finally {
        await par.close();
      }
    }
    queries.dispose();
    queries = null;
    return { refs: N, queries: Q, dim: D, k: K, backend: tf.getBackend(), matmul, buildSeconds, shardStats, rates, leakedTensors: tf.memory().numTensors - before };
  } finally {
    queries?.dispose();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
