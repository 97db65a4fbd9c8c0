/**
 * Exact k-nearest-neighbour search over a reference (training) set, the building block of every
 * training-data memorization score (nearest-neighbour ℓ2 of Carlini et al. 2023, nL2 of AMG
 * Eq. 8, SSCD replication of Somepalli et al. 2023).
 *
 * Distances come from batched matrix products on the active TF.js backend,
 * ‖q − r‖² = ‖q‖² − 2 q·r + ‖r‖², with the per-reference norms ‖r‖² precomputed once (float64).
 * References are split into shards (the unit of storage and of each matrix product), so memory
 * stays bounded, and a running top-k is merged across shards. Shards live in backend memory
 * ("resident") or on disk (streamed per search), so the reference set can be larger than memory.
 *
 * Exactness: the expansion loses precision for near-duplicates in float32 (‖q‖² ≫ ‖q − r‖²; its
 * error is ≲ 3e-6·(‖q‖² + ‖r‖²)), so for the ℓ2 metrics the k (+ a margin of 8) candidates of
 * every query whose d² is below 0.1·(‖q‖² + ‖r‖²) are re-scored with a direct Σ(q − r)² in float64
 * before the final sort (`exact: true`, the default). Near-duplicates — the memorization cases —
 * thus get exact distances (identical images give exactly 0) and every other distance carries at
 * most ~3e-5 relative error.
 * @module
 */
import * as tf from '@tensorflow/tfjs-core';
import { ConfigError, InputError, ShapeError } from '@diffmem/core';
import {
  checkDisplayRange,
  checkFiniteRows,
  checkInt,
  checkK,
  checkTensor,
  readFloat32,
  sizeOf,
} from './internal/checks.js';
import {
  IndexWriter,
  readIds,
  readManifest,
  readNorms,
  readShardFile,
  readShardRows,
  type IndexManifest,
  type ReferenceId,
  type ReferenceKind,
  type ShardEntry,
} from './index_storage.js';

export type { ReferenceId, ReferenceKind } from './index_storage.js';

/**
 * Distance used by {@link ReferenceIndex.search}.
 * - `'rms-l2'`: sqrt(Σ(q − r)² / D), the root-mean-square distance; for display images this is the
 *   ℓ2 of Carlini et al. (2023) and of the AMG code, in [0, 1] units. Smaller is closer.
 * - `'squared-l2'`: Σ(q − r)². Smaller is closer.
 * - `'cosine'`: q·r / (‖q‖‖r‖) (0 when a norm is 0). Larger is closer; for L2-normalised
 *   embeddings this is the SSCD dot product of Somepalli et al. (2023) and AMG Eq. 9.
 */
export type KnnMetric = 'rms-l2' | 'squared-l2' | 'cosine';

/** Options of {@link ReferenceIndex.search}. */
export interface SearchOptions {
  /** Neighbours per query (default 1). Must not exceed the number of searchable references. */
  k?: number;
  /** Distance (default `'rms-l2'`). */
  metric?: KnnMetric;
  /** Queries per matrix product (default 256); bounds the [shard, batch] score matrix. */
  queryBatchSize?: number;
  /** Re-score ℓ2 candidates directly (default true); see the module notes. Ignored for cosine. */
  exact?: boolean;
  /**
   * One global reference index per query to leave out (or `null`/`-1`), e.g. the query's own
   * index when searching the reference set against itself.
   */
  exclude?: ReadonlyArray<number | null>;
}

/** The neighbours of every query, best first. */
export interface KnnResult {
  metric: KnnMetric;
  k: number;
  /** Global reference indices, [queries][k]. */
  indices: number[][];
  /** Reference ids, [queries][k] (for auditing which training image matched). */
  ids: ReferenceId[][];
  /** Distances (`rms-l2`, `squared-l2`; ascending) or cosine similarities (descending). */
  values: number[][];
}

/** Options shared by the in-memory constructors. */
export interface ReferenceIndexOptions {
  /** One id per reference (string or number, unique). Default: 0, 1, 2, … */
  ids?: readonly ReferenceId[];
  /** References per shard (default: ~64 MiB of float32 per shard, at most 8192 rows). */
  shardSize?: number;
}

/** Options of {@link ReferenceIndex.build}. */
export interface BuildOptions {
  /** Directory for the shard files and manifest (created; see `overwrite`). */
  dir: string;
  /** Replace an existing index in `dir` (default false). */
  overwrite?: boolean;
  /** References per shard file (default as in {@link ReferenceIndexOptions.shardSize}). */
  shardSize?: number;
  /** Dispose every batch tensor after reading it (default false: the caller owns them). */
  disposeBatches?: boolean;
  /** Passed to {@link ReferenceIndex.load} for the returned index. */
  residentBytes?: number;
}

