/**
 * On-disk format of a {@link ReferenceIndex}: float32 shard files plus a JSON manifest, written
 * atomically (everything goes to a staging directory that is renamed into place at the end, so a
 * reader sees either a complete index or none).
 *
 * ```
 * dir/
 *   manifest.json        format, version, itemShape, dim, count, shards[], ids, norms
 *   shard-00000.f32      rows [count, dim] float32 little-endian, row-major (reference order)
 *   shard-00001.f32      …
 *   sqnorms.f64          ‖r‖² of every reference, float64 little-endian (precomputed once)
 *   ids.json             the reference ids (absent when ids are 0..count−1)
 * ```
 * @module
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { InputError } from '@diffmem/core';

/** `format` field of every manifest. */
export const INDEX_FORMAT = 'diffmem-reference-index';
/** Current manifest version. */
export const INDEX_VERSION = 1;

/** An identifier of one reference item (a training image), returned with every neighbour. */
export type ReferenceId = string | number;

/** What the rows of an index are. */
export type ReferenceKind = 'images' | 'features';

/** One shard entry of the manifest. */
export interface ShardEntry {
  file: string;
  /** Global index of the shard's first row. */
  start: number;
  count: number;
  bytes: number;
}

/** The parsed `manifest.json`. */
export interface IndexManifest {
  format: typeof INDEX_FORMAT;
  version: number;
  kind: ReferenceKind;
  dtype: 'float32';
  byteOrder: 'little';
  /** Per-item shape: [H, W, C] for images, [D] for features. */
  itemShape: number[];
  dim: number;
  count: number;
  shards: ShardEntry[];
  norms: { file: string; dtype: 'float64' };
  ids: { kind: 'range' } | { kind: 'file'; file: string };
  createdBy: string;
}

function assertLittleEndian(): void {
  if (os.endianness() !== 'LE') {
    throw new InputError('INDEX_BYTE_ORDER', 'reference index files are little-endian; this host is big-endian');
  }
}

