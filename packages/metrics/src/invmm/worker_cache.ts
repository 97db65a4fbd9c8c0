/**
 * Per-worker caches of the InvMM worker tasks (`worker_task.ts`, one image per task, and
 * `shard_task.ts`, one shard of one image's step per task): the model and the replication test
 * are built once per worker thread from their serialisable descriptions and reused by every
 * later task with the same description. Both task modules import this one module, so a worker
 * that runs both kinds of task holds one copy of the model.
 * @module
 */
import { loadInvMMModelSource, type InvMMModelSource, type OwnedInvMMModel } from './model.js';
import { replicationTestFromSpec, type ReplicationSpec, type ReplicationTest } from './replication.js';

let cached: { key: string; model: OwnedInvMMModel } | null = null;
let cachedTest: { key: string; test: ReplicationTest } | null = null;

/**
 * A cache key of plain data. Typed arrays (a module source may carry a training set) are
 * summarised by type, byte length and FNV-1a hash, so the key stays short.
 */
export function workerCacheKey(v: unknown): string {
  return JSON.stringify(v, (_k, x: unknown) => {
    if (ArrayBuffer.isView(x)) {
      const b = new Uint8Array(x.buffer, x.byteOffset, x.byteLength);
      let h = 0x811c9dc5;
      for (let i = 0; i < b.length; i++) h = Math.imul(h ^ (b[i] as number), 0x01000193) >>> 0;
      return `${x.constructor.name}:${b.length}:${h}`;
    }
    return x;
  });
}

/** The model of `source` on this thread: loaded on first use, kept while the source stays the same. */
export async function cachedInvMMModel(source: InvMMModelSource): Promise<OwnedInvMMModel> {
  const key = workerCacheKey(source);
  if (cached?.key !== key) {
    cached?.model.dispose();
    cached = null;
    cached = { key, model: await loadInvMMModelSource(source) };
  }
  return cached.model;
}

/** The replication test of `spec` on this thread (built on first use, kept while the spec stays the same). */
export async function cachedReplicationTest(spec: ReplicationSpec): Promise<ReplicationTest> {
  const key = workerCacheKey(spec);
  if (cachedTest?.key !== key) {
    cachedTest?.test.dispose?.();
    cachedTest = null;
    cachedTest = { key, test: await replicationTestFromSpec(spec) };
  }
  return cachedTest.test;
}
