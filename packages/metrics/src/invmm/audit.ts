/**
 * `auditInvMM`: InvMM over a dataset — resumable, interruptible, optionally parallel.
 *
 * ```
 * resultsDir/
 *   manifest.json               settings fingerprint, items (id, file, label), counts
 *   records/<id>-<hash>.json    one record per finished image (written atomically)
 * ```
 * Every image draws from its own seed `invmmImageSeed(seed, id)`, so a record does not depend on the
 * order of images, on resumption, or on which worker ran it. A rerun with the same settings skips
 * every image whose record is on disk; a rerun with other settings is refused (ConfigError) unless
 * `overwrite` is set. An abort (signal) or a crash loses at most the images in progress.
 * @module
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import {
  ConfigError,
  ShapeError,
  WorkerPool,
  asImageBatch,
  compiledModuleUrl,
  writeFileAtomicSync,
} from '@diffmem/core';
import { InvMMAbortedError, invertImage, type InvMMCheck, type InvMMRecord } from './invert.js';
import { checkInvMMModel, loadInvMMModelSource, type InvMMModel, type InvMMModelSource } from './model.js';
import { resolveInvMMConfig, type InvMMConfig, type InvMMConfigInput } from './presets.js';
import { invmmImageSeed, readRecordFile, recordFileName, writeRecordFile } from './record_io.js';
import { describeReplication, replicationTestFromSpec, type ReplicationDescriptor, type ReplicationSpec, type ReplicationTest } from './replication.js';
import type { InvMMImageTaskArg } from './worker_task.js';

/** `format` of the audit manifest. */
export const INVMM_AUDIT_FORMAT = 'diffmem-invmm-audit';

/** Progress events of {@link auditInvMM}. */
export type InvMMAuditEvent =
  | { type: 'image'; id: string; index: number; done: number; total: number; resumed: boolean; record: InvMMRecord }
  | { type: 'check'; id: string; index: number; check: InvMMCheck };

/** Options of {@link auditInvMM}. */
export interface AuditInvMMOptions extends InvMMConfigInput {
  /**
   * The model: in memory (sequential audits), or a serialisable source (required with workers;
   * also accepted sequentially, then loaded and disposed here).
   */
  model: InvMMModel | InvMMModelSource;
  /** Target images, display space [0, 1], [N,H,W,C] (not disposed). */
  images: tf.Tensor4D;
  /** One unique id per image (default "0", "1", …). */
  ids?: readonly string[];
  /** Class-conditional models: one class id per image (the given labels). */
  labels?: ReadonlyArray<number | null>;
  /**
   * Class-conditional models: `'given'` (default when labels are passed) uses `labels`;
   * `'soft'` inverts a soft label per image (see `invertImage`).
   */
  classConditioning?: 'given' | 'soft';
  nullClassId?: number;
  softLabelClasses?: number;
  /** The replication test, or its serialisable spec (required with workers). */
  replication: ReplicationTest | ReplicationSpec;
  /** Audit seed; image i uses `invmmImageSeed(seed, ids[i])`. */
  seed: number;
  /** Folder for the manifest and per-image records (resumable); omit to keep results in memory. */
  resultsDir?: string;
  /** Replace results written with other settings (default false: refuse). */
  overwrite?: boolean;
  /** Worker threads (0 or 1 without `pool`: run here, sequentially). */
  workers?: number;
  /** An existing pool to run on (not closed here). */
  pool?: WorkerPool;
  /**
   * How the threads are spent (when `workers` > 1 or `pool` is given):
   * - `'images'` (default, throughput): one image per worker, `workers` images at a time; this
   *   thread only schedules. No synchronisation: the best images/hour for audits of many images.
   * - `'samples'` (latency): one image at a time, each inversion's B step samples and n
   *   verification samples split across S threads — this thread plus `workers − 1` workers (or
   *   plus every worker of `pool`); see `invertImage`'s `parallel`. For a single image, or fewer
   *   images than workers. Needs a serialisable model source; the replication test may be in memory.
   *
   * Both give the same records up to float32 rounding (a failed check's recorded values can be
   * truncated at a different round with `stopAtFirstFailure`), so results resume across modes.
   */
  parallelism?: InvMMParallelism;
  /** A label for the model in the settings fingerprint (e.g. its folder and checkpoint step). */
  modelId?: string;
  onProgress?: (e: InvMMAuditEvent) => void;
  /** Stops the audit: finished images are kept, images in progress are dropped (recomputed on rerun). */
  signal?: AbortSignal;
}

/** How {@link auditInvMM} spends its worker threads: see {@link AuditInvMMOptions.parallelism}. */
export type InvMMParallelism = 'images' | 'samples';

