/**
 * Marked training data for `trainDiffusionModel` (reference B.2: every training image is marked,
 * 100% coverage; training happens in model space [−1, 1] with the border included).
 *
 * With `freshKeyPerCopy` (the duplication study, `sd/data_duplication.py`: "every copy gets a
 * fresh random key"), the copies of a duplicated image differ in their border and so become
 * distinct training images: one row of `images` per copy, each listed once in `trainIndices`.
 * Otherwise an image is one row listed `copies` times, as the trainer expects for duplicates.
 * @module
 */
import * as tf from '@tensorflow/tfjs-core';
import { ConfigError, ShapeError, asImageBatch, toModelRange, type ImageBatch, type ImageRecord, type Membership } from '@diffmem/core';
import { KeymapError } from './errors.js';
import {
  SOLIDMARK_KEYMAP_FILE,
  makeSolidMarkKeymap,
  membershipOfWholeDataset,
  parseSolidMarkKeymap,
  type SolidMarkKeymap,
  type SolidMarkKeymapEntry,
} from './keymap.js';
import { DEFAULT_SOLIDMARK_SPEC, applyMark, markedCanvasSize, type SolidMarkSpec } from './marks.js';

/** The dataset fields the wrapper reads (an `ImageDataset` fits). */
export interface SolidMarkSourceDataset {
  readonly name: string;
  /** [N,H,W,C] display space, square. Not disposed. */
  readonly images: ImageBatch<'display'>;
  readonly records: readonly ImageRecord[];
  readonly numClasses: number | null;
}

/** Options of {@link makeMarkedTrainingSet}. */
export interface MarkedTrainingSetOptions {
  /** Seed of the keys (ignored when `keymap` is given). */
  seed: number;
  /** Where the key goes (default: 16-pixel border, the official CLI default). */
  mark?: SolidMarkSpec;
  /** Training membership (duplicated / ordinary / held-out). Default: every image once. */
  membership?: Membership;
  /** Fresh key per training copy of a duplicated image. Default false. */
  freshKeyPerCopy?: boolean;
  /** Reuse an existing keymap (e.g. to rebuild the exact training set on resume) instead of drawing keys. */
  keymap?: SolidMarkKeymap;
}

/** One row of {@link MarkedTrainingSet.images}. */
export interface MarkedTrainingRow {
  /** Index of the keymap entry. */
  entry: number;
  /** Index into the source dataset. */
  index: number;
  id: string;
  /** Which copy (0-based) and which of the entry's keys this row carries. */
  copy: number;
  key: number;
}

/** What {@link makeMarkedTrainingSet} returns: the trainer's inputs plus the keymap. */
export interface MarkedTrainingSet {
  /** Marked training images in model space [−1, 1], [R,S,S,C] (owned by the caller: dispose). */
  images: ImageBatch<'model'>;
  /** Indices into `images`, one per training example (duplicates repeated unless fresh keys). */
  trainIndices: number[];
  /** Class label per row of `images` (labelled datasets), for class-conditional training. */
  labels?: Int32Array;
  numClasses: number | null;
  keymap: SolidMarkKeymap;
  rows: MarkedTrainingRow[];
  /** `{ 'solidmark_keymap.json': keymap }`, ready for the trainer's `checkpoint.extraFiles`. */
  extraFiles: Record<string, unknown>;
}

/**
 * Finds every keymap image in `records` by id (at its recorded index when it is still there,
 * else anywhere — e.g. a dataset loaded with more images per class than at training time) and
 * returns the dataset index of each entry. Throws {@link KeymapError} (`SOLIDMARK_KEYMAP_MISMATCH`)
 * naming the first image the dataset lacks.
 */
export function resolveKeymapImages(keymap: SolidMarkKeymap, records: readonly ImageRecord[]): number[] {
  let byId: Map<string, number> | null = null;
  return keymap.entries.map((e, i) => {
    if (records[e.index]?.id === e.id) return e.index;
    byId ??= new Map(records.map((r, j) => [r.id, j]));
    const j = byId.get(e.id);
    if (j === undefined) {
      throw new KeymapError(
        'SOLIDMARK_KEYMAP_MISMATCH',
        `keymap entry ${i} is image ${JSON.stringify(e.id)}, which the dataset does not contain: the keymap belongs to another dataset`,
        { entry: i, id: e.id, index: e.index },
      );
    }
    return j;
  });
}

/** Checks that a keymap and a membership describe the same training run. */
export function checkKeymapAgainstMembership(keymap: SolidMarkKeymap, membership: Membership): void {
  const byId = new Map(membership.entries.map((e) => [e.id, e]));
  keymap.entries.forEach((e, i) => {
    const m = byId.get(e.id);
    if (!m || m.index !== e.index || m.copies !== e.copies || m.group !== e.group) {
      throw new KeymapError(
        'SOLIDMARK_KEYMAP_MISMATCH',
        `keymap entry ${i} (${JSON.stringify(e.id)}: ${e.group}, ${e.copies} copies) does not match the membership ` +
          (m ? `(${m.group}, ${m.copies} copies at index ${m.index})` : '(image absent)'),
        { entry: i, id: e.id },
      );
    }
  });
  if (membership.entries.length !== keymap.entries.length) {
    throw new KeymapError(
      'SOLIDMARK_KEYMAP_MISMATCH',
      `the membership has ${membership.entries.length} images but the keymap ${keymap.entries.length}`,
    );
  }
}

