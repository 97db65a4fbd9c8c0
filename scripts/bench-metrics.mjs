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
  const os = await import('node:os');
  const tf = await import('@tensorflow/tfjs-core');
  await import('@tensorflow/tfjs-backend-wasm');
  await tf.setBackend('wasm');
  await tf.ready();
  // The measuring code is shared with `diffmem bench` (packages/cli/src/bench/knn.ts).
  const { benchKnn } = await import('../packages/cli/src/bench/knn.ts');

  const N = arg('refs', 60000);
  const Q = arg('queries', 256);
  const S = arg('size', 32);
  const K = arg('k', 50);
  const D = S * S * 3;
  const streamedOnly = process.argv.includes('--streamed');
  const threads = arg('threads', os.cpus().length);
  console.log(`# ReferenceIndex bench: ${N} references of ${S}x${S}x3 (dim ${D}), ${Q} queries, backend ${tf.getBackend()}, ${os.cpus().length} cores, node ${process.version}`);
  // Wall-clock rates, plus the rate the same CPU time would give on otherwise idle cores (process
  // CPU time covers every thread; divided by the threads used), since other jobs on a shared
  // machine stretch wall time but not CPU time.
  const r = await benchKnn({
    refs: N,
    queries: Q,
    size: S,
    k: K,
    workers: threads,
    streamedOnly,
    log: (line) => console.log(line),
  });
  if (r.leakedTensors !== 0) console.log(`!! tensor leak: ${r.leakedTensors}`);
  const rates = Object.fromEntries(Object.entries(r.rates).map(([k, v]) => [k, { wall: Number(v.wall.toFixed(1)), idle: Number(v.idle.toFixed(1)) }]));
  console.log(JSON.stringify({ refs: N, queries: Q, dim: D, loadavg: os.loadavg().map((v) => Number(v.toFixed(1))), ...rates }));
}
