/**
 * The SolidMark keymap: which key(s) each training image carried (official code: keys drawn with
 * `random.random()` under seed 42 in dataset order for DDPM, a URL → key JSON for SD). Stored as
 * JSON next to the checkpoint (`solidmark_keymap.json`, via the trainer's
 * `checkpoint.extraFiles`), it is what an audit compares the outpainted borders against.
 *
 * Keys are drawn from a seeded {@link Generator} as k = u / 2²⁴ with u a uniform 24-bit integer:
 * U[0, 1) on a 2⁻²⁴ grid. Such values are exact in float32 in both display space (k) and model
 * space (2k − 1), so a perfect copy of a border reads back exactly k (ℓ_SM = 0, not ~1e-8).
 * @module
 */
import * as fs from 'node:fs';
import {
  ConfigError,
  Generator,
  writeFileAtomicSync,
  type ImageRecord,
  type Membership,
  type MembershipGroup,
} from '@diffmem/core';
import { KeymapError } from './errors.js';
import { DEFAULT_SOLIDMARK_SPEC, checkSolidMarkKeys, checkMarkSpec, markSpecToJSON, type SolidMarkSpec } from './marks.js';

/** File name of the keymap inside a checkpoint / model folder. */
export const SOLIDMARK_KEYMAP_FILE = 'solidmark_keymap.json';

/** `format` field of a keymap file. */
export const SOLIDMARK_KEYMAP_FORMAT = 'diffmem-solidmark-keymap';

/** One image of the keymap. */
export interface SolidMarkKeymapEntry {
  /** Index into the source dataset. */
  index: number;
  /** The dataset record id (checked against the dataset at audit time). */
  id: string;
  label: number | null;
  /** Role in the training run (from the membership). */
  group: MembershipGroup;
  /** Copies in the training set (0: held out; its key was never trained and serves as a control). */
  copies: number;
  /**
   * Keys in display space [0, 1]: one per training copy when every copy got a fresh key (the
   * duplication study), else one. Held-out images get one never-trained key.
   */
  keys: number[];
}

/** The whole keymap (JSON-serialisable as is). */
export interface SolidMarkKeymap {
  format: typeof SOLIDMARK_KEYMAP_FORMAT;
  version: 1;
  seed: number;
  /** Dataset name (from the membership). */
  dataset: string;
  mark: SolidMarkSpec;
  /** Keys are grayscale values in display space [0, 1]; model space holds 2k − 1. */
  keySpace: 'display';
  /** Side of the unmarked images. */
  imageSize: number;
  channels: number;
  /** Whether each training copy of a duplicated image carried its own key. */
  freshKeyPerCopy: boolean;
  entries: SolidMarkKeymapEntry[];
}

/** Options of {@link makeSolidMarkKeymap}. */
export interface SolidMarkKeymapOptions {
  /** Seed of the key stream (the official code uses 42). */
  seed: number;
  /** Mark spec (default: a 16-pixel border). */
  mark?: SolidMarkSpec;
  /** Side of the unmarked images. */
  imageSize: number;
  channels: number;
  /** Give every training copy its own key (the duplication study, `sd/data_duplication.py`). Default false. */
  freshKeyPerCopy?: boolean;
}

/** One key k ~ U[0, 1) on the 2⁻²⁴ grid (exact in float32 display and model space). */
export function drawSolidMarkKey(g: Generator): number {
  return (g.nextUint32() >>> 8) / 16777216;
}

/**
 * A membership in which every record of a dataset is trained once (the official setup: 100% of
 * the training images are marked, no unmarked subset).
 */
export function membershipOfWholeDataset(name: string, records: readonly ImageRecord[], seed = 0): Membership {
  return {
    format: 'diffmem-membership',
    version: 1,
    dataset: name,
    seed,
    entries: records.map((r, index) => ({ index, id: r.id, label: r.label, group: 'ordinary' as const, copies: 1 })),
  };
}

/**
 * Draws the keys of every membership entry in entry order from `seed`: `copies` keys when
 * `freshKeyPerCopy` (at least one), else one. Held-out entries get one key that is never trained.
 */
