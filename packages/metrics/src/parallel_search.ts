/**
 * Multi-core exact k-NN over an on-disk {@link ReferenceIndex}. The TF.js wasm backend runs
 * single-threaded in Node (tfjs disables its pthread build there), so the matrix products — the
 * whole cost of a brute-force search — use one core. `ParallelSearcher` starts one worker thread
 * per core, each with its own wasm backend holding a slice of the shards in memory; the main
 * thread merges the per-shard top-k lists and does the exact re-scoring, exactly as the
 * single-thread search does (results are identical).
 * @module
 */
import { createRequire } from 'node:module';
import * as os from 'node:os';
import { Worker } from 'node:worker_threads';
import type * as tf from '@tensorflow/tfjs-core';
import { BackendError, ConfigError, InputError } from '@diffmem/core';
import { checkInt } from './internal/checks.js';
import { ReferenceIndex, emptyCandidates, type KnnResult, type SearchOptions } from './reference_index.js';
import type { ShardEntry } from './index_storage.js';

// The worker is plain CommonJS evaluated from a string, so it runs the same way from the
// TypeScript sources (tests) and from the compiled package; tfjs module paths come from the
// main thread's resolution so both threads load the same installed versions.
const WORKER_SOURCE = String.raw`
const { parentPort, workerData } = require('node:worker_threads');
const fs = require('node:fs');
const path = require('node:path');
const tf = require(workerData.tfCore);
require(workerData.tfWasm);
const shards = [];
async function init() {
  await tf.setBackend('wasm');
  await tf.ready();
  const { dir, dim, entries, normsFile } = workerData;
  const nb = fs.readFileSync(path.join(dir, normsFile));
  const norms = new Float64Array(nb.buffer.slice(nb.byteOffset, nb.byteOffset + nb.byteLength));
  for (const e of entries) {
    const buf = fs.readFileSync(path.join(dir, e.file));
    const data = new Float32Array(buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength));
    const sq = new Float32Array(e.count);
    const inv = new Float32Array(e.count);
    for (let i = 0; i < e.count; i++) {
      const s = norms[e.start + i];
      sq[i] = s;
      inv[i] = s > 0 ? 1 / Math.sqrt(s) : 0;
    }
    shards.push({ start: e.start, count: e.count, rows: tf.tensor2d(data, [e.count, dim]), sq: tf.tensor2d(sq, [e.count, 1]), inv: tf.tensor2d(inv, [e.count, 1]) });
  }
}
const ready = init();
ready.then(
  () => parentPort.postMessage({ type: 'ready' }),
  (err) => parentPort.postMessage({ type: 'error', id: -1, message: String((err && err.stack) || err) }),
);
parentPort.on('message', async (msg) => {
  if (msg.type !== 'search') return;
  try {
    await ready;
    const { id, q, count, dim, keep, l2, batchSize } = msg;
    const out = shards.map((sh) => {
      const kc = Math.min(keep, sh.count);
      return { start: sh.start, kc, values: new Float32Array(count * kc), indices: new Int32Array(count * kc) };
    });
    for (let s = 0; s < count; s += batchSize) {
      const b = Math.min(batchSize, count - s);
      const qT = tf.tidy(() => tf.transpose(tf.tensor2d(q.subarray(s * dim, (s + b) * dim), [b, dim])));
      shards.forEach((sh, j) => {
        const o = out[j];
        const r = tf.tidy(() => {
          const dots = tf.matMul(sh.rows, qT);
          const sc = l2 ? tf.sub(tf.mul(dots, 2), sh.sq) : tf.mul(dots, sh.inv);
          return tf.topk(tf.transpose(sc), o.kc, true);
        });
        o.values.set(r.values.dataSync(), s * o.kc);
        o.indices.set(r.indices.dataSync(), s * o.kc);
        r.values.dispose();
        r.indices.dispose();
      });
      qT.dispose();
    }
    parentPort.postMessage({ type: 'result', id, out }, out.flatMap((o) => [o.values.buffer, o.indices.buffer]));
  } catch (err) {
    parentPort.postMessage({ type: 'error', id: msg.id, message: String((err && err.stack) || err) });
  }
});
`;

interface ShardResult {
  start: number;
  kc: number;
  values: Float32Array;
  indices: Int32Array;
}

interface WorkerState {
  worker: Worker;
  pending: Map<number, { resolve: (r: ShardResult[]) => void; reject: (e: Error) => void }>;
}

/** Options of {@link ParallelSearcher.open}. */
export interface ParallelSearchOptions {
  /** Worker threads (default: the number of cores, at most the number of shards). */
  threads?: number;
}

/** Splits shards into `n` contiguous groups of about equal row counts. */
function splitShards(shards: readonly ShardEntry[], n: number): ShardEntry[][] {
  const total = shards.reduce((a, s) => a + s.count, 0);
  const groups: ShardEntry[][] = Array.from({ length: n }, () => []);
  let acc = 0;
  for (const s of shards) {
    const g = Math.min(n - 1, Math.floor((acc + s.count / 2) / (total / n)));
    (groups[g] as ShardEntry[]).push(s);
    acc += s.count;
  }
  return groups.filter((g) => g.length > 0);
}