/** Options of {@link ReferenceIndex.load}. */
export interface LoadOptions {
  /**
   * Shards are kept in backend memory until this many bytes are used (default 1.5 GiB; the wasm
   * backend's heap tops out at 4 GiB); the rest are read from disk at each search.
   */
  residentBytes?: number;
}

/**
 * One batch of references for {@link ReferenceIndex.build}: an image batch [N,H,W,C] in display
 * space [0, 1], a feature matrix [N,D], or either with ids.
 */
export type ReferenceBatch = tf.Tensor | { data: tf.Tensor; ids?: readonly ReferenceId[] };

const DEFAULT_RESIDENT_BYTES = 1.5 * 2 ** 30;
const EXACT_MARGIN = 8;
/** Candidates with d² below this fraction of ‖q‖² + ‖r‖² are re-scored directly (see refineExact). */
const REFINE_RATIO = 0.1;
const REFINE_FLOATS = 1 << 24;

function defaultShardSize(dim: number): number {
  return Math.max(64, Math.min(8192, Math.floor((64 * 2 ** 20) / (4 * dim))));
}

function checkMetric(m: unknown): KnnMetric {
  if (m !== 'rms-l2' && m !== 'squared-l2' && m !== 'cosine') {
    throw new ConfigError(`metric must be 'rms-l2', 'squared-l2' or 'cosine', got ${String(m)}`, { metric: m });
  }
  return m;
}

interface Shard {
  entry: ShardEntry;
  /** [count, dim] rows in backend memory, or null when streamed from disk. */
  rows: tf.Tensor2D | null;
  /** Cached [count, 1] ‖r‖² and 1/‖r‖ (resident shards only). */
  sq: tf.Tensor2D | null;
  inv: tf.Tensor2D | null;
}

/** Tracks ids across batches: validates type/uniqueness, keeps null while ids are 0..n−1. */
class IdCollector {
  private ids: ReferenceId[] = [];
  private readonly seen = new Set<ReferenceId>();
  private explicit = false;

  add(batchIds: readonly ReferenceId[] | undefined, n: number, batch: number): void {
    const start = this.ids.length;
    if (batchIds === undefined) {
      for (let i = 0; i < n; i++) this.push(start + i, batch);
      return;
    }
    if (!Array.isArray(batchIds) || batchIds.length !== n) {
      throw new ShapeError(`batch ${batch}: ${Array.isArray(batchIds) ? batchIds.length : 'non-array'} ids for ${n} references`, {
        batch,
        expected: n,
      });
    }
    this.explicit = true;
    for (const id of batchIds) this.push(id, batch);
  }

  private push(id: ReferenceId, batch: number): void {
    if (!(typeof id === 'string' || (typeof id === 'number' && Number.isFinite(id)))) {
      throw new ConfigError(`batch ${batch}: reference ids must be strings or finite numbers, got ${String(id)}`, { batch });
    }
    if (this.seen.has(id)) throw new InputError('DUPLICATE_ID', `reference id ${JSON.stringify(id)} occurs twice`, { id });
    this.seen.add(id);
    this.ids.push(id);
  }

  result(): ReferenceId[] | null {
    if (!this.explicit && this.ids.every((v, i) => v === i)) return null;
    return this.ids;
  }
}

/** Validates one batch and returns its rows as float32 plus the per-item shape. */
function readBatch(t: tf.Tensor, name: string): { rows: Float32Array; n: number; itemShape: number[]; kind: ReferenceKind } {
  checkTensor(t, name);
  if (t.rank !== 4 && t.rank !== 2) {
    throw new ShapeError(`${name} must be an image batch [N,H,W,C] or a feature matrix [N,D], got shape [${t.shape.join(',')}]`, {
      name,
      actual: t.shape,
    });
  }
  const rows = readFloat32(t);
  const itemShape = t.shape.slice(1);
  const dim = sizeOf(itemShape);
  checkFiniteRows(rows, dim, name);
  const kind: ReferenceKind = t.rank === 4 ? 'images' : 'features';
  if (kind === 'images') checkDisplayRange(rows, name);
  return { rows, n: t.shape[0] as number, itemShape, kind };
}

function sqNormsOf(rows: Float32Array, n: number, dim: number, out: Float64Array, offset: number): void {
  for (let i = 0; i < n; i++) {
    let s = 0;
    const o = i * dim;
    for (let j = 0; j < dim; j++) {
      const v = rows[o + j] as number;
      s += v * v;
    }
    out[offset + i] = s;
  }
}

function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}

/**
 * An exact k-NN index over reference images (display space, [N,H,W,C]) or feature vectors
 * ([N,D], e.g. copy-detection embeddings), with ids for auditing.
 *
 * @example
 * ```ts
 * const index = ReferenceIndex.fromImages(trainImages, { ids: fileNames });
 * const { ids, values } = index.search(generated, { k: 50, metric: 'rms-l2' });
 * await index.save('cifar10-index');            // float32 shards + manifest, written atomically
 * const again = await ReferenceIndex.load('cifar10-index');
 * ```
 */