function writeFileDurable(file: string, data: Uint8Array | string): void {
  const fd = fs.openSync(file, 'w');
  try {
    if (typeof data === 'string') fs.writeSync(fd, data);
    else {
      let off = 0;
      while (off < data.byteLength) off += fs.writeSync(fd, data, off, data.byteLength - off);
    }
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

function bytesOf(a: Float32Array | Float64Array): Uint8Array {
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
}

/**
 * Writes an index directory atomically: shards and side files go to a hidden staging directory
 * next to `dir`, which replaces `dir` only once the manifest is written.
 * @internal
 */
export class IndexWriter {
  readonly staging: string;
  private readonly shards: ShardEntry[] = [];
  private count = 0;
  private done = false;

  constructor(
    readonly dir: string,
    private readonly overwrite: boolean,
  ) {
    assertLittleEndian();
    checkTargetDir(dir, overwrite);
    const parent = path.dirname(path.resolve(dir));
    fs.mkdirSync(parent, { recursive: true });
    this.staging = fs.mkdtempSync(path.join(parent, `.${path.basename(dir)}.staging-`));
  }

  /** Appends one shard of `count` rows (row-major float32). */
  writeShard(rows: Float32Array, count: number): void {
    const file = `shard-${String(this.shards.length).padStart(5, '0')}.f32`;
    const view = rows.subarray(0, rows.length);
    writeFileDurable(path.join(this.staging, file), bytesOf(view));
    this.shards.push({ file, start: this.count, count, bytes: view.byteLength });
    this.count += count;
  }

  /** Writes norms, ids and the manifest, then moves the staging directory into place. */
  finish(meta: { kind: ReferenceKind; itemShape: number[]; dim: number; sqNorms: Float64Array; ids: ReferenceId[] | null }): IndexManifest {
    if (meta.sqNorms.length !== this.count) {
      throw new InputError('INDEX_INTERNAL', `norms (${meta.sqNorms.length}) and rows (${this.count}) disagree`);
    }
    writeFileDurable(path.join(this.staging, 'sqnorms.f64'), bytesOf(meta.sqNorms));
    let ids: IndexManifest['ids'] = { kind: 'range' };
    if (meta.ids) {
      writeFileDurable(path.join(this.staging, 'ids.json'), JSON.stringify(meta.ids));
      ids = { kind: 'file', file: 'ids.json' };
    }
    const manifest: IndexManifest = {
      format: INDEX_FORMAT,
      version: INDEX_VERSION,
      kind: meta.kind,
      dtype: 'float32',
      byteOrder: 'little',
      itemShape: meta.itemShape,
      dim: meta.dim,
      count: this.count,
      shards: this.shards,
      norms: { file: 'sqnorms.f64', dtype: 'float64' },
      ids,
      createdBy: '@diffmem/metrics',
    };
    writeFileDurable(path.join(this.staging, 'manifest.json'), JSON.stringify(manifest, null, 1));
    swapIntoPlace(this.staging, this.dir, this.overwrite);
    this.done = true;
    return manifest;
  }

  /** Removes the staging directory (after a failure). */
  abort(): void {
    if (!this.done) fs.rmSync(this.staging, { recursive: true, force: true });
  }
}

function checkTargetDir(dir: string, overwrite: boolean): void {
  if (!fs.existsSync(dir)) return;
  const st = fs.statSync(dir);
  if (!st.isDirectory()) throw new InputError('INDEX_DIR_EXISTS', `${dir} exists and is not a directory`, { dir });
  const entries = fs.readdirSync(dir);
  if (entries.length === 0) return;
  const isIndex = entries.includes('manifest.json');
  if (!isIndex) {
    throw new InputError('INDEX_DIR_NOT_EMPTY', `${dir} is not empty and holds no reference index; refusing to replace it`, { dir });
  }
  if (!overwrite) {
    throw new InputError('INDEX_DIR_EXISTS', `${dir} already holds a reference index; pass {overwrite: true} to replace it`, { dir });
  }
}

function swapIntoPlace(staging: string, dir: string, overwrite: boolean): void {
  checkTargetDir(dir, overwrite);
  if (fs.existsSync(dir)) {
    const old = `${staging}.old`;
    fs.renameSync(dir, old);
    fs.renameSync(staging, dir);
    fs.rmSync(old, { recursive: true, force: true });
  } else {
    fs.renameSync(staging, dir);
  }
}

/** Reads and validates `dir/manifest.json` and the sizes of every file it names. */
export function readManifest(dir: string): IndexManifest {
  assertLittleEndian();
  const file = path.join(dir, 'manifest.json');
  if (!fs.existsSync(file)) {
    throw new InputError('INDEX_MANIFEST_MISSING', `no reference index in ${dir}: manifest.json is missing (an interrupted build leaves none)`, { dir });
  }
  let m: IndexManifest;
  try {
    m = JSON.parse(fs.readFileSync(file, 'utf8')) as IndexManifest;
  } catch (err) {
    throw new InputError('INDEX_MANIFEST_INVALID', `${file} is not valid JSON: ${(err as Error).message}`, { file });
  }
  const bad = (why: string): never => {
    throw new InputError('INDEX_MANIFEST_INVALID', `${file}: ${why}`, { file });
  };
  if (m?.format !== INDEX_FORMAT) bad(`format must be "${INDEX_FORMAT}", got ${JSON.stringify(m?.format)}`);
  if (m.version !== INDEX_VERSION) bad(`unsupported version ${String(m.version)} (this build reads ${INDEX_VERSION})`);
  if (m.dtype !== 'float32' || m.byteOrder !== 'little') bad('only little-endian float32 shards are supported');
  if (!Array.isArray(m.itemShape) || m.itemShape.some((d) => !Number.isInteger(d) || d <= 0)) bad('bad itemShape');
  if (m.itemShape.reduce((a, b) => a * b, 1) !== m.dim) bad(`itemShape [${m.itemShape.join(',')}] does not match dim ${m.dim}`);
  if (!Array.isArray(m.shards) || m.shards.length === 0) bad('no shards');
  let start = 0;
  for (const s of m.shards) {
    if (s.start !== start || !Number.isInteger(s.count) || s.count <= 0) bad(`shard ${s.file} has bad start/count`);
    if (s.bytes !== s.count * m.dim * 4) bad(`shard ${s.file} byte size ${s.bytes} ≠ count·dim·4`);
    if (path.basename(s.file) !== s.file) bad(`shard file name ${s.file} must not contain a path`);
    const p = path.join(dir, s.file);
    if (!fs.existsSync(p)) throw new InputError('INDEX_SHARD_MISSING', `shard ${p} is missing`, { file: p });
    const size = fs.statSync(p).size;
    if (size !== s.bytes) {
      throw new InputError('INDEX_SHARD_SIZE', `shard ${p} has ${size} bytes, manifest says ${s.bytes} (truncated or replaced?)`, {
        file: p,
        expected: s.bytes,
        actual: size,
      });
    }
    start += s.count;
  }
  if (start !== m.count) bad(`shards hold ${start} rows, manifest count is ${m.count}`);
  const np = path.join(dir, m.norms.file);
  if (!fs.existsSync(np) || fs.statSync(np).size !== m.count * 8) {
    throw new InputError('INDEX_SHARD_SIZE', `norms file ${np} is missing or has the wrong size`, { file: np });
  }
  return m;
}

/** Reads a whole shard file as float32 rows. */
export function readShardFile(dir: string, s: ShardEntry): Float32Array {
  const buf = fs.readFileSync(path.join(dir, s.file));
  // Buffers may come from a pool with an unaligned offset; copy in that case.
  if (buf.byteOffset % 4 === 0) return new Float32Array(buf.buffer, buf.byteOffset, buf.byteLength / 4);
  return new Float32Array(new Uint8Array(buf).buffer);
}

/** Reads selected rows of a shard file into `out` (row i → out[outRow[i]·dim …]). */
export function readShardRows(dir: string, s: ShardEntry, dim: number, localRows: readonly number[], out: Float32Array, outRows: readonly number[]): void {
  const fd = fs.openSync(path.join(dir, s.file), 'r');
  try {
    const bytes = new Uint8Array(out.buffer, out.byteOffset, out.byteLength);
    for (let i = 0; i < localRows.length; i++) {
      const r = localRows[i] as number;
      const o = outRows[i] as number;
      fs.readSync(fd, bytes, o * dim * 4, dim * 4, r * dim * 4);
    }
  } finally {
    fs.closeSync(fd);
  }
}

/** Reads the float64 squared norms. */
export function readNorms(dir: string, m: IndexManifest): Float64Array {
  const buf = fs.readFileSync(path.join(dir, m.norms.file));
  const copy = new Uint8Array(buf.byteLength);
  copy.set(buf);
  return new Float64Array(copy.buffer);
}

/** Reads the ids (null when they are the row numbers). */
export function readIds(dir: string, m: IndexManifest): ReferenceId[] | null {
  if (m.ids.kind === 'range') return null;
  const p = path.join(dir, m.ids.file);
  let ids: unknown;
  try {
    ids = JSON.parse(fs.readFileSync(p, 'utf8'));
  } catch (err) {
    throw new InputError('INDEX_MANIFEST_INVALID', `${p} is unreadable: ${(err as Error).message}`, { file: p });
  }
  if (!Array.isArray(ids) || ids.length !== m.count) {
    throw new InputError('INDEX_MANIFEST_INVALID', `${p} must hold ${m.count} ids`, { file: p });
  }
  return ids as ReferenceId[];
}
