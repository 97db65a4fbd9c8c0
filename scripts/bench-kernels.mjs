#!/usr/bin/env node
// Micro-benchmark of the diffmem wasm gradient kernels (packages/core/src/backend/kernels).
//
//   node scripts/bench-kernels.mjs            # 3x3 64->64 on 8x32x32, stride 1 'same'
//   node scripts/bench-kernels.mjs --matmul   # also matMul shapes of attention / linear grads
//   node scripts/bench-kernels.mjs --all      # plus the other UNet conv shapes
//   node scripts/bench-kernels.mjs --cpu      # also time the cpu backend (slow)
//
// Times forward conv, Conv2DBackpropInput and Conv2DBackpropFilter on wasm with the built-in
// kernels ("old") and with registerWasmGradKernels() ("new"). The TypeScript sources are loaded
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
if (process.env.CHUNK) kernels.wasmKernelTuning.chunkFloats = Number(process.env.CHUNK);

/**
 * Best wall time and best process CPU time over `reps` runs, after two warm-ups (XNNPACK operator
 * creation, heap growth). The machine may be shared: the minimum is the least disturbed estimate,
 * and CPU time (wasm runs on this one thread) is robust to other processes taking the cores.
 */
function timeIt(fn, reps) {
  for (let i = 0; i < 2; i++) tf.dispose(fn());
  let wall = Infinity;
  let cpu = Infinity;
  for (let i = 0; i < reps; i++) {
    const c0 = process.cpuUsage();
    const t0 = performance.now();
    const r = fn();
    r.dataSync();
    wall = Math.min(wall, performance.now() - t0);
    const c = process.cpuUsage(c0);
    cpu = Math.min(cpu, (c.user + c.system) / 1000);
    tf.dispose(r);
  }
  return { wall, cpu };
}

/** [name, xShape, filterShape, strides, pad] */
const cases = [['3x3 64->64 8x32x32 s1 same', [8, 32, 32, 64], [3, 3, 64, 64], 1, 'same']];
if (args.has('--all')) {
  cases.push(
    ['3x3 64->64 8x32x32 s2 pad1', [8, 32, 32, 64], [3, 3, 64, 64], 2, [[0, 0], [1, 1], [1, 1], [0, 0]]],
    ['3x3 64->64 8x33x33 s2 valid', [8, 33, 33, 64], [3, 3, 64, 64], 2, 'valid'],
    ['1x1 64->128 8x32x32 s1', [8, 32, 32, 64], [1, 1, 64, 128], 1, 'valid'],
    ['3x3 128->128 8x16x16 s1 same', [8, 16, 16, 128], [3, 3, 128, 128], 1, 'same'],
    ['3x3 4->64 8x32x32 s1 same', [8, 32, 32, 4], [3, 3, 4, 64], 1, 'same'],
    ['3x3 64->4 8x32x32 s1 same', [8, 32, 32, 64], [3, 3, 64, 4], 1, 'same'],
  );
}

async function bench(backend, variant) {
  await tf.setBackend(backend);
  if (variant === 'new') kernels.registerWasmGradKernels();
  else kernels.unregisterWasmGradKernels();
  for (const [name, xShape, wShape, strides, pad] of cases) {
    const x = tf.randomNormal(xShape, 0, 1, 'float32', 1);
    const w = tf.randomNormal(wShape, 0, 0.1, 'float32', 2);
    const y = tf.conv2d(x, w, strides, pad);
    const dy = tf.randomNormal(y.shape, 0, 1, 'float32', 3);
    const reps = backend === 'cpu' ? 2 : 10;
    const fwd = timeIt(() => tf.conv2d(x, w, strides, pad), reps);
    const dx = timeIt(() => tf.conv2dTranspose(dy, w, xShape, strides, pad), reps);
    let dw = null;
    try {
      dw = timeIt(
        () => tf.engine().runKernel('Conv2DBackpropFilter', { x, dy }, { strides, pad, dataFormat: 'NHWC', filterShape: wShape }),
        reps,
      );
    } catch (e) {
      if (!/not registered|not found/i.test(String(e))) throw e;
    }
    const f = (v) => (v === null ? 'missing'.padStart(15) : `${v.wall.toFixed(1)} (${v.cpu.toFixed(1)})`.padStart(15));
    console.log(`${`${backend}${backend === 'wasm' ? ` (${variant})` : ''}`.padEnd(11)} ${name.padEnd(30)} fwd ${f(fwd)}  dx ${f(dx)}  dw ${f(dw)}`);
    tf.dispose([x, w, y, dy]);
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
    const old = timeIt(() => tf.matMul(a, b, ta, tb), 3);
    kernels.registerWasmGradKernels();
    const neu = timeIt(() => tf.matMul(a, b, ta, tb), 10);
    const f = (v) => `${v.wall.toFixed(1)} (${v.cpu.toFixed(1)})`.padStart(15);
    console.log(`matMul ${name.padEnd(34)} old ${f(old)}  new ${f(neu)}`);
    tf.dispose([a, b]);
  }
}
