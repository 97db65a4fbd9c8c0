#!/usr/bin/env node
// npm run bench — diffmem (TensorFlow.js wasm / cpu) side by side with PyTorch, in one run.
//
//   npm run build && node scripts/bench.mjs [--quick] [--no-torch] [--no-extras] [--out bench-results.json]
//
// For two UNet2DModel configurations — (a) the demo model: smallUNetConfig({sampleSize 16,
// channels 1, blockOutChannels [32,64,64], numClassEmbeds 11}), batch 8; (b) a CIFAR-like reduced
// model: 32×32×3, [32,64,64,64], 2 layers per block, attention at 16×16, batch 8 — it times
//   forward     ε_θ(x_t, t[, y]) (no gradients)
//   train step  forward + backward + AdamW update, MSE loss on ε (core's diffusionLoss and
//               AdamOptimizer, the ops trainDiffusionModel runs per step, without EMA/clipping)
//   DDIM        50 deterministic steps (core's DDIMPipeline, diffusers' default DDIMScheduler)
// on the wasm backend (selected through core's selectBackend, which registers the wasm gradient
// kernels) and — forward only, at a reduced batch for (b) because the pure-JS kernels are 20–40×
// slower — on the cpu backend. The same weights (saved with saveUNet2DToFolder, read by
// scripts/reference/st_io.py) and the same inputs go to the PyTorch reference
// scripts/reference/unet2d_reference.py, run by scripts/reference/bench_torch.py with 1 thread
// (wasm in Node is single-threaded) and with 2; outputs are compared before anything is timed.
// Then the ReferenceIndex (scripts/bench-metrics.mjs) and video decoding (scripts/bench-video.mjs)
// run as child processes with small settings.
//
// The diffmem measurements are `diffmem bench`'s own code (packages/cli/dist/bench/, built from
// packages/cli/src/bench/: UNet timing here, k-NN in bench-metrics.mjs, conv kernels in
// bench-kernels.mjs); this script adds the PyTorch side-by-side, parity checks and video decoding.
//
// Every figure is reported as wall time AND process CPU time (all threads): on a shared machine
// other jobs stretch wall time but not CPU time. Results go to bench-results.json (gitignored).
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const argv = process.argv.slice(2);
const flag = (name) => argv.includes(`--${name}`);
const opt = (name, dflt) => {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 && argv[i + 1] !== undefined ? argv[i + 1] : dflt;
};
const quick = flag('quick');
const outFile = path.resolve(root, opt('out', 'bench-results.json'));
const t0All = performance.now();
const cpu0All = process.cpuUsage();

let core;
try {
  core = await import('../packages/core/dist/index.js');
} catch (err) {
  console.error(`bench: cannot import packages/core/dist (${String(err.message).split('\n')[0]}). Build first: npm run build`);
  process.exit(2);
}
const tf = await import('@tensorflow/tfjs-core');
const cliBench = await import('../packages/cli/dist/bench/unet.js');
const wasmBackend = await import('@tensorflow/tfjs-backend-wasm');

// ------------------------------------------------------------------------------------ helpers
const cpuMs = (u) => (u.user + u.system) / 1000;

const { timed } = await import('../packages/cli/dist/bench/timing.js');

const fmt = (ms) => (ms === undefined || ms === null ? '—' : ms >= 10000 ? `${(ms / 1000).toFixed(1)} s` : `${ms.toFixed(ms < 10 ? 1 : 0)} ms`);
const ratio = (a, b) => (a && b ? `${(a / b).toFixed(2)}×` : '—');
const pad = (s, n) => String(s).padEnd(n);
const lpad = (s, n) => String(s).padStart(n);

function printTable(title, rows) {
  console.log(`\n${title}`);
  const head = ['operation', 'implementation', 'wall', 'CPU', 'wall / torch-1t', 'CPU / torch-1t'];
  const widths = [22, 24, 10, 10, 16, 15];
  const line = (cells) => cells.map((c, i) => (i < 2 ? pad(c, widths[i]) : lpad(c, widths[i]))).join(' ');
  console.log(line(head));
  console.log(widths.map((w) => '-'.repeat(w)).join(' '));
  for (const r of rows) {
    console.log(line([r.op, r.impl, fmt(r.t?.wallMs), fmt(r.t?.cpuMs), r.base ? ratio(r.t?.wallMs, r.base.wallMs) : '', r.base ? ratio(r.t?.cpuMs, r.base.cpuMs) : '']));
  }
}

