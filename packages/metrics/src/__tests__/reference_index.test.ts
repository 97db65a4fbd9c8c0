import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-wasm';
import { ConfigError, Generator, InputError, NonFiniteError, ShapeError, ValueRangeError } from '@diffmem/core';
import { ParallelSearcher, ReferenceIndex, type KnnMetric } from '../index.js';

beforeAll(async () => {
  await tf.setBackend('wasm');
  await tf.ready();
});

const H = 6;
const W = 5;
const C = 3;
const D = H * W * C;

function randomImages(n: number, seed: number): Float32Array {
  const g = new Generator(seed);
  return g.uniformArray(n * D);
}

/** Float64 brute force: neighbours sorted best-first with ties by index. */
function bruteForce(refs: Float32Array, q: Float32Array, k: number, metric: KnnMetric, exclude = -1): { idx: number[]; val: number[] } {
  const n = refs.length / D;
  const scored: Array<{ i: number; v: number }> = [];
  let qq = 0;
  for (let j = 0; j < D; j++) qq += (q[j] as number) ** 2;
  for (let i = 0; i < n; i++) {
    if (i === exclude) continue;
    let d2 = 0;
    let dot = 0;
    let rr = 0;
    for (let j = 0; j < D; j++) {
      const a = q[j] as number;
      const b = refs[i * D + j] as number;
      d2 += (a - b) ** 2;
      dot += a * b;
      rr += b * b;
    }
    const v = metric === 'cosine' ? dot / Math.sqrt(qq * rr) : metric === 'rms-l2' ? Math.sqrt(d2 / D) : d2;
    scored.push({ i, v });
  }
  scored.sort((a, b) => (metric === 'cosine' ? b.v - a.v : a.v - b.v) || a.i - b.i);
  return { idx: scored.slice(0, k).map((s) => s.i), val: scored.slice(0, k).map((s) => s.v) };
}

