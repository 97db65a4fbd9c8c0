/**
 * The worker-thread task of a parallel InvMM audit: one image per task. Compiled to
 * `dist/invmm/worker_task.js` and run by core's `WorkerPool`; the model and the replication test
 * are built once per worker from their serialisable descriptions and reused across tasks.
 * @module
 */
import * as tf from '@tensorflow/tfjs-core';
import { invertImage, type InvMMRecord } from './invert.js';
import { loadInvMMModelSource, type InvMMModelSource, type OwnedInvMMModel } from './model.js';
import type { InvMMConfig } from './presets.js';
import { replicationTestFromSpec, type ReplicationSpec, type ReplicationTest } from './replication.js';

/** The argument of the worker task `invmmImageTask` (structured-clone safe; run through core's `WorkerPool`). */
export interface InvMMImageTaskArg {
  source: InvMMModelSource;
  replication: ReplicationSpec;
  id: string;
  /** The image, display space [0, 1], [H,W,C] row-major. */
  image: Float32Array;
  shape: [number, number, number];
  label?: number | 'soft';
  nullClassId?: number;
  softLabelClasses?: number;
  seed: number;
  config: InvMMConfig;
}

let cached: { key: string; model: OwnedInvMMModel } | null = null;
let cachedTest: { key: string; test: ReplicationTest } | null = null;

// Cache keys summarise typed arrays (a module source may carry a training set) by length and hash.
function cacheKey(v: unknown): string {
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

async function modelFor(source: InvMMModelSource): Promise<OwnedInvMMModel> {
  const key = cacheKey(source);
  if (cached?.key !== key) {
    cached?.model.dispose();
    cached = null;
    cached = { key, model: await loadInvMMModelSource(source) };
  }
  return cached.model;
}

async function testFor(spec: ReplicationSpec): Promise<ReplicationTest> {
  const key = cacheKey(spec);
  if (cachedTest?.key !== key) {
    cachedTest?.test.dispose?.();
    cachedTest = null;
    cachedTest = { key, test: await replicationTestFromSpec(spec) };
  }
  return cachedTest.test;
}

/** Inverts one image inside a worker; returns the plain-data record. */
export async function invmmImageTask(arg: InvMMImageTaskArg): Promise<InvMMRecord> {
  const model = await modelFor(arg.source);
  const test = await testFor(arg.replication);
  const image = tf.tensor3d(arg.image, arg.shape, 'float32');
  try {
    return await invertImage(model, image, {
      ...arg.config,
      replication: test,
      seed: arg.seed,
      id: arg.id,
      ...(arg.label !== undefined ? { label: arg.label } : {}),
      ...(arg.nullClassId !== undefined ? { nullClassId: arg.nullClassId } : {}),
      ...(arg.softLabelClasses !== undefined ? { softLabelClasses: arg.softLabelClasses } : {}),
    });
  } finally {
    image.dispose();
  }
}
