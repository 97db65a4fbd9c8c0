// Benchmark of @diffmem/metrics' exact k-NN search (ReferenceIndex) on the wasm backend.
//
//   node scripts/bench-metrics.mjs [--refs 60000] [--queries 256] [--size 32] [--k 50] [--streamed]
//
// Runs the TypeScript sources directly: this file registers itself as a module-loader hook that
// compiles .ts with @swc/core and resolves @diffmem/* to their src/ (the "diffmem-source"
// condition), then, on the main thread, runs the benchmark.
import { isMainThread } from 'node:worker_threads';

// ---------------------------------------------------------------- loader hooks (hooks thread)
export async function resolve(specifier, context, nextResolve) {
  const conditions = [...new Set([...(context.conditions ?? []), 'diffmem-source'])];
  try {
    return await nextResolve(specifier, { ...context, conditions });
  } catch (err) {
    if (specifier.endsWith('.js') && (specifier.startsWith('.') || specifier.startsWith('/'))) {
      return nextResolve(specifier.slice(0, -3) + '.ts', { ...context, conditions });
    }
    throw err;
  }
}

export async function load(url, context, nextLoad) {
  if (!url.endsWith('.ts')) return nextLoad(url, context);
  const { readFileSync } = await import('node:fs');
  const { fileURLToPath } = await import('node:url');
  const swc = await import('@swc/core');
  const file = fileURLToPath(url);
  const out = swc.transformSync(readFileSync(file, 'utf8'), {
    filename: file,
    jsc: { parser: { syntax: 'typescript' }, target: 'es2022' },
    module: { type: 'es6' },
  });
  return { format: 'module', source: out.code, shortCircuit: true };
}

// ---------------------------------------------------------------- benchmark (main thread)
if (isMainThread && !process.env.DIFFMEM_BENCH_HOOKS) {
  process.env.DIFFMEM_BENCH_HOOKS = '1';
  const { register } = await import('node:module');
  register(import.meta.url);
  await main();
}

function arg(name, dflt) {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? Number(process.argv[i + 1]) : dflt;
}