describe('ReferenceIndex (in memory)', () => {
  const N = 300;
  const refs = randomImages(N, 1);
  // Queries: exact copies of refs 3 and 250, a near copy of ref 77, and random images.
  const Q = 12;
  const queries = randomImages(Q, 2);
  queries.set(refs.subarray(3 * D, 4 * D), 0);
  queries.set(refs.subarray(250 * D, 251 * D), D);
  for (let j = 0; j < D; j++) queries[2 * D + j] = Math.min(1, (refs[77 * D + j] as number) + 0.001);
  let index: ReferenceIndex;
  const ids = Array.from({ length: N }, (_, i) => `train/${i}.png`);

  beforeAll(() => {
    const t = tf.tensor4d(refs, [N, H, W, C]);
    index = ReferenceIndex.fromImages(t, { ids, shardSize: 64 });
    t.dispose();
  });
  afterAll(() => index.dispose());

  it('has 5 shards, the right size and shape', () => {
    expect(index.size).toBe(N);
    expect(index.itemShape).toEqual([H, W, C]);
    expect(index.shardStats).toMatchObject({ shards: 5, resident: 5 });
    expect(index.idAt(7)).toBe('train/7.png');
    expect(index.indexOfId('train/9.png')).toBe(9);
  });

  it.each<KnnMetric>(['rms-l2', 'squared-l2', 'cosine'])('matches float64 brute force for %s (k = 10)', (metric) => {
    const q = tf.tensor4d(queries, [Q, H, W, C]);
    const before = tf.memory().numTensors;
    const res = index.search(q, { k: 10, metric, queryBatchSize: 5 });
    expect(tf.memory().numTensors).toBe(before);
    q.dispose();
    for (let i = 0; i < Q; i++) {
      const bf = bruteForce(refs, queries.subarray(i * D, (i + 1) * D), 10, metric);
      expect(res.indices[i]).toEqual(bf.idx);
      expect(res.ids[i]).toEqual(bf.idx.map((j) => `train/${j}.png`));
      (res.values[i] as number[]).forEach((v, j) => expect(v).toBeCloseTo(bf.val[j] as number, metric === 'squared-l2' ? 3 : 5));
    }
  });

  it('gives exactly 0 for an exact copy and finds the near copy', () => {
    const q = tf.tensor4d(queries, [Q, H, W, C]);
    const res = index.search(q, { k: 1 });
    q.dispose();
    expect(res.indices[0]).toEqual([3]);
    expect(res.values[0]).toEqual([0]);
    expect(res.indices[1]).toEqual([250]);
    expect(res.values[1]).toEqual([0]);
    expect(res.indices[2]).toEqual([77]);
    expect((res.values[2] as number[])[0]).toBeLessThan(0.0011);
  });

  it('supports k beyond 50 and up to the whole set, and flattened queries', () => {
    const q = tf.tensor2d(queries.subarray(0, 3 * D), [3, D]);
    const big = index.search(q, { k: 120 });
    expect(big.indices[2]).toEqual(bruteForce(refs, queries.subarray(2 * D, 3 * D), 120, 'rms-l2').idx);
    const all = index.search(q, { k: N, metric: 'cosine' });
    expect(new Set(all.indices[0]).size).toBe(N);
    q.dispose();
  });

  it('excludes a given reference per query (self-search)', () => {
    const q = index.gather([3, 10]);
    const res = index.search(q, { k: 5, exclude: [3, 10] });
    q.dispose();
    expect(res.indices[0]).not.toContain(3);
    expect(res.indices[0]).toEqual(bruteForce(refs, refs.subarray(3 * D, 4 * D), 5, 'rms-l2', 3).idx);
    expect(res.indices[1]).toEqual(bruteForce(refs, refs.subarray(10 * D, 11 * D), 5, 'rms-l2', 10).idx);
  });

  it('gathers references in the requested order', () => {
    const g = index.gather([250, 3, 64]);
    const v = g.dataSync();
    expect(Array.from(v.subarray(0, D))).toEqual(Array.from(refs.subarray(250 * D, 251 * D)));
    expect(Array.from(v.subarray(2 * D))).toEqual(Array.from(refs.subarray(64 * D, 65 * D)));
    g.dispose();
  });

  it('rejects bad queries and options with typed errors', () => {
    const wrong = tf.zeros([2, H, W, 1]);
    expect(() => index.search(wrong)).toThrow(ShapeError);
    expect(() => index.search(wrong)).toThrow(/\[6,5,3\].*got \[6,5,1\]/);
    wrong.dispose();
    const nan = tf.tensor4d(new Float32Array(D).fill(Number.NaN), [1, H, W, C]);
    expect(() => index.search(nan)).toThrow(NonFiniteError);
    nan.dispose();
    const q = tf.zeros([1, H, W, C]);
    expect(() => index.search(q, { k: N + 1 })).toThrow(ConfigError);
    expect(() => index.search(q, { k: N + 1 })).toThrow(/k = 301 is larger than the reference set \(300/);
    expect(() => index.search(q, { k: 0 })).toThrow(ConfigError);
    expect(() => index.search(q, { metric: 'l1' as KnnMetric })).toThrow(ConfigError);
    q.dispose();
    const empty = tf.zeros([0, H, W, C]);
    expect(() => index.search(empty)).toThrow(InputError);
    empty.dispose();
  });
});

describe('ReferenceIndex construction errors', () => {
  it('rejects empty sets, mixed shapes, NaN images, out-of-range images and duplicate ids', () => {
    const before = tf.memory().numTensors;
    expect(() => ReferenceIndex.fromImages([])).toThrow(InputError);
    const empty = tf.zeros([0, 4, 4, 3]);
    expect(() => ReferenceIndex.fromImages(empty)).toThrow(expect.objectContaining({ code: 'EMPTY_REFERENCE_SET' }));
    const a = tf.zeros([2, 4, 4, 3]);
    const b = tf.zeros([2, 4, 5, 3]);
    expect(() => ReferenceIndex.fromImages([a, b])).toThrow(ShapeError);
    expect(() => ReferenceIndex.fromImages([a, b])).toThrow(/mixed reference shapes: reference batch 1 has items of shape \[4,5,3\]/);
    const nan = tf.tensor4d([0, 0.5, Number.NaN, 1], [1, 2, 2, 1]);
    expect(() => ReferenceIndex.fromImages(nan)).toThrow(NonFiniteError);
    const model = tf.tensor4d([-1, 0.5, 0, 1], [1, 2, 2, 1]);
    expect(() => ReferenceIndex.fromImages(model)).toThrow(ValueRangeError);
    expect(() => ReferenceIndex.fromImages(model)).toThrow(/toDisplayRange/);
    expect(() => ReferenceIndex.fromImages(a, { ids: ['x', 'x'] })).toThrow(expect.objectContaining({ code: 'DUPLICATE_ID' }));
    expect(() => ReferenceIndex.fromImages(a, { ids: ['x'] })).toThrow(ShapeError);
    expect(() => ReferenceIndex.fromFeatures(a)).toThrow(ShapeError);
    for (const t of [empty, a, b, nan, model]) t.dispose();
    expect(tf.memory().numTensors).toBe(before);
  });
});

describe('ReferenceIndex on disk', () => {
  const N = 230;
  const refs = randomImages(N, 5);
  const queries = randomImages(7, 6);
  let tmp: string;

  beforeAll(() => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'diffmem-index-'));
  });
  afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

  async function* batches(): AsyncGenerator<{ data: tf.Tensor; ids: number[] }> {
    for (let s = 0; s < N; s += 40) {
      const n = Math.min(40, N - s);
      yield { data: tf.tensor4d(refs.subarray(s * D, (s + n) * D), [n, H, W, C]), ids: Array.from({ length: n }, (_, i) => 1000 + s + i) };
    }
  }

  it('builds shards + manifest atomically, streams non-resident shards, and matches brute force', async () => {
    const dir = path.join(tmp, 'idx');
    const before = tf.memory().numTensors;
    const index = await ReferenceIndex.build(batches(), { dir, shardSize: 50, disposeBatches: true, residentBytes: 2 * 50 * D * 4 });
    expect(fs.readdirSync(tmp)).toEqual(['idx']); // no staging directory left behind
    const manifest = JSON.parse(fs.readFileSync(path.join(dir, 'manifest.json'), 'utf8'));
    expect(manifest).toMatchObject({ format: 'diffmem-reference-index', count: N, dim: D, itemShape: [H, W, C], kind: 'images' });
    expect(manifest.shards).toHaveLength(5);
    expect(index.shardStats).toMatchObject({ shards: 5, resident: 2 });
    const q = tf.tensor4d(queries, [7, H, W, C]);
    const mid = tf.memory().numTensors;
    const res = index.search(q, { k: 8 });
    expect(tf.memory().numTensors).toBe(mid);
    for (let i = 0; i < 7; i++) {
      const bf = bruteForce(refs, queries.subarray(i * D, (i + 1) * D), 8, 'rms-l2');
      expect(res.indices[i]).toEqual(bf.idx);
      expect(res.ids[i]).toEqual(bf.idx.map((j) => 1000 + j));
      (res.values[i] as number[]).forEach((v, j) => expect(v).toBeCloseTo(bf.val[j] as number, 5));
    }
    // gather from a streamed shard
    const g = index.gather([229]);
    expect(Array.from(g.dataSync())).toEqual(Array.from(refs.subarray(229 * D)));
    g.dispose();
    q.dispose();
    index.dispose();
    expect(tf.memory().numTensors).toBe(before);
  });

  it('save/load round-trips an in-memory index, refuses to clobber, and overwrites on request', async () => {
    const t = tf.tensor4d(refs, [N, H, W, C]);
    const mem = ReferenceIndex.fromImages(t, { shardSize: 100 });
    t.dispose();
    const dir = path.join(tmp, 'saved');
    await mem.save(dir);
    await expect(mem.save(dir)).rejects.toThrow(expect.objectContaining({ code: 'INDEX_DIR_EXISTS' }));
    await mem.save(dir, { overwrite: true });
    const loaded = await ReferenceIndex.load(dir, { residentBytes: 0 });
    expect(loaded.shardStats.resident).toBe(0);
    expect(loaded.ids.slice(0, 3)).toEqual([0, 1, 2]);
    const q = tf.tensor4d(queries, [7, H, W, C]);
    const a = mem.search(q, { k: 5, metric: 'cosine' });
    const b = loaded.search(q, { k: 5, metric: 'cosine' });
    expect(b.indices).toEqual(a.indices);
    b.values.forEach((row, i) => row.forEach((v, j) => expect(v).toBeCloseTo((a.values[i] as number[])[j] as number, 6)));
    q.dispose();
    mem.dispose();
    loaded.dispose();
    // a non-index, non-empty directory is never replaced
    const other = path.join(tmp, 'other');
    fs.mkdirSync(other);
    fs.writeFileSync(path.join(other, 'notes.txt'), 'keep me');
    const t2 = tf.tensor4d(refs.subarray(0, 4 * D), [4, H, W, C]);
    const small = ReferenceIndex.fromImages(t2);
    t2.dispose();
    await expect(small.save(other, { overwrite: true })).rejects.toThrow(expect.objectContaining({ code: 'INDEX_DIR_NOT_EMPTY' }));
    small.dispose();
    expect(fs.readFileSync(path.join(other, 'notes.txt'), 'utf8')).toBe('keep me');
  });

  it('reports a missing manifest, a truncated shard and bad streams with typed errors', async () => {
    await expect(ReferenceIndex.load(path.join(tmp, 'nothing'))).rejects.toThrow(expect.objectContaining({ code: 'INDEX_MANIFEST_MISSING' }));
    const dir = path.join(tmp, 'corrupt');
    const idx = await ReferenceIndex.build(batches(), { dir, shardSize: 100, disposeBatches: true });
    idx.dispose();
    const shard = path.join(dir, 'shard-00001.f32');
    fs.truncateSync(shard, 100);
    await expect(ReferenceIndex.load(dir)).rejects.toThrow(expect.objectContaining({ code: 'INDEX_SHARD_SIZE' }));
    await expect(ReferenceIndex.build([], { dir: path.join(tmp, 'empty') })).rejects.toThrow(
      expect.objectContaining({ code: 'EMPTY_REFERENCE_SET' }),
    );
    const a = tf.zeros([2, 4, 4, 3]);
    const b = tf.zeros([2, 4, 4, 1]);
    await expect(ReferenceIndex.build([a, b], { dir: path.join(tmp, 'mixed') })).rejects.toThrow(ShapeError);
    const nan = tf.tensor4d([0, 0.5, Number.NaN, 1], [1, 2, 2, 1]);
    const ok = tf.zeros([1, 2, 2, 1]);
    await expect(ReferenceIndex.build([ok, nan], { dir: path.join(tmp, 'nan') })).rejects.toThrow(/reference batch 1 contains 1 non-finite/);
    for (const t of [a, b, nan, ok]) t.dispose();
    expect(fs.existsSync(path.join(tmp, 'mixed'))).toBe(false);
    expect(fs.readdirSync(tmp).filter((f) => f.includes('staging'))).toEqual([]);
  });
});