/** The keys a training row of `entry` carries, copy by copy. */
function rowKeys(e: SolidMarkKeymapEntry, fresh: boolean): number[] {
  if (!fresh) return [e.keys[0] as number];
  if (e.keys.length !== e.copies) {
    throw new KeymapError('SOLIDMARK_KEYMAP_INVALID', `entry ${e.id} has ${e.copies} copies but ${e.keys.length} keys (fresh key per copy)`);
  }
  return e.keys;
}

/**
 * Builds the marked training set: draws (or reuses) the keymap, marks every trained image
 * (membership copies ≥ 1) in display space, converts to model space (border = 2k − 1) and lists
 * the training indices. Held-out images are not in `images`, but keep a control key in the keymap.
 */
export function makeMarkedTrainingSet(dataset: SolidMarkSourceDataset, o: MarkedTrainingSetOptions): MarkedTrainingSet {
  const images = asImageBatch(dataset.images, 'display', { name: 'dataset images' });
  const [n, h, w, c] = images.shape;
  if (h !== w) throw new ShapeError(`SolidMark needs square images, got ${h}x${w}`);
  if (dataset.records.length !== n) throw new ShapeError(`dataset has ${n} images but ${dataset.records.length} records`);
  const mark = o.mark ?? o.keymap?.mark ?? DEFAULT_SOLIDMARK_SPEC;
  markedCanvasSize(mark, h); // validates the thickness against the image size
  let keymap: SolidMarkKeymap;
  if (o.keymap) {
    keymap = parseSolidMarkKeymap(o.keymap);
    if (keymap.imageSize !== h || keymap.channels !== c) {
      throw new KeymapError('SOLIDMARK_KEYMAP_MISMATCH', `keymap is for ${keymap.imageSize}px ×${keymap.channels} images, dataset has ${h}px ×${c}`);
    }
    if (o.mark && JSON.stringify(o.mark) !== JSON.stringify(keymap.mark)) {
      throw new ConfigError(`mark ${JSON.stringify(o.mark)} differs from the keymap's ${JSON.stringify(keymap.mark)}`);
    }
    if (o.freshKeyPerCopy !== undefined && o.freshKeyPerCopy !== keymap.freshKeyPerCopy) {
      throw new ConfigError(`freshKeyPerCopy ${o.freshKeyPerCopy} differs from the keymap's ${keymap.freshKeyPerCopy}`);
    }
    if (o.membership) checkKeymapAgainstMembership(keymap, o.membership);
  } else {
    const membership = o.membership ?? membershipOfWholeDataset(dataset.name, dataset.records, o.seed);
    keymap = makeSolidMarkKeymap(membership, { seed: o.seed, mark, imageSize: h, channels: c, freshKeyPerCopy: o.freshKeyPerCopy ?? false });
  }
  const where = resolveKeymapImages(keymap, dataset.records);

  const rows: MarkedTrainingRow[] = [];
  const trainIndices: number[] = [];
  keymap.entries.forEach((e, entry) => {
    if (e.copies === 0) return;
    const keys = rowKeys(e, keymap.freshKeyPerCopy);
    if (keys.length === 1) {
      const r = rows.length;
      rows.push({ entry, index: where[entry] as number, id: e.id, copy: 0, key: keys[0] as number });
      for (let k = 0; k < e.copies; k++) trainIndices.push(r);
    } else {
      keys.forEach((key, copy) => {
        trainIndices.push(rows.length);
        rows.push({ entry, index: where[entry] as number, id: e.id, copy, key });
      });
    }
  });
  if (rows.length === 0) throw new ConfigError('the membership trains no image (every entry has 0 copies)');

  let labels: Int32Array | undefined;
  if (dataset.numClasses !== null) {
    labels = Int32Array.from(rows, (r) => {
      const l = dataset.records[r.index]?.label;
      if (l === null || l === undefined) throw new ConfigError(`image ${r.id} has no label in a labelled dataset`);
      return l;
    });
  }
  const marked = tf.tidy(() => {
    const picked = tf.gather(images, tf.tensor1d(rows.map((r) => r.index), 'int32')) as ImageBatch<'display'>;
    return toModelRange(applyMark(picked, rows.map((r) => r.key), keymap.mark));
  });
  return {
    images: marked,
    trainIndices,
    ...(labels ? { labels } : {}),
    numClasses: dataset.numClasses,
    keymap,
    rows,
    extraFiles: { [SOLIDMARK_KEYMAP_FILE]: keymap },
  };
}