function tensorEntry(t) {
  const data = t.dataSync();
  return { dtype: t.dtype === 'int32' ? 'I32' : 'F32', shape: [...t.shape], data: t.dtype === 'int32' ? Int32Array.from(data) : Float32Array.from(data) };
}

/** Runs a shell command and returns stdout plus the children's CPU time (bash `times`). */
function runChild(label, command, timeoutMs) {
  const w = performance.now();
  const r = spawnSync('bash', ['-c', `${command}; rc=$?; times >&2; exit $rc`], { cwd: root, encoding: 'utf8', timeout: timeoutMs, maxBuffer: 64 << 20 });
  const wallMs = performance.now() - w;
  const timesLines = (r.stderr ?? '').trim().split('\n').slice(-2);
  const toMs = (s) => {
    const m = /(\d+)m([\d.]+)s/.exec(s);
    return m ? (Number(m[1]) * 60 + Number(m[2])) * 1000 : NaN;
  };
  const childCpu = (timesLines[1] ?? '').split(/\s+/).reduce((a, s) => a + (toMs(s) || 0), 0);
  if (r.status !== 0) {
    const why = r.error ? r.error.message : `exit ${r.status}`;
    console.log(`  ${label} failed (${why}): ${(r.stderr ?? '').trim().split('\n').slice(-4, -2).join(' | ')}`);
  }
  return { ok: r.status === 0, stdout: r.stdout ?? '', stderr: r.stderr ?? '', wallMs, cpuMs: childCpu };
}

// ------------------------------------------------------------------------------------ setup
const selection = await core.selectBackend({ prefer: ['wasm'] });
const wasmThreads = wasmBackend.getThreadsCount?.() ?? 1;
const wasmSimd = await tf.env().getAsync('WASM_HAS_SIMD_SUPPORT');
const wasmMultithread = await tf.env().getAsync('WASM_HAS_MULTITHREAD_SUPPORT');
const loadBefore = os.loadavg();
console.log(`# diffmem bench — node ${process.version}, ${os.cpus().length} cores (${os.cpus()[0]?.model ?? '?'}), load average ${loadBefore.map((v) => v.toFixed(1)).join(' ')}`);
console.log(`# backend: ${selection.reason}; wasm SIMD ${wasmSimd}, multithread ${wasmMultithread} → ${wasmThreads} thread(s)`);
console.log('# times: median of the timed repeats after a warm-up; CPU = process CPU time over all threads');

const python = process.env.DIFFMEM_PYTHON ?? (fs.existsSync('/usr/bin/python3') ? '/usr/bin/python3' : 'python3');
let torchVersion = null;
let torchMissing = 'skipped (--no-torch)';
if (!flag('no-torch')) {
  const probe = spawnSync(python, ['-c', 'import torch; print(torch.__version__)'], { encoding: 'utf8' });
  if (probe.status === 0) torchVersion = probe.stdout.trim();
  else torchMissing = `torch was not found (${python}: ${(probe.stderr || probe.error?.message || '').trim().split('\n').pop()})`;
}
console.log(torchVersion ? `# PyTorch ${torchVersion} via ${python}` : `# ${torchMissing}; showing diffmem figures only`);

const work = fs.mkdtempSync(path.join(os.tmpdir(), 'diffmem-bench-'));
const reps = quick ? { forward: 2, train: 2, ddim: 1 } : { forward: 5, train: 3, ddim: 1 };
const ddimSteps = quick ? 10 : 50;
const checkSteps = 10;

const CONFIGS = [
  {
    name: 'demo',
    title: 'demo model: 16×16×1, blocks [32,64,64], attention at 8×8, class-conditional (11 rows)',
    config: core.smallUNetConfig({ sampleSize: 16, channels: 1, blockOutChannels: [32, 64, 64], numClassEmbeds: 11 }),
    batch: 8,
    cpuBatch: 8,
  },
  {
    name: 'cifar',
    title: 'CIFAR-like reduced model: 32×32×3, blocks [32,64,64,64], 2 layers/block, attention at 16×16',
    config: core.smallUNetConfig({ sampleSize: 32, channels: 3, blockOutChannels: [32, 64, 64, 64], layersPerBlock: 2 }),
    batch: 8,
    // The cpu backend needs ~13 s of CPU for one batch-8 forward here; batch 2 keeps the bench short.
    cpuBatch: 2,
  },
];