describe('ReferenceIndex over features', () => {
  it('searches embeddings by cosine and squared ℓ2', () => {
    const g = new Generator(9);
    const feats = tf.tensor2d(g.normalArray(50 * 16), [50, 16]);
    const index = ReferenceIndex.fromFeatures(feats, { ids: Array.from({ length: 50 }, (_, i) => `f${i}`) });
    expect(index.kind).toBe('features');
    const q = tf.slice(feats, [10, 0], [2, 16]);
    const res = index.search(q, { k: 3, metric: 'cosine' });
    expect(res.ids.map((r) => r[0])).toEqual(['f10', 'f11']);
    expect((res.values[0] as number[])[0]).toBeCloseTo(1, 6);
    const wrong = tf.zeros([1, 15]);
    expect(() => index.search(wrong)).toThrow(ShapeError);
    for (const t of [feats, q, wrong]) t.dispose();
    index.dispose();
  });
});

describe('ParallelSearcher', () => {
  it('gives the same neighbours as the single-thread search, from worker threads', async () => {
    const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'diffmem-par-'));
    const N = 500;
    const refs = randomImages(N, 21);
    const t = tf.tensor4d(refs, [N, H, W, C]);
    const mem = ReferenceIndex.fromImages(t, { shardSize: 90, ids: Array.from({ length: N }, (_, i) => `img${i}`) });
    t.dispose();
    await mem.save(path.join(tmp, 'idx'));
    const searcher = await ParallelSearcher.open(path.join(tmp, 'idx'), { threads: 2 });
    expect(searcher.threads).toBe(2);
    const q = tf.tensor4d(randomImages(9, 22), [9, H, W, C]);
    const before = tf.memory().numTensors;
    for (const metric of ['rms-l2', 'cosine'] as const) {
      const a = mem.search(q, { k: 12, metric, queryBatchSize: 4 });
      const b = await searcher.search(q, { k: 12, metric, queryBatchSize: 4 });
      expect(b.indices).toEqual(a.indices);
      expect(b.ids).toEqual(a.ids);
      b.values.forEach((row, i) => row.forEach((v, j) => expect(v).toBeCloseTo((a.values[i] as number[])[j] as number, 6)));
    }
    expect(tf.memory().numTensors).toBe(before);
    await expect(searcher.search(q, { k: N + 1 })).rejects.toThrow(ConfigError);
    await searcher.close();
    await expect(searcher.search(q)).rejects.toThrow(/closed/);
    q.dispose();
    mem.dispose();
    fs.rmSync(tmp, { recursive: true, force: true });
  });
});

describe('ReferenceIndex on the cpu backend', () => {
  it('gives the same neighbours (host reads fall back to dataSync)', async () => {
    await import('@tensorflow/tfjs-backend-cpu');
    await tf.setBackend('cpu');
    try {
      const refs = randomImages(80, 31);
      const t = tf.tensor4d(refs, [80, H, W, C]);
      const index = ReferenceIndex.fromImages(t, { shardSize: 30 });
      const q = tf.tensor4d(randomImages(3, 32), [3, H, W, C]);
      const res = index.search(q, { k: 6 });
      for (let i = 0; i < 3; i++) expect(res.indices[i]).toEqual(bruteForce(refs, q.dataSync().subarray(i * D, (i + 1) * D) as Float32Array, 6, 'rms-l2').idx);
      const g = index.gather([5]);
      expect(Array.from(g.dataSync())).toEqual(Array.from(refs.subarray(5 * D, 6 * D)));
      for (const x of [t, q, g]) x.dispose();
      index.dispose();
    } finally {
      await tf.setBackend('wasm');
    }
  });
});
