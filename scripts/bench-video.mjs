#!/usr/bin/env node
// Decode-throughput benchmark for @diffmem/video (plain Node ESM, no test runner).
//
//   npm run build && node scripts/bench-video.mjs [clip] [--runs N]
//
// Measures frames/s for: the bare ffmpeg command writing to /dev/null (the ceiling), raw 8-bit
// streaming through Node (decodeRawFrames), and whole-clip decoding to a float32 Video tensor
// (decodeVideo) — at 64×64 (the metric resolution) and at full size. Default clip:
// ../shared/data/Megamind.avi (720×528 XviD, 270 frames). Set FFMPEG_PATH/FFPROBE_PATH to compare
// binaries; DIFFMEM_VIDEO_MODULE=/abs/path/to/dist/index.js to bench a build elsewhere.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const args = process.argv.slice(2);
const runsAt = args.indexOf('--runs');
const runs = runsAt >= 0 ? Number(args[runsAt + 1]) : 5;
const clip = path.resolve(args.find((a, i) => !a.startsWith('--') && args[i - 1] !== '--runs') ?? path.join(root, '../shared/data/Megamind.avi'));
if (!existsSync(clip)) {
  console.error(`bench-video: clip not found: ${clip} (pass a path, or provide ../shared/data/Megamind.avi)`);
  process.exit(2);
}

const spec = process.env.DIFFMEM_VIDEO_MODULE ? pathToFileURL(path.resolve(process.env.DIFFMEM_VIDEO_MODULE)).href : '@diffmem/video';
let video;
try {
  video = await import(spec);
} catch (err) {
  console.error(`bench-video: cannot import ${spec} (${err.message.split('\n')[0]}). Build first: npm run build`);
  process.exit(2);
}
const tf = await import('@tensorflow/tfjs-core');
await import('@tensorflow/tfjs-backend-wasm');
await tf.setBackend('wasm');
await tf.ready();

const { ffmpeg, ffprobe } = await video.resolveBinaries();
const probe = await video.probeVideo(clip);
console.log(`clip      ${clip}: ${probe.width}x${probe.height} ${probe.codec}, ${probe.frameCount} frames @ ${probe.fps.toFixed(3)} fps`);
console.log(`ffmpeg    ${ffmpeg.path} (${ffmpeg.source}) ${ffmpeg.version}`);
console.log(`ffprobe   ${ffprobe.path} (${ffprobe.source})`);
console.log(`runs      ${runs} (median reported), ${process.versions.node}, tfjs backend ${tf.getBackend()}\n`);

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

async function bench(name, fn) {
  await fn(); // warm-up (page cache, JIT)
  const rates = [];
  let frames = 0;
  for (let i = 0; i < runs; i++) {
    const t0 = performance.now();
    frames = await fn();
    rates.push(frames / ((performance.now() - t0) / 1000));
  }
  const m = median(rates);
  console.log(`${name.padEnd(44)} ${m.toFixed(0).padStart(6)} frames/s  (${frames} frames, ${(1000 / m).toFixed(2)} ms/frame)`);
  return m;
}

const fpsMode = video.supportsFpsMode(ffmpeg) ? '-fps_mode' : '-vsync';
const bare = (w, h) => () => {
  const r = spawnSync(ffmpeg.path, ['-hide_banner', '-nostdin', '-loglevel', 'error', '-i', clip, '-map', '0:v:0', '-an',
    '-vf', `scale=${w}:${h}:flags=bicubic`, fpsMode, 'passthrough', '-f', 'rawvideo', '-pix_fmt', 'rgb24', '-y', '/dev/null']);
  if (r.status !== 0) throw new Error(String(r.stderr));
  return Promise.resolve(probe.frameCount);
};
const raw = (o) => async () => {
  let n = 0;
  for await (const c of video.decodeRawFrames(clip, { ...o, probe, chunkSize: 32 })) n += c.count;
  return n;
};
const whole = (o) => async () => {
  const d = await video.decodeVideo(clip, { ...o, probe });
  d.video.dispose();
  return d.frameCount;
};

const results = {};
results.bare64 = await bench('ffmpeg alone → /dev/null, 64x64', bare(64, 64));
results.raw64 = await bench('decodeRawFrames (uint8 chunks), 64x64', raw({ width: 64, height: 64 }));
results.video64 = await bench('decodeVideo (float32 tensor), 64x64', whole({ width: 64, height: 64 }));
results.gray64 = await bench('decodeVideo gray, 64x64', whole({ width: 64, height: 64, color: 'gray' }));
results.bareFull = await bench(`ffmpeg alone → /dev/null, ${probe.width}x${probe.height}`, bare(probe.width, probe.height));
results.rawFull = await bench(`decodeRawFrames, ${probe.width}x${probe.height}`, raw({}));
const before = tf.memory().numTensors;
results.videoFull = await bench(`decodeVideo, ${probe.width}x${probe.height}`, whole({}));
if (tf.memory().numTensors !== before) console.warn('warning: tensors leaked during the benchmark');
console.log(`\nJSON ${JSON.stringify({ clip: path.basename(clip), ffmpeg: ffmpeg.version, source: ffmpeg.source, framesPerSecond: Object.fromEntries(Object.entries(results).map(([k, v]) => [k, Math.round(v)])) })}`);