// ------------------------------------------------------------------------------------ diffmem
const results = { diffmem: {}, torch: null, checks: {}, profile: {} };
const plan = { threads: [1], configs: [], knn: { refs: 10000, queries: 64, dim: 3072, k: 50 } };

for (const c of CONFIGS) {
  await core.selectBackend({ prefer: ['wasm'] });
  const tensorsBefore = tf.memory().numTensors;
  const S = c.config.sample_size;
  const C = c.config.in_channels;
  const B = c.batch;
  const unet = core.UNet2DModel.fromConfig(c.config, { seed: 0 });
  const dir = path.join(work, c.name);
  await core.saveUNet2DToFolder(unet, path.join(dir, 'unet'));
  console.log(`\n## ${c.name}: ${c.title}; ${(unet.paramCount() / 1e6).toFixed(2)} M parameters, batch ${B}`);

  // forward, DDIM and train step (the trainer's per-step work: loss, gradients, AdamW, without EMA
  // and clipping), profiled by kernel, with the measuring code of `diffmem bench`
  // (packages/cli/src/bench/unet.ts); it keeps the inputs/outputs for the parity check.
  const b = await cliBench.benchUNet(unet, { batch: B, reps, ddimSteps, keepIO: true, checkSteps, profile: true, seed: 1234 });
  const r = (results.diffmem[c.name] = { params: unet.paramCount(), batch: B, cpuBatch: c.cpuBatch, config: c.config, wasm: {}, cpu: {} });
  r.wasm.forward = b.forward;
  r.wasm.ddim = b.ddim;
  r.wasm.train = b.train;
  results.profile[c.name] = b.profile;
  const { sample: x, timesteps: t, classLabels: yOrNull, outForward, trainX0: x0, trainNoise: noise, trainT: tTrain, trainLoss: firstLoss, ddimLatents: latents, ddimOut: ddimCheck } = b.io;
  const y = yOrNull ?? undefined;

  // parity inputs/outputs for the PyTorch side
  const io = {
    sample: tensorEntry(x),
    timesteps: tensorEntry(t),
    out_forward: tensorEntry(outForward),
    train_x0: tensorEntry(x0),
    train_noise: tensorEntry(noise),
    train_t: tensorEntry(tTrain),
    train_loss: { dtype: 'F32', shape: [1], data: Float32Array.of(firstLoss) },
    ddim_latents: tensorEntry(latents),
    ddim_out: tensorEntry(ddimCheck),
    ...(y ? { class_labels: tensorEntry(y) } : {}),
  };
  fs.writeFileSync(path.join(dir, 'io.safetensors'), core.writeSafetensors(io));
  plan.configs.push({ name: c.name, unetDir: path.join(dir, 'unet'), io: path.join(dir, 'io.safetensors'), batch: B, cpuBatch: c.cpuBatch, reps, ddimSteps, checkSteps });
  tf.dispose([outForward, ddimCheck]);
  unet.dispose();

  // cpu backend: forward only (pure-JS kernels), on a fresh copy of the same weights
  await core.selectBackend({ prefer: ['cpu'] });
  const unetCpu = await core.loadUNet2DFromFolder(path.join(dir, 'unet'));
  const cb = c.cpuBatch;
  const xs = tf.slice(x, [0, 0, 0, 0], [cb, S, S, C]);
  const ts = tf.slice(t, [0], [cb]);
  const ys = y ? tf.slice(y, [0], [cb]) : undefined;
  r.cpu.forward = {
    ...(await timed(async () => {
      const o = tf.tidy(() => unetCpu.predict(xs, ts, ys));
      await o.data();
      o.dispose();
    }, quick ? 1 : 2)),
    batch: cb,
  };
  tf.dispose([xs, ts, ys].filter(Boolean));
  unetCpu.dispose();
  await core.selectBackend({ prefer: ['wasm'] });
  tf.dispose([x, t, y, x0, noise, tTrain, latents].filter(Boolean));
  const leaked = tf.memory().numTensors - tensorsBefore;
  if (leaked !== 0) console.log(`  warning: ${leaked} tensors left allocated after the ${c.name} runs`);
  console.log(
    `  wasm forward ${fmt(r.wasm.forward.cpuMs)} CPU, train step ${fmt(r.wasm.train.cpuMs)} CPU, DDIM ${ddimSteps} ${fmt(r.wasm.ddim.cpuMs)} CPU; ` +
      `cpu forward (batch ${cb}) ${fmt(r.cpu.forward.cpuMs)} CPU`,
  );
}