export class ReferenceIndex {
  /** `'images'` (rows are display-space images) or `'features'`. */
  readonly kind: ReferenceKind;
  /** Shape of one item: [H, W, C] or [D]. */
  readonly itemShape: readonly number[];
  /** Length of one flattened item. */
  readonly dim: number;
  /** Number of references. */
  readonly size: number;

  private readonly shards: Shard[];
  private readonly sqNorms: Float64Array;
  private readonly idList: ReferenceId[] | null;
  private idLookup: Map<ReferenceId, number> | null = null;
  private readonly dir: string | null;
  private disposed = false;

  private constructor(p: {
    kind: ReferenceKind;
    itemShape: number[];
    shards: Shard[];
    sqNorms: Float64Array;
    ids: ReferenceId[] | null;
    dir: string | null;
  }) {
    this.kind = p.kind;
    this.itemShape = Object.freeze([...p.itemShape]);
    this.dim = sizeOf(p.itemShape);
    this.shards = p.shards;
    this.sqNorms = p.sqNorms;
    this.idList = p.ids;
    this.dir = p.dir;
    this.size = p.sqNorms.length;
    // Per-shard norm columns are made up front so searches allocate nothing that outlives them.
    for (const sh of this.shards) {
      if (sh.rows) {
        sh.sq = this.makeAux(sh, 'squared-l2');
        sh.inv = this.makeAux(sh, 'cosine');
      }
    }
  }

  // ---------------------------------------------------------------- construction

  /**
   * An in-memory index over display-space images [N,H,W,C] (or an array of such batches, which
   * must share H, W, C). The input tensors are copied, not disposed.
   * @throws InputError `EMPTY_REFERENCE_SET`; ShapeError for mixed shapes; NonFiniteError;
   *   ValueRangeError when values leave [0, 1].
   */
  static fromImages(images: tf.Tensor | readonly tf.Tensor[], options: ReferenceIndexOptions = {}): ReferenceIndex {
    return ReferenceIndex.fromTensors(images, options, 4);
  }

  /** An in-memory index over feature vectors [N,D] (or an array of [Nᵢ,D] matrices). */
  static fromFeatures(features: tf.Tensor | readonly tf.Tensor[], options: ReferenceIndexOptions = {}): ReferenceIndex {
    return ReferenceIndex.fromTensors(features, options, 2);
  }

  private static fromTensors(input: tf.Tensor | readonly tf.Tensor[], options: ReferenceIndexOptions, rank: 2 | 4): ReferenceIndex {
    const list = input instanceof tf.Tensor ? [input] : [...input];
    const what = rank === 4 ? 'image batch [N,H,W,C]' : 'feature matrix [N,D]';
    if (list.length === 0) throw new InputError('EMPTY_REFERENCE_SET', `the reference set is empty (no ${what} given)`);
    let itemShape: number[] | null = null;
    const batches: Float32Array[] = [];
    const counts: number[] = [];
    list.forEach((t, b) => {
      const name = list.length > 1 ? `reference batch ${b}` : 'references';
      if (t instanceof tf.Tensor && t.rank >= 1 && t.shape[0] === 0) {
        throw new InputError('EMPTY_REFERENCE_SET', `${name} is empty (shape [${t.shape.join(',')}])`, { batch: b });
      }
      if (t instanceof tf.Tensor && t.rank !== rank) {
        throw new ShapeError(`${name} must be a ${what}, got shape [${t.shape.join(',')}]`, { batch: b, actual: t.shape });
      }
      const r = readBatch(t, name);
      if (itemShape && !sameShape(itemShape, r.itemShape)) {
        throw new ShapeError(
          `mixed reference shapes: ${name} has items of shape [${r.itemShape.join(',')}] but earlier ones are [${itemShape.join(',')}]`,
          { batch: b, expected: itemShape, actual: r.itemShape },
        );
      }
      itemShape = r.itemShape;
      batches.push(r.rows);
      counts.push(r.n);
    });
    const shape = itemShape as unknown as number[];
    const dim = sizeOf(shape);
    const total = counts.reduce((a, b) => a + b, 0);
    const ids = new IdCollector();
    if (options.ids !== undefined) ids.add(options.ids, total, 0);
    else ids.add(undefined, total, 0);
    const shardSize = options.shardSize === undefined ? defaultShardSize(dim) : checkInt(options.shardSize, 'shardSize');
    const sqNorms = new Float64Array(total);
    const shards: Shard[] = [];
    // Concatenate virtually and cut into shards.
    let shardBuf = new Float32Array(Math.min(shardSize, total) * dim);
    let fill = 0;
    let start = 0;
    const flush = (): void => {
      if (fill === 0) return;
      const data = shardBuf.subarray(0, fill * dim);
      sqNormsOf(data, fill, dim, sqNorms, start);
      const rows = tf.tensor2d(data, [fill, dim], 'float32');
      shards.push({ entry: { file: '', start, count: fill, bytes: fill * dim * 4 }, rows, sq: null, inv: null });
      start += fill;
      fill = 0;
      shardBuf = new Float32Array(Math.min(shardSize, total - start) * dim);
    };
    batches.forEach((rows, b) => {
      const n = counts[b] as number;
      let i = 0;
      while (i < n) {
        const take = Math.min(shardSize - fill, n - i);
        shardBuf.set(rows.subarray(i * dim, (i + take) * dim), fill * dim);
        fill += take;
        i += take;
        if (fill === shardSize) flush();
      }
    });
    flush();
    return new ReferenceIndex({ kind: rank === 4 ? 'images' : 'features', itemShape: shape, shards, sqNorms, ids: ids.result(), dir: null });
  }

