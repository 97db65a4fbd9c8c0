/**
 * The worker-thread task of a parallel InvMM audit: one image per task. Compiled to
 * `dist/invmm/worker_task.js` and run by core's `WorkerPool`; the model and the replication test
 * are built once per worker from their serialisable descriptions and reused across tasks.
 * @module
 */
import * as tf from '@tensorflow/tfjs-core';
import { invertImage, type InvMMRecord } from './invert.js';
import type { InvMMModelSource } from './model.js';
import type { InvMMConfig } from './presets.js';
import type { ReplicationSpec } from './replication.js';
import { cachedInvMMModel, cachedReplicationTest } from './worker_cache.js';

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

/** Inverts one image inside a worker; returns the plain-data record. */
export async function invmmImageTask(arg: InvMMImageTaskArg): Promise<InvMMRecord> {
  const model = await cachedInvMMModel(arg.source);
  const test = await cachedReplicationTest(arg.replication);
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