// ------------------------------------------------------------------------------------ PyTorch
/**
 * A directory whose libblas.so.3 is OpenBLAS, for torch's matmuls. Debian's torch links the
 * system libblas.so.3, which here is the reference (netlib) BLAS — ~5 GFLOP/s, which would make
 * torch's attention and linear layers, not diffmem, the slow side. Order: $DIFFMEM_TORCH_OPENBLAS
 * ("none" disables), the installed openblas-pthread package, or that package's .deb in apt's cache
 * unpacked privately into the temp folder (nothing is installed).
 */
function findOpenBlas() {
  const has = (dir) => fs.existsSync(path.join(dir, 'libblas.so.3'));
  const env = process.env.DIFFMEM_TORCH_OPENBLAS;
  if (env === 'none') return null;
  if (env) return has(env) ? env : null;
  if (process.platform !== 'linux' || process.arch !== 'x64') return null;
  const system = '/usr/lib/x86_64-linux-gnu/openblas-pthread';
  if (has(system)) return system;
  const cache = '/var/cache/apt/archives';
  const deb = fs.existsSync(cache) ? fs.readdirSync(cache).find((f) => /^libopenblas0-pthread_.*_amd64\.deb$/.test(f)) : undefined;
  if (!deb) return null;
  const dest = path.join(os.tmpdir(), 'diffmem-openblas');
  const dir = path.join(dest, 'usr/lib/x86_64-linux-gnu/openblas-pthread');
  if (!has(dir)) spawnSync('dpkg-deb', ['-x', path.join(cache, deb), dest]);
  return has(dir) ? dir : null;
}

const blasLabel = (lib) => (/openblas/i.test(lib ?? '') ? 'OpenBLAS' : /\/blas\/libblas/.test(lib ?? '') ? 'reference BLAS' : 'system BLAS');
results.torch = null;
if (torchVersion) {
  const openblas = findOpenBlas();
  const runs = openblas
    ? [{ key: '1t', threads: 1, blasDir: openblas }, { key: '2t', threads: 2, blasDir: openblas }, { key: '1t-system', threads: 1, blasDir: null }]
    : [{ key: '1t', threads: 1, blasDir: null }, { key: '2t', threads: 2, blasDir: null }];
  console.log(
    `\n## PyTorch ${torchVersion}: parity checks, then the same operations` +
      (openblas ? ` (matmuls on OpenBLAS from ${openblas}; then once with the system BLAS)` : ' (system BLAS; no OpenBLAS found)'),
  );
  results.torch = { version: torchVersion, openblas, runs: [] };
  for (const run of runs) {
    const planFile = path.join(work, `plan-${run.key}.json`);
    const torchOut = path.join(work, `torch-${run.key}.json`);
    // k-NN only where the figures are compared (the first two runs)
    fs.writeFileSync(
      planFile,
      JSON.stringify({ ...plan, threads: [run.threads], knn: run.key === '1t-system' ? null : plan.knn, logChecks: run === runs[0] }, null, 1),
    );
    const env = {
      ...process.env,
      // OpenMP's default spin-waiting makes 2 threads 5–20× slower than 1 when other processes
      // compete for the 2 cores (threads burn their slices waiting at barriers); passive waiting
      // gives torch its best multi-threaded figure on a shared machine.
      OMP_WAIT_POLICY: process.env.OMP_WAIT_POLICY ?? 'PASSIVE',
      OPENBLAS_NUM_THREADS: String(run.threads),
      PYTHONDONTWRITEBYTECODE: '1',
      ...(run.blasDir ? { LD_LIBRARY_PATH: [run.blasDir, process.env.LD_LIBRARY_PATH].filter(Boolean).join(':') } : {}),
    };
    const py = spawnSync(python, [path.join(root, 'scripts/reference/bench_torch.py'), planFile, torchOut], {
      cwd: root,
      encoding: 'utf8',
      stdio: ['ignore', 'inherit', 'inherit'],
      env,
      timeout: 10 * 60 * 1000,
    });
    if (py.status === 0 && fs.existsSync(torchOut)) {
      const tj = JSON.parse(fs.readFileSync(torchOut, 'utf8'));
      const label = `torch ${run.threads}t, ${blasLabel(tj.blas)}`;
      results.torch.runs.push({ ...run, label, blas: tj.blas, checks: tj.checks, results: tj.results[String(run.threads)] });
      if (run.key === '1t') results.checks = tj.checks;
    } else {
      console.log(`  bench_torch.py (${run.key}) failed (${py.error?.message ?? `exit ${py.status}`})`);
    }
  }
}