/** What {@link auditInvMM} returns. */
export interface InvMMAuditResult {
  /** Records of every finished image, in input order (all of them unless interrupted). */
  records: InvMMRecord[];
  /** Images inverted in this run. */
  computed: number;
  /** Images whose record was reused from `resultsDir`. */
  resumed: number;
  /** Their ids. */
  resumedIds: string[];
  /** True when `signal` stopped the audit before every image finished. */
  interrupted: boolean;
  seconds: number;
  config: InvMMConfig;
  replication: ReplicationDescriptor;
  resultsDir: string | null;
}

function isSource(m: unknown): m is InvMMModelSource {
  const k = (m as { kind?: unknown })?.kind;
  return k === 'folder' || k === 'module';
}

function isSpec(r: unknown): r is ReplicationSpec {
  return typeof (r as { score?: unknown })?.score !== 'function' && typeof (r as { kind?: unknown })?.kind === 'string' && ['rms', 'nl2', 'copy-descriptor', 'module'].includes((r as { kind: string }).kind);
}

/** The compiled worker task (its `dist/` build under jest; see core's `compiledModuleUrl`). */
export function invmmTaskModuleUrl(): URL {
  return compiledModuleUrl(import.meta.url, './worker_task.js', 'InvMM worker task');
}

interface Manifest {
  format: typeof INVMM_AUDIT_FORMAT;
  version: 1;
  fingerprint: string;
  settings: Record<string, unknown>;
  items: Array<{ id: string; file: string; label: number | 'soft' | null }>;
  counts?: { finished: number; replicated: number; notReplicated: number; nonFinite: number };
  createdBy: string;
}

function readManifest(file: string): Manifest | null {
  if (!fs.existsSync(file)) return null;
  try {
    const m = JSON.parse(fs.readFileSync(file, 'utf8')) as Manifest;
    if (m?.format !== INVMM_AUDIT_FORMAT) throw new Error(`format is ${JSON.stringify(m?.format)}`);
    return m;
  } catch (err) {
    throw new ConfigError(`${file} is not an InvMM audit manifest (${(err as Error).message}); choose another resultsDir`, { file });
  }
}

/**
 * Runs InvMM over `images` (see the module notes). Inputs are validated up front: images must be
 * display-space [0, 1] and finite (ValueRangeError / NonFiniteError), of the model's size
 * (ShapeError), with unique ids; the model and scheduler must agree (ConfigError).
 */