/**
 * Exact k-NN search spread over worker threads (one wasm backend each). Results equal
 * {@link ReferenceIndex.search}'s. Call {@link ParallelSearcher.close} when done.
 *
 * @example
 * ```ts
 * const searcher = await ParallelSearcher.open('cifar10-index', { threads: 2 });
 * const res = await searcher.search(generated, { k: 50 });
 * await searcher.close();
 * ```
 */
export class ParallelSearcher {
  private nextId = 0;
  private closed = false;

  private constructor(
    /** The index (shards streamed from disk on the main thread; used for ids and re-scoring). */
    readonly index: ReferenceIndex,
    private readonly workers: WorkerState[],
  ) {}

  /** Number of worker threads. */
  get threads(): number {
    return this.workers.length;
  }

  /** Opens the on-disk index at `dir` and starts the workers (each loads its shards). */
  static async open(dir: string, options: ParallelSearchOptions = {}): Promise<ParallelSearcher> {
    const index = await ReferenceIndex.load(dir, { residentBytes: 0 });
    const storage = index.storage as { dir: string; shards: readonly ShardEntry[] };
    const cores = typeof os.availableParallelism === 'function' ? os.availableParallelism() : os.cpus().length;
    const threads = Math.min(checkInt(options.threads ?? cores, 'threads'), storage.shards.length);
    const req = createRequire(import.meta.url);
    let tfCore: string;
    let tfWasm: string;
    try {
      tfCore = req.resolve('@tensorflow/tfjs-core');
      tfWasm = req.resolve('@tensorflow/tfjs-backend-wasm');
    } catch (err) {
      index.dispose();
      throw new InputError('MISSING_DEPENDENCY', `ParallelSearcher needs @tensorflow/tfjs-backend-wasm: ${(err as Error).message}`);
    }
    const states: WorkerState[] = [];
    const starts: Array<Promise<void>> = [];
    for (const entries of splitShards(storage.shards, threads)) {
      const worker = new Worker(WORKER_SOURCE, {
        eval: true,
        workerData: { tfCore, tfWasm, dir: storage.dir, dim: index.dim, entries, normsFile: 'sqnorms.f64' },
      });
      const state: WorkerState = { worker, pending: new Map() };
      states.push(state);
      starts.push(
        new Promise<void>((resolve, reject) => {
          worker.on('message', (msg: { type: string; id?: number; out?: ShardResult[]; message?: string }) => {
            if (msg.type === 'ready') resolve();
            else if (msg.type === 'result') {
              state.pending.get(msg.id as number)?.resolve(msg.out as ShardResult[]);
              state.pending.delete(msg.id as number);
            } else if (msg.type === 'error') {
              const err = new BackendError(`search worker failed: ${msg.message}`);
              if (msg.id === -1) reject(err);
              else {
                state.pending.get(msg.id as number)?.reject(err);
                state.pending.delete(msg.id as number);
              }
            }
          });
          worker.on('error', (err) => {
            reject(err);
            for (const p of state.pending.values()) p.reject(err);
            state.pending.clear();
          });
          worker.on('exit', (code) => {
            const err = new BackendError(`search worker exited (code ${code})`);
            reject(err);
            for (const p of state.pending.values()) p.reject(err);
            state.pending.clear();
          });
        }),
      );
    }
    const searcher = new ParallelSearcher(index, states);
    try {
      await Promise.all(starts);
    } catch (err) {
      await searcher.close();
      throw err;
    }
    // Idle workers must not keep the process alive; they are ref'd while a search runs.
    for (const s of states) s.worker.unref();
    return searcher;
  }

  /** Exact k nearest references of every query (same options and result as the index's). */
  async search(queries: tf.Tensor, options: SearchOptions = {}): Promise<KnnResult> {
    if (this.closed) throw new ConfigError('this ParallelSearcher has been closed');
    const { data, count } = this.index.readQueries(queries);
    const plan = this.index.planSearch(count, options);
    const msg = { type: 'search', q: data, count, dim: this.index.dim, keep: plan.keep, l2: plan.l2, batchSize: plan.batchSize };
    const id = this.nextId++;
    for (const s of this.workers) s.worker.ref();
    let parts: ShardResult[][];
    try {
      parts = await Promise.all(
        this.workers.map(
          (s) =>
            new Promise<ShardResult[]>((resolve, reject) => {
              s.pending.set(id, { resolve, reject });
              s.worker.postMessage({ ...msg, id });
            }),
        ),
      );
    } finally {
      for (const s of this.workers) s.worker.unref();
    }
    const cand = emptyCandidates(count);
    for (const part of parts) for (const o of part) this.index.mergeShardTopK(plan, cand, o.values, o.indices, o.kc, o.start, 0, count);
    return this.index.finishSearch(data, count, plan, cand);
  }

  /** Terminates the workers and disposes the index. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await Promise.all(this.workers.map((s) => s.worker.terminate()));
    this.index.dispose();
  }
}