async function main() {
  const fs = await import('node:fs');
  const os = await import('node:os');
  const path = await import('node:path');
  const tf = await import('@tensorflow/tfjs-core');
  await import('@tensorflow/tfjs-backend-wasm');
  await tf.setBackend('wasm');
  await tf.ready();
  const { ReferenceIndex, ParallelSearcher, nl2 } = await import('../packages/metrics/src/index.ts');
  const { Generator } = await import('../packages/core/src/index.ts');

  const N = arg('refs', 60000);
  const Q = arg('queries', 256);
  const S = arg('size', 32);
  const K = arg('k', 50);
  const D = S * S * 3;
  const streamedOnly = process.argv.includes('--streamed');
  console.log(`# ReferenceIndex bench: ${N} references of ${S}x${S}x3 (dim ${D}), ${Q} queries, backend ${tf.getBackend()}, ${os.cpus().length} cores, node ${process.version}`);

  // Raw matrix-product throughput for context: rows[n,D]·qT[D,b] is the kernel the index uses.
  {
    const rows = tf.randomUniform([4096, D]);
    const qT = tf.randomUniform([D, Q]);
    let best = Infinity;
    let bestCpu = Infinity;
    for (let i = 0; i < 4; i++) {
      const c = process.cpuUsage();
      const t0 = performance.now();
      const p = tf.matMul(rows, qT);
      p.dataSync();
      const cu = process.cpuUsage(c);
      best = Math.min(best, performance.now() - t0);
      bestCpu = Math.min(bestCpu, (cu.user + cu.system) / 1000);
      p.dispose();
    }
    const flops = 2 * 4096 * D * Q;
    const ceiling = (ms) => ((flops / ms / 1e6) * 1e9) / (2 * N * D);
    console.log(
      `matMul [4096,${D}]x[${D},${Q}]: ${(flops / best / 1e6).toFixed(1)} GFLOP/s wall, ${(flops / bestCpu / 1e6).toFixed(1)} GFLOP/s per CPU-second` +
        ` → single-core brute-force ceiling ${ceiling(best).toFixed(0)} (wall) / ${ceiling(bestCpu).toFixed(0)} (idle core) queries/s`,
    );
    rows.dispose();
    qT.dispose();
  }

  const gen = new Generator(0);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'diffmem-bench-'));
  const idxDir = path.join(dir, 'index');
  async function* batches() {
    for (let s = 0; s < N; s += 5000) {
      const n = Math.min(5000, N - s);
      yield tf.tensor4d(gen.uniformArray(n * D), [n, S, S, 3]);
    }
  }
  let t0 = performance.now();
  const index = await ReferenceIndex.build(batches(), { dir: idxDir, disposeBatches: true, residentBytes: streamedOnly ? 0 : undefined });
  console.log(`build (write shards + load): ${((performance.now() - t0) / 1000).toFixed(1)} s, ${JSON.stringify(index.shardStats)}`);

  const qData = new Generator(1).uniformArray(Q * D);
  const queries = tf.tensor4d(qData, [Q, S, S, 3]);
  // Wall-clock rate, plus the rate the same CPU time would give on otherwise idle cores
  // (process CPU time covers every thread; divided by the threads used), since other jobs on a
  // shared machine stretch wall time but not CPU time.
  const report = (label, wallS, cpuS, threads) => {
    const idle = Q / (cpuS / threads);
    console.log(`${label}: ${(Q / wallS).toFixed(1)} queries/s wall (${(wallS * 1000).toFixed(0)} ms for ${Q}); CPU ${cpuS.toFixed(2)} s → ${idle.toFixed(1)} queries/s on ${threads} idle core(s)`);
    return { wall: Q / wallS, idle };
  };
  const run = (label, fn) => {
    fn(); // warm-up (kernel compilation, allocator)
    const c = process.cpuUsage();
    const t = performance.now();
    fn();
    const cu = process.cpuUsage(c);
    return report(label, (performance.now() - t) / 1000, (cu.user + cu.system) / 1e6, 1);
  };
  const runAsync = async (label, fn, threads) => {
    await fn();
    const c = process.cpuUsage();
    const t = performance.now();
    await fn();
    const cu = process.cpuUsage(c);
    return report(label, (performance.now() - t) / 1000, (cu.user + cu.system) / 1e6, threads);
  };
  const before = tf.memory().numTensors;
  const results = {};
  results.k1 = run(`search k=1 rms-l2 (exact re-score)`, () => index.search(queries, { k: 1 }));
  results.k50 = run(`search k=${K} rms-l2 (exact re-score)`, () => index.search(queries, { k: K }));
  results.k50fast = run(`search k=${K} rms-l2 (exact: false)`, () => index.search(queries, { k: K, exact: false }));
  results.cos = run(`search k=${K} cosine`, () => index.search(queries, { k: K, metric: 'cosine' }));
  results.nl2 = run(`nl2 generated-centric (k=50, α=0.5)`, () => nl2(queries, index));
  if (tf.memory().numTensors !== before) console.log(`!! tensor leak: ${tf.memory().numTensors - before}`);
  index.dispose();

  if (!streamedOnly) {
    t0 = performance.now();
    const streamed = await ReferenceIndex.load(idxDir, { residentBytes: 0 });
    run(`streamed from disk (residentBytes 0), k=${K}`, () => streamed.search(queries, { k: K }));
    streamed.dispose();
  }
  const threads = arg('threads', os.cpus().length);
  if (threads > 1) {
    t0 = performance.now();
    const par = await ParallelSearcher.open(idxDir, { threads });
    console.log(`ParallelSearcher.open (${par.threads} workers load their shards): ${((performance.now() - t0) / 1000).toFixed(1)} s`);
    results.parK1 = await runAsync(`parallel (${par.threads} threads) k=1 rms-l2`, () => par.search(queries, { k: 1 }), par.threads);
    results.parK50 = await runAsync(`parallel (${par.threads} threads) k=${K} rms-l2`, () => par.search(queries, { k: K }), par.threads);
    results.parCos = await runAsync(`parallel (${par.threads} threads) k=${K} cosine`, () => par.search(queries, { k: K, metric: 'cosine' }), par.threads);
    await par.close();
  }
  queries.dispose();
  fs.rmSync(dir, { recursive: true, force: true });
  console.log(JSON.stringify({ refs: N, queries: Q, dim: D, loadavg: os.loadavg().map((v) => Number(v.toFixed(1))), ...Object.fromEntries(Object.entries(results).map(([k, v]) => [k, { wall: Number(v.wall.toFixed(1)), idle: Number(v.idle.toFixed(1)) }])) }));
}