  /**
   * Streams reference batches (e.g. a dataset larger than memory) into an on-disk index at
   * `options.dir` — float32 shard files, precomputed norms, ids and a JSON manifest, written to a
   * staging directory and renamed into place only when complete — then loads it.
   * @throws InputError `EMPTY_REFERENCE_SET` when the iterable yields nothing; ShapeError for
   *   mixed shapes; NonFiniteError / ValueRangeError naming the batch and item.
   */
  static async build(
    source: AsyncIterable<ReferenceBatch> | Iterable<ReferenceBatch>,
    options: BuildOptions,
  ): Promise<ReferenceIndex> {
    if (!options || typeof options.dir !== 'string' || options.dir === '') {
      throw new ConfigError('ReferenceIndex.build needs options.dir (where the shards and manifest go)');
    }
    const writer = new IndexWriter(options.dir, options.overwrite ?? false);
    try {
      let itemShape: number[] | null = null;
      let kind: ReferenceKind = 'images';
      let dim = 0;
      let shardSize = 0;
      let buf = new Float32Array(0);
      let fill = 0;
      const norms: number[] = [];
      const ids = new IdCollector();
      let batchNo = 0;
      const flush = (): void => {
        if (fill === 0) return;
        const data = buf.subarray(0, fill * dim);
        const sq = new Float64Array(fill);
        sqNormsOf(data, fill, dim, sq, 0);
        for (const v of sq) norms.push(v);
        writer.writeShard(data, fill);
        fill = 0;
      };
      for await (const item of source as AsyncIterable<ReferenceBatch>) {
        const t = item instanceof tf.Tensor ? item : item?.data;
        const batchIds = item instanceof tf.Tensor ? undefined : item?.ids;
        const name = `reference batch ${batchNo}`;
        if (!(t instanceof tf.Tensor)) throw new ShapeError(`${name} is not a tensor (or {data: tensor, ids})`, { batch: batchNo });
        if (t.rank >= 1 && t.shape[0] === 0) {
          if (options.disposeBatches) t.dispose();
          batchNo++;
          continue; // an empty batch contributes nothing; an all-empty stream is caught below
        }
        const r = readBatch(t, name);
        if (options.disposeBatches) t.dispose();
        if (itemShape === null) {
          itemShape = r.itemShape;
          kind = r.kind;
          dim = sizeOf(itemShape);
          shardSize = options.shardSize === undefined ? defaultShardSize(dim) : checkInt(options.shardSize, 'shardSize');
          buf = new Float32Array(shardSize * dim);
        } else if (!sameShape(itemShape, r.itemShape) || r.kind !== kind) {
          throw new ShapeError(
            `mixed reference shapes: ${name} has items of shape [${r.itemShape.join(',')}] but earlier batches have [${itemShape.join(',')}]`,
            { batch: batchNo, expected: itemShape, actual: r.itemShape },
          );
        }
        ids.add(batchIds, r.n, batchNo);
        let i = 0;
        while (i < r.n) {
          const take = Math.min(shardSize - fill, r.n - i);
          buf.set(r.rows.subarray(i * dim, (i + take) * dim), fill * dim);
          fill += take;
          i += take;
          if (fill === shardSize) flush();
        }
        batchNo++;
      }
      flush();
      if (itemShape === null) throw new InputError('EMPTY_REFERENCE_SET', 'the reference stream yielded no references');
      writer.finish({ kind, itemShape, dim, sqNorms: Float64Array.from(norms), ids: ids.result() });
    } catch (err) {
      writer.abort();
      throw err;
    }
    return ReferenceIndex.load(options.dir, { residentBytes: options.residentBytes });
  }

