#!/usr/bin/env node
// Micro-benchmark of the diffmem wasm gradient kernels (packages/core/src/backend/kernels).
//
//   node scripts/bench-kernels.mjs            # 3x3 64->64 on 8x32x32, stride 1 'same'
//   node scripts/bench-kernels.mjs --matmul   # also matMul shapes of attention / linear grads
//   node scripts/bench-kernels.mjs --all      # plus the other UNet conv shapes
//   node scripts/bench-kernels.mjs --cpu      # also time the cpu backend (slow)
//
// Times forward conv, Conv2DBackpropInput and Conv2DBackpropFilter on wasm with the built-in
// kernels ("old") and with registerWasmGradKernels() ("new"), with the measuring code of
// `diffmem bench` (packages/cli/src/bench/kernels.ts). The TypeScript sources are loaded
// through module hooks that transpile them with @swc/core (a dev dependency).
import { createRequire, register } from 'node:module';
import { pathToFileURL } from 'node:url';

// Module hooks so Node can import the TypeScript sources: './x.js' imports from a .ts file resolve
// to './x.ts', and .ts files are transpiled by @swc/core. The hook module is a data: URL, which
// cannot resolve bare specifiers, so it gets swc's file URL.
const swcUrl = pathToFileURL(createRequire(import.meta.url).resolve('@swc/core')).href;
const hooks = `
import { readFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
export async function resolve(specifier, context, next) {
  if (context.parentURL?.endsWith('.ts') && specifier.startsWith('.') && specifier.endsWith('.js')) {
    const ts = new URL(specifier.slice(0, -3) + '.ts', context.parentURL);
    if (existsSync(fileURLToPath(ts))) return { url: ts.href, shortCircuit: true };
  }
  return next(specifier, context);
}
export async function load(url, context, next) {
  if (!url.endsWith('.ts')) return next(url, context);
  const { transform } = (await import(${JSON.stringify(swcUrl)})).default;
  const out = await transform(await readFile(fileURLToPath(url), 'utf8'), {
    filename: fileURLToPath(url),
    jsc: { parser: { syntax: 'typescript' }, target: 'es2022' },
    module: { type: 'es6' },
  });
  return { format: 'module', source: out.code, shortCircuit: true };
}`;
register('data:text/javascript,' + encodeURIComponent(hooks), import.meta.url);

const args = new Set(process.argv.slice(2));
const tf = await import('@tensorflow/tfjs-core');
await import('@tensorflow/tfjs-backend-cpu');
await import('@tensorflow/tfjs-backend-wasm');
const kernels = await import('../packages/core/src/backend/kernels/index.ts');
// The measuring code is shared with `diffmem bench` (packages/cli/src/bench/).
const { benchConvKernels, convCases } = await import('../packages/cli/src/bench/kernels.ts');
const { bestOf } = await import('../packages/cli/src/bench/timing.ts');
if (process.env.CHUNK) kernels.wasmKernelTuning.chunkFloats = Number(process.env.CHUNK);

// Best wall time and best process CPU time over the runs, after two warm-ups (XNNPACK operator
// creation, heap growth): the machine may be shared, the minimum is the least disturbed estimate,
// and CPU time (wasm runs on this one thread) is robust to other processes taking the cores.
const cases = convCases(args.has('--all'));

async function bench(backend, variant) {
  await tf.setBackend(backend);
  if (variant === 'new') kernels.registerWasmGradKernels();
  else kernels.unregisterWasmGradKernels();
  const results = await benchConvKernels(cases, { reps: backend === 'cpu' ? 2 : 10 });
  for (const r of results) {
    const f = (v) => (v === null ? 'missing'.padStart(15) : `${v.wallMs.toFixed(1)} (${v.cpuMs.toFixed(1)})`.padStart(15));
    console.log(`${`${backend}${backend === 'wasm' ? ` (${variant})` : ''}`.padEnd(11)} ${r.name.padEnd(30)} fwd ${f(r.forward)}  dx ${f(r.inputGrad)}  dw ${f(r.filterGrad)}`);
  }
}

console.log('ms, best of N: wall (CPU time of this process)');
await bench('wasm', 'old');
await bench('wasm', 'new');
if (args.has('--cpu')) await bench('cpu', 'cpu');

if (args.has('--matmul')) {
  await tf.setBackend('wasm');
  const mm = [
    ['linear [2048,256]x[256,256]', [2048, 256], [256, 256], false, false],
    ['linear grad dy·Wt', [2048, 256], [256, 256], false, true],
    ['linear grad xt·dy', [2048, 256], [2048, 256], true, false],
    ['attn q·kt [8,256,64]', [8, 256, 64], [8, 256, 64], false, true],
    ['attn p·v [8,256,256]x[8,256,64]', [8, 256, 256], [8, 256, 64], false, false],
  ];
  for (const [name, as, bs, ta, tb] of mm) {
    const a = tf.randomNormal(as, 0, 1, 'float32', 4);
    const b = tf.randomNormal(bs, 0, 1, 'float32', 5);
    kernels.unregisterWasmGradKernels();
    const run = () => tf.tidy(() => tf.matMul(a, b, ta, tb).dataSync());
    const old = await bestOf(run, 3);
    kernels.registerWasmGradKernels();
    const neu = await bestOf(run, 10);
    const f = (v) => `${v.wallMs.toFixed(1)} (${v.cpuMs.toFixed(1)})`.padStart(15);
    console.log(`matMul ${name.padEnd(34)} old ${f(old)}  new ${f(neu)}`);
    tf.dispose([a, b]);
  }
}