export async function auditInvMM(o: AuditInvMMOptions): Promise<InvMMAuditResult> {
  const t0 = performance.now();
  const { model: _m, images: _i, ids: _d, labels: _l, classConditioning: _cc, nullClassId, softLabelClasses, replication: _r, seed, resultsDir, overwrite, workers, pool: givenPool, parallelism = 'images', modelId, onProgress, signal, ...configInput } = o;
  const config = resolveInvMMConfig(configInput);
  if (typeof seed !== 'number' || !Number.isFinite(seed)) throw new ConfigError('auditInvMM needs a numeric seed');
  asImageBatch(o.images, 'display', { name: 'images', level: 'full' });
  const [n, h, w, c] = o.images.shape;
  const ids = o.ids ? [...o.ids] : Array.from({ length: n }, (_, i) => String(i));
  if (ids.length !== n) throw new ShapeError(`got ${ids.length} ids for ${n} images`);
  if (new Set(ids).size !== n) throw new ConfigError('image ids must be unique');
  if (o.labels && o.labels.length !== n) throw new ShapeError(`got ${o.labels.length} labels for ${n} images`);
  if (parallelism !== 'images' && parallelism !== 'samples') throw new ConfigError(`parallelism must be 'images' or 'samples', got ${String(parallelism)}`);
  const multi = givenPool !== undefined || (workers ?? 0) > 1;
  const parallel = multi && parallelism === 'images';
  const sharded = multi && parallelism === 'samples';
  if (parallel && (!isSource(o.model) || !isSpec(o.replication))) {
    throw new ConfigError('a parallel audit needs a serialisable model source ({kind: "folder" | "module", …}) and replication spec ({kind: "rms" | "nl2" | "copy-descriptor" | "module", …})');
  }
  if (sharded && !isSource(o.model)) {
    throw new ConfigError('parallelism "samples" needs a serialisable model source ({kind: "folder" | "module", …}) for the workers');
  }

  // The model on this thread: for validation (and for the work itself when sequential).
  const owned = isSource(o.model) ? await loadInvMMModelSource(o.model) : null;
  const model: InvMMModel = owned ?? (o.model as InvMMModel);
  let ownedTest: ReplicationTest | null = null;
  try {
    const numClasses = model.denoiser.info.numClassEmbeds;
    const mode = numClasses === null ? 'none' : (o.classConditioning ?? 'given');
    if (mode === 'given' && !o.labels) throw new ConfigError(`the denoiser is class-conditional (${numClasses} class embeddings): pass labels, or classConditioning: 'soft'`);
    if (mode === 'none' && (o.labels?.some((l) => l !== null) || o.classConditioning)) {
      throw new ConfigError('labels / classConditioning were given but the denoiser is unconditional');
    }
    const labelOf = (i: number): number | 'soft' | undefined => {
      if (mode === 'soft') return 'soft';
      if (mode === 'given') {
        const l = o.labels?.[i];
        if (typeof l !== 'number') throw new ConfigError(`image ${ids[i]} has no class label (class-conditional model)`);
        return l;
      }
      return undefined;
    };
    const firstLabel = labelOf(0);
    checkInvMMModel(model, [h, w, c], typeof firstLabel === 'number' ? firstLabel : firstLabel === 'soft' ? 0 : null);

    const test: ReplicationTest = isSpec(o.replication) ? (ownedTest = await replicationTestFromSpec(o.replication)) : o.replication;
    const replication = describeReplication(test);
    const settings = {
      config,
      replication,
      seed,
      classConditioning: mode,
      nullClassId: nullClassId ?? null,
      softLabelClasses: softLabelClasses ?? null,
      noiseSchedule: model.scheduler.toConfig(),
      modelId: modelId ?? null,
    };
    const fingerprint = JSON.stringify(settings);

    // Results folder: manifest + resume.
    const recordsDir = resultsDir ? path.join(resultsDir, 'records') : null;
    const manifestFile = resultsDir ? path.join(resultsDir, 'manifest.json') : null;
    const done = new Map<number, InvMMRecord>();
    let resumed = 0;
    const resumedIds: string[] = [];
    if (resultsDir && manifestFile && recordsDir) {
      const old = readManifest(manifestFile);
      if (old && old.fingerprint !== fingerprint) {
        if (!overwrite) {
          throw new ConfigError(`${resultsDir} holds InvMM results computed with other settings; use another resultsDir or pass overwrite: true`, {
            resultsDir,
          });
        }
        fs.rmSync(recordsDir, { recursive: true, force: true });
      }
      fs.mkdirSync(recordsDir, { recursive: true });
      const items = new Map<string, Manifest['items'][number]>();
      if (old && old.fingerprint === fingerprint) for (const it of old.items) items.set(it.id, it);
      ids.forEach((id, i) => items.set(id, { id, file: path.join('records', recordFileName(id)), label: labelOf(i) ?? null }));
      writeManifest(manifestFile, { format: INVMM_AUDIT_FORMAT, version: 1, fingerprint, settings, items: [...items.values()], createdBy: '@diffmem/metrics' });
      ids.forEach((id, i) => {
        const file = path.join(recordsDir, recordFileName(id));
        if (!fs.existsSync(file)) return;
        try {
          const { record, fingerprint: fp } = readRecordFile(file);
          if (fp === fingerprint && record.id === id) {
            done.set(i, record);
            resumed++;
            resumedIds.push(id);
          }
        } catch {
          // An unreadable record is recomputed (writes are atomic, so this means a manual edit).
        }
      });
    }

    let finished = 0;
    const emitImage = (i: number, record: InvMMRecord, wasResumed: boolean): void => {
      onProgress?.({ type: 'image', id: ids[i] as string, index: i, done: finished, total: n, resumed: wasResumed, record });
    };
    for (const [i, r] of [...done.entries()].sort((a, b) => a[0] - b[0])) {
      finished++;
      emitImage(i, r, true);
    }
    const save = (i: number, record: InvMMRecord): void => {
      done.set(i, record);
      finished++;
      if (recordsDir) writeRecordFile(path.join(recordsDir, recordFileName(ids[i] as string)), record, fingerprint);
      emitImage(i, record, false);
    };
    const todo = ids.map((_, i) => i).filter((i) => !done.has(i));
    let interrupted = false;

    if (!parallel) {
      // 'samples': one pool for the whole audit (workers keep their model between images).
      const samplePool = sharded && todo.length > 0 ? (givenPool ?? new WorkerPool({ size: Math.max(1, (workers ?? 2) - 1) })) : null;
      try {
        for (const i of todo) {
          if (signal?.aborted) {
            interrupted = true;
            break;
          }
          const id = ids[i] as string;
          const image = tf.slice(o.images, [i, 0, 0, 0], [1, -1, -1, -1]);
          try {
            const label = labelOf(i);
            const record = await invertImage(model, image, {
              ...config,
              replication: test,
              seed: invmmImageSeed(seed, id),
              id,
              ...(label !== undefined ? { label } : {}),
              ...(nullClassId !== undefined ? { nullClassId } : {}),
              ...(softLabelClasses !== undefined ? { softLabelClasses } : {}),
              ...(signal ? { signal } : {}),
              ...(samplePool ? { parallel: { source: o.model as InvMMModelSource, pool: samplePool } } : {}),
              onCheck: (check) => onProgress?.({ type: 'check', id, index: i, check }),
            });
            save(i, record);
          } catch (err) {
            if (err instanceof InvMMAbortedError) {
              interrupted = true;
              break;
            }
            throw err;
          } finally {
            image.dispose();
          }
        }
      } finally {
        if (samplePool && samplePool !== givenPool) await samplePool.close();
      }
    } else {
      interrupted = await runParallel(o, todo, ids, labelOf, config, seed, save, givenPool, workers, signal);
    }

    const records = [...done.entries()].sort((a, b) => a[0] - b[0]).map((e) => e[1]);
    if (manifestFile) {
      const m = readManifest(manifestFile) as Manifest;
      m.counts = {
        finished: records.length,
        replicated: records.filter((r) => r.status === 'replicated').length,
        notReplicated: records.filter((r) => r.status === 'not-replicated').length,
        nonFinite: records.filter((r) => r.status === 'non-finite').length,
      };
      writeManifest(manifestFile, m);
    }
    return {
      records,
      computed: records.length - resumed,
      resumed,
      resumedIds,
      interrupted: interrupted || records.length < n,
      seconds: (performance.now() - t0) / 1000,
      config,
      replication,
      resultsDir: resultsDir ?? null,
    };
  } finally {
    ownedTest?.dispose?.();
    owned?.dispose();
  }
}