  /**
   * Opens an index written by {@link ReferenceIndex.build} or {@link ReferenceIndex.save}.
   * Shards are uploaded to backend memory up to `residentBytes`; the rest stay on disk.
   * @throws InputError `INDEX_MANIFEST_MISSING`, `INDEX_MANIFEST_INVALID`, `INDEX_SHARD_MISSING`,
   *   `INDEX_SHARD_SIZE`.
   */
  static async load(dir: string, options: LoadOptions = {}): Promise<ReferenceIndex> {
    const m: IndexManifest = readManifest(dir);
    const budget = options.residentBytes ?? DEFAULT_RESIDENT_BYTES;
    let used = 0;
    const shards: Shard[] = m.shards.map((entry) => {
      let rows: tf.Tensor2D | null = null;
      if (used + entry.bytes <= budget) {
        rows = tf.tensor2d(readShardFile(dir, entry), [entry.count, m.dim], 'float32');
        used += entry.bytes;
      }
      return { entry, rows, sq: null, inv: null };
    });
    return new ReferenceIndex({
      kind: m.kind,
      itemShape: m.itemShape,
      shards,
      sqNorms: readNorms(dir, m),
      ids: readIds(dir, m),
      dir,
    });
  }

  /**
   * Writes the index to `dir` in the on-disk format (atomically, as {@link ReferenceIndex.build}).
   */
  async save(dir: string, options: { overwrite?: boolean } = {}): Promise<void> {
    this.assertAlive();
    const writer = new IndexWriter(dir, options.overwrite ?? false);
    try {
      for (const s of this.shards) writer.writeShard(this.shardRows(s), s.entry.count);
      writer.finish({ kind: this.kind, itemShape: [...this.itemShape], dim: this.dim, sqNorms: this.sqNorms, ids: this.idList });
    } catch (err) {
      writer.abort();
      throw err;
    }
  }

  /** Frees the resident shard tensors. The index cannot be used afterwards. */
  dispose(): void {
    for (const s of this.shards) {
      s.rows?.dispose();
      s.sq?.dispose();
      s.inv?.dispose();
      s.rows = s.sq = s.inv = null;
    }
    this.disposed = true;
  }

  // ---------------------------------------------------------------- ids and data

  /** Number of shards and how many are resident in backend memory. */
  get shardStats(): { shards: number; resident: number; residentBytes: number } {
    const resident = this.shards.filter((s) => s.rows !== null);
    return { shards: this.shards.length, resident: resident.length, residentBytes: resident.reduce((a, s) => a + s.entry.bytes, 0) };
  }

  /** The id of reference `index`. */
  idAt(index: number): ReferenceId {
    if (!Number.isInteger(index) || index < 0 || index >= this.size) {
      throw new ConfigError(`reference index ${index} is outside [0, ${this.size})`, { index });
    }
    return this.idList ? (this.idList[index] as ReferenceId) : index;
  }

  /** All ids, in reference order. */
  get ids(): ReferenceId[] {
    return this.idList ? [...this.idList] : Array.from({ length: this.size }, (_, i) => i);
  }

  /** The reference index of `id`, or -1. */
  indexOfId(id: ReferenceId): number {
    if (!this.idList) return typeof id === 'number' && Number.isInteger(id) && id >= 0 && id < this.size ? id : -1;
    if (!this.idLookup) this.idLookup = new Map(this.idList.map((v, i) => [v, i]));
    return this.idLookup.get(id) ?? -1;
  }

  /** ‖r‖² of reference `index` (float64). */
  squaredNorm(index: number): number {
    this.idAt(index);
    return this.sqNorms[index] as number;
  }

  /**
   * The flattened references at `indices` as a new [m, dim] tensor (caller disposes). Reads from
   * disk for non-resident shards.
   */
  gather(indices: readonly number[]): tf.Tensor2D {
    this.assertAlive();
    for (const i of indices) this.idAt(i);
    const out = new Float32Array(indices.length * this.dim);
    this.copyRows(indices, out);
    return tf.tensor2d(out, [indices.length, this.dim], 'float32');
  }

  /** Copies rows `indices` (global) into `out` in order, shard by shard. */
  private copyRows(indices: readonly number[], out: Float32Array): void {
    const dim = this.dim;
    const byShard = new Map<number, { local: number[]; pos: number[] }>();
    for (let p = 0; p < indices.length; p++) {
      const g = indices[p] as number;
      const si = this.shardOf(g);
      let e = byShard.get(si);
      if (!e) byShard.set(si, (e = { local: [], pos: [] }));
      e.local.push(g - (this.shards[si] as Shard).entry.start);
      e.pos.push(p);
    }
    for (const [si, e] of byShard) {
      const s = this.shards[si] as Shard;
      if (s.rows) {
        const host = hostRows(s.rows);
        e.local.forEach((r, i) => out.set(host.subarray(r * dim, (r + 1) * dim), (e.pos[i] as number) * dim));
      } else readShardRows(this.dir as string, s.entry, dim, e.local, out, e.pos);
    }
  }