// ------------------------------------------------------------------------------------ tables
const torchRuns = results.torch?.runs ?? [];
const baseRun = torchRuns.find((r) => r.key === '1t');
if (baseRun) {
  console.log(`\nRatios are diffmem / ${baseRun.label} (> 1: diffmem slower). 't' = threads.`);
}
for (const c of CONFIGS) {
  const d = results.diffmem[c.name];
  const base = baseRun?.results?.[c.name];
  const chk = results.checks?.[c.name];
  const rows = [];
  const add = (op, dm, dmImpl, key, withTorch = true) => {
    rows.push({ op, impl: dmImpl, t: dm, base: base?.[key] });
    if (!withTorch) return;
    for (const run of torchRuns) rows.push({ op: '', impl: run.label, t: run.results?.[c.name]?.[key], base: base?.[key] });
  };
  add(`forward, batch ${d.batch}`, d.wasm.forward, 'diffmem wasm', 'forward');
  add('train step (AdamW)', d.wasm.train, 'diffmem wasm', 'train');
  add(`DDIM ${d.wasm.ddim.steps} steps`, d.wasm.ddim, 'diffmem wasm', 'ddim');
  const cpuKey = d.cpuBatch === d.batch ? 'forward' : 'forwardCpuBatch';
  add(`forward, batch ${d.cpuBatch}`, d.cpu.forward, 'diffmem cpu (pure JS)', cpuKey, cpuKey !== 'forward');
  const parity = chk
    ? `\n  parity vs torch (same weights and inputs): forward max|Δ| ${chk.forwardMaxAbsDiff.toExponential(1)} (outputs up to ${chk.forwardMaxAbs.toFixed(2)}), ` +
      `first train-step loss ${chk.trainLossDiffmem.toFixed(6)} vs ${chk.trainLossTorch.toFixed(6)}, DDIM ${checkSteps}-step samples max|Δ| ${chk.ddimMaxAbsDiff.toExponential(1)}`
    : '';
  printTable(`${c.name}: ${c.title}; ${(d.params / 1e6).toFixed(2)} M params${parity}`, rows);
  const p = results.profile[c.name];
  console.log(
    `  wasm train step by kernel (${p.kernelsPerStep} kernel calls, ${fmt(p.kernelMs)} profiled): ` +
      p.top.map((k) => `${k.name} ${(k.share * 100).toFixed(0)}%`).join(', '),
  );
}
console.log(
  '\ncpu backend: forward only — its pure-JS kernels are 20–40× slower than wasm, so a training step or a 50-step DDIM run ' +
    `would take minutes; the CIFAR-like model runs at batch ${CONFIGS[1].cpuBatch} there (torch timed at the same batch).`,
);
if (torchRuns.length) {
  for (const run of torchRuns) {
    const m = run.results?.matmul;
    if (m) console.log(`matmul [4096,3072]x[3072,64], ${run.label}: ${m.gflopsWall.toFixed(1)} GFLOP/s wall, ${m.gflopsCpu.toFixed(1)} GFLOP/s per CPU-second (${path.basename(run.blas.split(', ').pop())})`);
  }
}