export function makeSolidMarkKeymap(membership: Membership, o: SolidMarkKeymapOptions): SolidMarkKeymap {
  if (membership?.format !== 'diffmem-membership' || !Array.isArray(membership.entries)) {
    throw new ConfigError('makeSolidMarkKeymap needs a diffmem membership (see makeMemorizationSplit / membershipOfWholeDataset)');
  }
  if (!Number.isInteger(o.imageSize) || o.imageSize < 1 || !Number.isInteger(o.channels) || o.channels < 1) {
    throw new ConfigError(`imageSize and channels must be positive integers, got ${o.imageSize} and ${o.channels}`);
  }
  const mark = markSpecToJSON(checkMarkSpec(o.mark ?? DEFAULT_SOLIDMARK_SPEC, o.imageSize));
  const fresh = o.freshKeyPerCopy ?? false;
  const g = new Generator(o.seed);
  const entries = membership.entries.map((e) => {
    const n = fresh ? Math.max(1, e.copies) : 1;
    return {
      index: e.index,
      id: e.id,
      label: e.label,
      group: e.group,
      copies: e.copies,
      keys: Array.from({ length: n }, () => drawSolidMarkKey(g)),
    };
  });
  return {
    format: SOLIDMARK_KEYMAP_FORMAT,
    version: 1,
    seed: o.seed,
    dataset: membership.dataset,
    mark,
    keySpace: 'display',
    imageSize: o.imageSize,
    channels: o.channels,
    freshKeyPerCopy: fresh,
    entries,
  };
}

function invalid(source: string, what: string, details: Record<string, unknown> = {}): KeymapError {
  return new KeymapError('SOLIDMARK_KEYMAP_INVALID', `${source}: ${what}`, { source, ...details });
}

/**
 * Validates a parsed keymap JSON object (format, version, mark, every entry; keys must lie in
 * [0, 1]). Throws {@link KeymapError} (`SOLIDMARK_KEYMAP_INVALID`) naming the problem, or
 * `ValueRangeError` for a key outside [0, 1].
 */
export function parseSolidMarkKeymap(json: unknown, source = 'keymap'): SolidMarkKeymap {
  const k = json as Partial<SolidMarkKeymap> | null;
  if (k === null || typeof k !== 'object' || k.format !== SOLIDMARK_KEYMAP_FORMAT || k.version !== 1) {
    throw invalid(source, `not a SolidMark keymap (expected format "${SOLIDMARK_KEYMAP_FORMAT}", version 1)`);
  }
  if (k.keySpace !== 'display') throw invalid(source, `keySpace must be "display", got ${JSON.stringify(k.keySpace)}`);
  if (!Number.isInteger(k.imageSize) || (k.imageSize as number) < 1 || !Number.isInteger(k.channels) || (k.channels as number) < 1) {
    throw invalid(source, 'imageSize and channels must be positive integers');
  }
  try {
    checkMarkSpec(k.mark as SolidMarkSpec, k.imageSize);
  } catch (err) {
    throw invalid(source, `bad mark: ${(err as Error).message}`);
  }
  if (!Array.isArray(k.entries)) throw invalid(source, 'entries must be an array');
  const seen = new Set<string>();
  k.entries.forEach((e, i) => {
    const okGroup = e?.group === 'duplicated' || e?.group === 'ordinary' || e?.group === 'held-out';
    if (!e || typeof e.id !== 'string' || !Number.isInteger(e.index) || e.index < 0 || !okGroup || !Number.isInteger(e.copies) || e.copies < 0) {
      throw invalid(source, `entry ${i} is malformed (needs index, id, group, copies, keys)`, { entry: i });
    }
    if (!(e.label === null || Number.isInteger(e.label))) throw invalid(source, `entry ${i} has a non-integer label`, { entry: i });
    if (!Array.isArray(e.keys) || e.keys.length === 0) throw invalid(source, `entry ${i} (${e.id}) has no keys`, { entry: i });
    checkSolidMarkKeys(e.keys, `${source} entry ${i} (${e.id}) keys`);
    if (seen.has(e.id)) throw invalid(source, `image id ${JSON.stringify(e.id)} appears twice`, { entry: i });
    seen.add(e.id);
  });
  return k as SolidMarkKeymap;
}

/** Writes the keymap as JSON, atomically. */
export function saveSolidMarkKeymap(file: string, keymap: SolidMarkKeymap): void {
  parseSolidMarkKeymap(keymap, 'keymap to save');
  writeFileAtomicSync(file, JSON.stringify(keymap, null, 1));
}

/** Reads and validates a keymap file ({@link KeymapError} when unreadable or malformed). */
export function loadSolidMarkKeymap(file: string): SolidMarkKeymap {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    throw new KeymapError('SOLIDMARK_KEYMAP_UNREADABLE', `cannot read SolidMark keymap ${file}: ${(err as Error).message}`, { file });
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw invalid(file, `not valid JSON: ${(err as Error).message}`);
  }
  return parseSolidMarkKeymap(json, file);
}