  private shardOf(g: number): number {
    let lo = 0;
    let hi = this.shards.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if ((this.shards[mid] as Shard).entry.start <= g) lo = mid;
      else hi = mid - 1;
    }
    return lo;
  }

  private shardRows(s: Shard): Float32Array {
    return s.rows ? readFloat32(s.rows) : readShardFile(this.dir as string, s.entry);
  }

  private assertAlive(): void {
    if (this.disposed) throw new InputError('DISPOSED_INDEX', 'this ReferenceIndex has been disposed');
  }

  // ---------------------------------------------------------------- search

  /**
   * Flattens and validates queries: [Q, ...itemShape] or [Q, dim]; returns a copy of the data.
   * @internal
   */
  readQueries(queries: tf.Tensor, name = 'queries'): { data: Float32Array; count: number } {
    checkTensor(queries, name);
    const item = queries.shape.slice(1);
    if (!sameShape(item, this.itemShape) && !(item.length === 1 && item[0] === this.dim)) {
      throw new ShapeError(
        `${name} must have items of shape [${this.itemShape.join(',')}] (or [${this.dim}] flattened) to match the reference set, got [${item.join(',')}]`,
        { name, expected: this.itemShape, actual: item },
      );
    }
    const data = readFloat32(queries);
    checkFiniteRows(data, this.dim, name);
    return { data, count: queries.shape[0] as number };
  }

  /**
   * The k nearest references of every query, best first, with their ids. Queries are a batch of
   * items shaped like the references ([Q,H,W,C] or [Q,D]) or flattened [Q,dim].
   * @throws ConfigError when k exceeds the reference set; ShapeError on a shape mismatch;
   *   NonFiniteError when a query has NaN/Inf.
   */
  search(queries: tf.Tensor, options: SearchOptions = {}): KnnResult {
    this.assertAlive();
    const { data, count } = this.readQueries(queries);
    return this.searchFlat(data, count, options);
  }

  /**
   * {@link ReferenceIndex.search} over already-flattened, validated query rows.
   * @internal
   */
  searchFlat(q: Float32Array, count: number, options: SearchOptions = {}): KnnResult {
    this.assertAlive();
    const plan = this.planSearch(count, options);
    const { l2, metric, keep } = plan;
    const dim = this.dim;
    const cand = emptyCandidates(count);
    // Query batches stay on the backend for the whole search as [dim, b] (the layout that makes
    // the wasm matMul fast: rows[n,dim] · qT[dim,b], no transpose flags).
    const batches: Array<{ start: number; b: number; qT: tf.Tensor2D }> = [];
    for (let s = 0; s < count; s += plan.batchSize) {
      const b = Math.min(plan.batchSize, count - s);
      const qT = tf.tidy(() => tf.transpose(tf.tensor2d(q.subarray(s * dim, (s + b) * dim), [b, dim], 'float32')) as tf.Tensor2D);
      batches.push({ start: s, b, qT });
    }
    try {
      for (const shard of this.shards) {
        const n = shard.entry.count;
        const streamed = shard.rows === null;
        const rows = shard.rows ?? tf.tensor2d(readShardFile(this.dir as string, shard.entry), [n, dim], 'float32');
        const aux = this.shardAux(shard, metric);
        try {
          const kc = Math.min(keep, n);
          for (const { start, b, qT } of batches) {
            // score: larger is closer. ℓ2: 2q·r − ‖r‖² (= ‖q‖² − d²); cosine: q·r/‖r‖.
            const { values, indices } = tf.tidy(() => {
              const dots = tf.matMul(rows, qT); // [n, b]
              const sc = l2 ? tf.sub(tf.mul(dots, 2), aux) : tf.mul(dots, aux);
              return tf.topk(tf.transpose(sc), kc, true);
            });
            const v = values.dataSync();
            const ix = indices.dataSync();
            values.dispose();
            indices.dispose();
            this.mergeShardTopK(plan, cand, v, ix, kc, shard.entry.start, start, b);
          }
        } finally {
          if (streamed) {
            rows.dispose();
            aux.dispose();
          }
        }
      }
    } finally {
      for (const bt of batches) bt.qT.dispose();
    }
    return this.finishSearch(q, count, plan, cand);
  }

  /**
   * Validates search options into a plan (shared by the single-thread and parallel searches).
   * @internal
   */
  planSearch(count: number, options: SearchOptions): SearchPlan {
    const metric = checkMetric(options.metric ?? 'rms-l2');
    const exclude = options.exclude;
    if (exclude !== undefined && exclude.length !== count) {
      throw new ShapeError(`exclude has ${exclude.length} entries for ${count} queries`, { expected: count, actual: exclude.length });
    }
    const excl = new Int32Array(count).fill(-1);
    if (exclude) exclude.forEach((e, i) => (excl[i] = e === null || e === undefined ? -1 : e));
    const hasExcl = excl.some((e) => e >= 0);
    const k = checkK(options.k ?? 1, hasExcl ? this.size - 1 : this.size);
    const batchSize = checkInt(options.queryBatchSize ?? 256, 'queryBatchSize');
    const l2 = metric !== 'cosine';
    const exact = l2 && (options.exact ?? true);
    // Candidates kept per query: k, plus a margin re-scored exactly, plus one for the exclusion.
    const keep = Math.min(this.size, k + (exact ? EXACT_MARGIN : 0) + (hasExcl ? 1 : 0));
    return { metric, k, keep, l2, exact, excl, batchSize };
  }

  /**
   * Merges one shard's top-kc (row-major [b, kc] scores/local indices) for queries
   * [qStart, qStart + b) into the running candidates.
   * @internal
   */
  mergeShardTopK(plan: SearchPlan, cand: Candidates, v: ArrayLike<number>, ix: ArrayLike<number>, kc: number, shardStart: number, qStart: number, b: number): void {
    for (let i = 0; i < b; i++) {
      const qi = qStart + i;
      mergeCandidates(cand.idx, cand.score, qi, v, ix, i * kc, kc, shardStart, plan.keep, plan.excl[qi] as number);
    }
  }

  /**
   * Exact re-scoring (ℓ2) and conversion of the merged candidates into a {@link KnnResult}.
   * @internal
   */
  finishSearch(q: Float32Array, count: number, plan: SearchPlan, cand: Candidates): KnnResult {
    const { metric, k, exact } = plan;
    const dim = this.dim;
    const qNorm2 = new Float64Array(count);
    sqNormsOf(q, count, dim, qNorm2, 0);
    const result: KnnResult = { metric, k, indices: [], ids: [], values: [] };
    if (exact) this.refineExact(q, count, qNorm2, cand.idx, cand.score);
    for (let qi = 0; qi < count; qi++) {
      const idx = cand.idx[qi] as Int32Array;
      const sc = cand.score[qi] as Float64Array;
      const m = Math.min(k, idx.length);
      const I: number[] = [];
      const V: number[] = [];
      for (let j = 0; j < m; j++) {
        I.push(idx[j] as number);
        const s = sc[j] as number;
        if (metric === 'cosine') {
          const qn = Math.sqrt(qNorm2[qi] as number);
          V.push(qn > 0 ? s / qn : 0);
        } else {
          // exact: s = −d²; otherwise s = ‖q‖² − d².
          const d2 = Math.max(0, exact ? -s : (qNorm2[qi] as number) - s);
          V.push(metric === 'rms-l2' ? Math.sqrt(d2 / dim) : d2);
        }
      }
      result.indices.push(I);
      result.values.push(V);
      result.ids.push(I.map((i) => (this.idList ? (this.idList[i] as ReferenceId) : i)));
    }
    return result;
  }

  /**
   * Where the index lives on disk (null for in-memory indices).
   * @internal
   */
  get storage(): { dir: string; shards: readonly ShardEntry[] } | null {
    return this.dir ? { dir: this.dir, shards: this.shards.map((s) => s.entry) } : null;
  }

  /** [n,1] auxiliary column: ‖r‖² for ℓ2, 1/‖r‖ (0 for a zero row) for cosine. */
  private shardAux(shard: Shard, metric: KnnMetric): tf.Tensor2D {
    const cached = metric === 'cosine' ? shard.inv : shard.sq;
    return cached ?? this.makeAux(shard, metric);
  }

  private makeAux(shard: Shard, metric: KnnMetric): tf.Tensor2D {
    const n = shard.entry.count;
    const col = new Float32Array(n);
    for (let i = 0; i < n; i++) {
      const s = this.sqNorms[shard.entry.start + i] as number;
      col[i] = metric === 'cosine' ? (s > 0 ? 1 / Math.sqrt(s) : 0) : s;
    }
    return tf.tensor2d(col, [n, 1], 'float32');
  }

  /**
   * Converts ℓ2 candidate scores to −d² and re-scores directly (float64 accumulation on the host)
   * every candidate whose expanded distance may be imprecise, then re-sorts. The expansion's
   * float32 error is ≲ 3e-6·(‖q‖² + ‖r‖²) (measured on the wasm matMul), so candidates with
   * d² < {@link REFINE_RATIO}·(‖q‖² + ‖r‖²) — near-duplicates, the memorization cases — are
   * recomputed, and the rest keep ≤ 3e-5 relative error. Rows of resident shards are read in
   * place from backend memory when possible.
   */
  private refineExact(q: Float32Array, count: number, qNorm2: Float64Array, candIdx: Int32Array[], candScore: Float64Array[]): void {
    const dim = this.dim;
    // −d² for every candidate (approximate), and the list of those to recompute.
    const todo = new Map<number, number>(); // reference row → slot in the host buffer
    for (let i = 0; i < count; i++) {
      const idx = candIdx[i] as Int32Array;
      const sc = candScore[i] as Float64Array;
      const qq = qNorm2[i] as number;
      for (let c = 0; c < idx.length; c++) {
        const r = idx[c] as number;
        const d2 = Math.max(0, qq - (sc[c] as number));
        sc[c] = -d2;
        if (d2 < REFINE_RATIO * (qq + (this.sqNorms[r] as number)) && !todo.has(r)) todo.set(r, todo.size);
      }
    }
    const maxRows = Math.max(1, Math.floor(REFINE_FLOATS / dim));
    const unique = [...todo.keys()];
    for (let b = 0; b < unique.length; b += maxRows) {
      const block = unique.slice(b, b + maxRows);
      const local = new Map<number, number>(block.map((r, j) => [r, j]));
      const buf = new Float32Array(block.length * dim);
      this.copyRows(block, buf);
      for (let i = 0; i < count; i++) {
        const idx = candIdx[i] as Int32Array;
        const sc = candScore[i] as Float64Array;
        const qq = qNorm2[i] as number;
        const qo = i * dim;
        for (let c = 0; c < idx.length; c++) {
          const r = idx[c] as number;
          const j = local.get(r);
          if (j === undefined || -(sc[c] as number) >= REFINE_RATIO * (qq + (this.sqNorms[r] as number))) continue;
          const ro = j * dim;
          let s = 0;
          for (let t = 0; t < dim; t++) {
            const d = (q[qo + t] as number) - (buf[ro + t] as number);
            s += d * d;
          }
          sc[c] = -s;
        }
      }
    }
    for (let i = 0; i < count; i++) {
      const idx = candIdx[i] as Int32Array;
      const v = candScore[i] as Float64Array;
      const entries = Array.from(idx, (r, c) => ({ r, s: v[c] as number }));
      entries.sort((a, b) => b.s - a.s || a.r - b.r);
      candIdx[i] = Int32Array.from(entries, (e) => e.r);
      candScore[i] = Float64Array.from(entries, (e) => e.s);
    }
  }
}