// ------------------------------------------------------------------------------------ extras
if (!flag('no-extras')) {
  console.log('\n## ReferenceIndex (scripts/bench-metrics.mjs --refs 10000 --queries 64 --k 50 --threads 2)');
  const m = runChild('bench-metrics', `"${process.execPath}" scripts/bench-metrics.mjs --refs 10000 --queries 64 --k 50 --threads 2`, 5 * 60 * 1000);
  const jsonLine = m.stdout.trim().split('\n').reverse().find((l) => l.startsWith('{'));
  results.metrics = { ok: m.ok, wallMs: m.wallMs, childCpuMs: m.cpuMs, summary: jsonLine ? JSON.parse(jsonLine) : null, stdout: m.stdout };
  for (const l of m.stdout.split('\n')) if (/^(matMul|search|nl2|parallel)/.test(l)) console.log(`  ${l}`);
  for (const run of torchRuns) {
    const k = run.results?.knn;
    if (k) console.log(`  ${run.label}: brute force (one matmul + topk), k=50: ${k.queriesPerSecondWall.toFixed(1)} queries/s wall, ${k.queriesPerSecondCpu.toFixed(1)} per CPU-second`);
  }
  console.log(`  (child process: ${fmt(m.wallMs)} wall, ${fmt(m.cpuMs)} CPU)`);

  const clip = path.resolve(root, '../shared/data/Megamind.avi');
  if (fs.existsSync(clip)) {
    console.log(`\n## video decoding (scripts/bench-video.mjs --runs 1, ${path.relative(root, clip)})`);
    const v = runChild('bench-video', `"${process.execPath}" scripts/bench-video.mjs "${clip}" --runs 1`, 5 * 60 * 1000);
    for (const l of v.stdout.split('\n')) if (/frames\/s/.test(l)) console.log(`  ${l}`);
    const jl = v.stdout.split('\n').find((l) => l.startsWith('JSON '));
    results.video = { ok: v.ok, wallMs: v.wallMs, childCpuMs: v.cpuMs, summary: jl ? JSON.parse(jl.slice(5)) : null };
    console.log(`  (child process incl. ffmpeg: ${fmt(v.wallMs)} wall, ${fmt(v.cpuMs)} CPU)`);
  } else {
    console.log(`\n## video decoding skipped: ${clip} not found`);
  }
}

// ------------------------------------------------------------------------------------ summary
{
  const base = baseRun?.results;
  const lines = [];
  if (base) {
    for (const c of CONFIGS) {
      const d = results.diffmem[c.name];
      const ops = ['forward', 'train', 'ddim'].map((k) => [k, d.wasm[k].cpuMs / base[c.name][k].cpuMs]);
      const geo = Math.exp(ops.reduce((a, [, r]) => a + Math.log(r), 0) / ops.length);
      lines.push(`${c.name}: diffmem wasm needs ${geo.toFixed(1)}× the CPU time of ${baseRun.label} (${ops.map(([k, r]) => `${k} ${r.toFixed(1)}×`).join(', ')})`);
    }
  }
  const mm = /matMul \[4096,3072\]x\[3072,64\]: ([\d.]+) GFLOP\/s wall, ([\d.]+) GFLOP\/s per CPU-second/.exec(results.metrics?.stdout ?? '');
  const tmm = baseRun?.results?.matmul;
  if (mm && tmm) lines.push(`matrix product [4096,3072]x[3072,64]: wasm ${mm[2]} GFLOP/s per CPU-second, ${baseRun.label} ${tmm.gflopsCpu.toFixed(1)}`);
  for (const c of CONFIGS) {
    const p = results.profile[c.name];
    const conv = p.top.filter((k) => /Conv2D/.test(k.name)).reduce((a, k) => a + k.share, 0);
    lines.push(`${c.name}: a wasm train step is ${p.kernelsPerStep} kernel calls; convolutions and their gradients take ${(conv * 100).toFixed(0)}% of kernel time`);
  }
  if (lines.length) {
    console.log('\n## summary');
    for (const l of lines) console.log(`  ${l}`);
    console.log('  wasm in Node runs on one thread with 128-bit SIMD and no FMA; see docs/backends.md for what limits it.');
  }
  results.summary = lines;
  if (results.metrics) delete results.metrics.stdout;
}

// ------------------------------------------------------------------------------------ output
const total = { wallMs: performance.now() - t0All, cpuMs: cpuMs(process.cpuUsage(cpu0All)) };
const out = {
  date: new Date().toISOString(),
  machine: { node: process.version, cores: os.cpus().length, cpu: os.cpus()[0]?.model ?? null, loadavgBefore: loadBefore, loadavgAfter: os.loadavg() },
  tfjs: { version: tf.version_core, backend: selection.reason, wasmSimd, wasmMultithread, wasmThreads },
  quick,
  ...results,
  torch: results.torch ?? torchMissing,
  totalDiffmemProcess: total,
};
fs.writeFileSync(outFile, `${JSON.stringify(out, null, 1)}\n`);
fs.rmSync(work, { recursive: true, force: true });
console.log(`\nwrote ${path.relative(process.cwd(), outFile) || outFile}; bench took ${fmt(total.wallMs)} wall (this process ${fmt(total.cpuMs)} CPU), load average now ${os.loadavg().map((v) => v.toFixed(1)).join(' ')}`);