function writeManifest(file: string, m: Manifest): void {
  writeFileAtomicSync(file, `${JSON.stringify(m, null, 1)}\n`);
}

async function runParallel(
  o: AuditInvMMOptions,
  todo: number[],
  ids: string[],
  labelOf: (i: number) => number | 'soft' | undefined,
  config: InvMMConfig,
  seed: number,
  save: (i: number, r: InvMMRecord) => void,
  givenPool: WorkerPool | undefined,
  workers: number | undefined,
  signal: AbortSignal | undefined,
): Promise<boolean> {
  if (todo.length === 0) return false;
  const module = invmmTaskModuleUrl();
  const pool = givenPool ?? new WorkerPool({ size: Math.min(workers ?? 2, todo.length) });
  const [, h, w, c] = o.images.shape;
  // The pool's workers are unref'd: without a live handle a script awaiting the audit at top level
  // would exit (code 13) while the workers compute.
  const keepAlive = setInterval(() => undefined, 1 << 30);
  let stopped = false;
  let onAbort: (() => void) | null = null;
  const abortPromise = new Promise<'aborted'>((resolve) => {
    if (!signal) return;
    onAbort = () => resolve('aborted');
    if (signal.aborted) resolve('aborted');
    else signal.addEventListener('abort', onAbort, { once: true });
  });
  try {
    const tasks = todo.map(async (i) => {
      const id = ids[i] as string;
      const image = tf.tidy(() => tf.slice(o.images, [i, 0, 0, 0], [1, -1, -1, -1]));
      const data = new Float32Array(image.dataSync());
      image.dispose();
      const label = labelOf(i);
      const arg: InvMMImageTaskArg = {
        source: o.model as InvMMModelSource,
        replication: o.replication as ReplicationSpec,
        id,
        image: data,
        shape: [h, w, c],
        ...(label !== undefined ? { label } : {}),
        ...(o.nullClassId !== undefined ? { nullClassId: o.nullClassId } : {}),
        ...(o.softLabelClasses !== undefined ? { softLabelClasses: o.softLabelClasses } : {}),
        seed: invmmImageSeed(seed, id),
        config,
      };
      if (signal?.aborted) return;
      const record = await pool.run<InvMMRecord, InvMMImageTaskArg>({ module, fn: 'invmmImageTask', arg });
      if (!stopped) save(i, record);
    });
    const all = Promise.all(tasks).then(() => 'done' as const);
    const outcome = await Promise.race([all, abortPromise]);
    if (outcome === 'aborted') {
      // Images in flight are dropped: closing our own pool terminates them; on a caller's pool
      // they finish in the background and their results are discarded.
      all.catch(() => undefined);
      return true;
    }
    return false;
  } finally {
    // Results arriving after this point (a caller's pool keeps running its queue) are dropped.
    stopped = true;
    clearInterval(keepAlive);
    if (signal && onAbort) signal.removeEventListener('abort', onAbort);
    if (!givenPool) await pool.close();
  }
}