/**
 * The host-side float32 contents of a resident tensor: a zero-copy view into the wasm heap when
 * the wasm backend holds it (valid until the next allocation — used immediately), else a copy.
 */
function hostRows(t: tf.Tensor): Float32Array {
  if (tf.getBackend() === 'wasm') {
    const b = tf.backend() as unknown as { typedArrayFromHeap?: (t: tf.Tensor) => Float32Array };
    if (typeof b.typedArrayFromHeap === 'function') {
      try {
        return b.typedArrayFromHeap(t);
      } catch {
        // tensor lives on another backend: fall through to a copy
      }
    }
  }
  return readFloat32(t);
}

/** A validated search request. @internal */
export interface SearchPlan {
  metric: KnnMetric;
  k: number;
  /** Candidates kept per query before the final cut. */
  keep: number;
  l2: boolean;
  exact: boolean;
  excl: Int32Array;
  batchSize: number;
}

/** Running per-query candidates (sorted, best first). @internal */
export interface Candidates {
  idx: Int32Array[];
  score: Float64Array[];
}

/** @internal */
export function emptyCandidates(count: number): Candidates {
  return {
    idx: Array.from({ length: count }, () => new Int32Array(0)),
    score: Array.from({ length: count }, () => new Float64Array(0)),
  };
}

/** Merges one shard's top-kc of query `qi` into its running candidate list (sorted, ≤ keep). */
function mergeCandidates(
  candIdx: Int32Array[],
  candScore: Float64Array[],
  qi: number,
  v: ArrayLike<number>,
  ix: ArrayLike<number>,
  off: number,
  kc: number,
  base: number,
  keep: number,
  exclude: number,
): void {
  const oldI = candIdx[qi] as Int32Array;
  const oldS = candScore[qi] as Float64Array;
  const total = oldI.length + kc;
  const I = new Int32Array(total);
  const S = new Float64Array(total);
  let m = 0;
  for (let j = 0; j < oldI.length; j++) {
    I[m] = oldI[j] as number;
    S[m++] = oldS[j] as number;
  }
  for (let j = 0; j < kc; j++) {
    const g = (ix[off + j] as number) + base;
    if (g === exclude) continue;
    I[m] = g;
    S[m++] = v[off + j] as number;
  }
  const order = Array.from({ length: m }, (_, j) => j);
  order.sort((a, b) => (S[b] as number) - (S[a] as number) || (I[a] as number) - (I[b] as number));
  const n = Math.min(keep, m);
  const nI = new Int32Array(n);
  const nS = new Float64Array(n);
  for (let j = 0; j < n; j++) {
    nI[j] = I[order[j] as number] as number;
    nS[j] = S[order[j] as number] as number;
  }
  candIdx[qi] = nI;
  candScore[qi] = nS;
}
