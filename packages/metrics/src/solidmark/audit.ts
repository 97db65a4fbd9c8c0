/**
 * `auditSolidMark`: the SolidMark evaluation of a model trained on marked images (reference B.3):
 * for every keymap image, outpaint the key region given the image (RePaint replacement, the true
 * label for class-conditional models), read k̂, score ℓ_SM against the image's key(s), and
 * aggregate eidetic counts next to the analytic, shuffled-key and random-init nulls.
 *
 * Resumable: with `outDir`, a manifest fixes the settings and one JSON result per image and model
 * is written atomically as soon as its batch finishes; a rerun (after a crash, SIGINT or abort)
 * skips every image already on disk. Every image draws its noise from its own seeded stream
 * (seed, entry, repeat), so results do not depend on batching or on which images were resumed,
 * and the random-init model sees exactly the same noise as the trained one.
 * @module
 */
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import {
  ConfigError,
  DiffmemError,
  Generator,
  InputError,
  ShapeError,
  asImageBatch,
  toDisplayRange,
  toModelRange,
  writeFileAtomicSync,
  type Denoiser,
  type ImageBatch,
  type ImageRecord,
  type Membership,
  type MembershipGroup,
} from '@diffmem/core';
import { UnmarkedModelError } from './errors.js';
import { parseSolidMarkKeymap, type SolidMarkKeymap, type SolidMarkKeymapEntry } from './keymap.js';
import { checkKeymapAgainstMembership, resolveKeymapImages } from './marked_dataset.js';
import { applyMark, markMask, markedCanvasSize, markSpecToJSON } from './marks.js';
import { SOLIDMARK_DEFAULT_SAMPLING_STEPS, outpaintRePaint, type RePaintScheduler } from './outpaint.js';
import { predictKeys, type PredictedKeys } from './score.js';
import { scoreSolidMarkImage, summarizeSolidMark, type SolidMarkImageResult, type SolidMarkSummary, type SummaryOptions } from './summary.js';

/** `format` of the audit manifest. */
export const SOLIDMARK_AUDIT_FORMAT = 'diffmem-solidmark-audit';

/** Which model a result belongs to. */
export type SolidMarkRole = 'model' | 'random-init';

/** Progress report, emitted after every batch. */
export interface SolidMarkAuditProgress {
  role: SolidMarkRole;
  /** Images of this role finished (including those reused from disk). */
  done: number;
  total: number;
  /** Images of this role reused from a previous run. */
  reused: number;
  /** Ids finished in this batch. */
  ids: string[];
  /** Mean seconds per image in this batch. */
  secondsPerImage: number;
}

/** Options of {@link auditSolidMark}. */
export interface SolidMarkAuditOptions {
  /** The model trained on marked images. */
  denoiser: Denoiser;
  /**
   * A randomly initialised model of the same configuration (the official `--random-initialization`
   * null), run exactly like `denoiser`. Strongly recommended.
   */
  nullDenoiser?: Denoiser;
  /** `DDPMScheduler` (ancestral) or `DDIMScheduler` of the model's noise schedule. */
  scheduler: RePaintScheduler;
  /** Reverse steps (default 250, the official `--sampling-steps`). */
  numInferenceSteps?: number;
  /** DDIM η (DDIM only; default 0). */
  eta?: number;
  /** RePaint resampling per step (default 1 = none, as the official code). */
  resample?: number;
  /** The unmarked images of the keymap, found by record id (an `ImageDataset` fits). Not disposed. */
  dataset: { readonly images: ImageBatch<'display'>; readonly records: readonly ImageRecord[] };
  /** The keymap stored with the checkpoint. Missing → {@link UnmarkedModelError}. */
  keymap: SolidMarkKeymap | null | undefined;
  /** The training membership, checked against the keymap when given. */
  membership?: Membership;
  /** Keymap entry indices to audit (default: all, held-out control keys included). */
  entries?: readonly number[];
  /** Only these membership groups. */
  groups?: readonly MembershipGroup[];
  /** At most this many images (after the filters, in keymap order). */
  limit?: number;
  /** Outpaintings per image (the duplication study used 10). Default 1. */
  repeats?: number;
  /** Outpaintings per denoiser call (default 8). */
  batchSize?: number;
  /** Seed of every image's noise stream. Default 0. */
  seed?: number;
  /** Folder for the manifest and per-image results (resumable). Without it nothing is written. */
  outDir?: string;
  /** Identifies the trained model in the manifest (a rerun with another id is refused). */
  modelId?: string;
  /** Identifies the random-init model in the manifest. */
  nullModelId?: string;
  /** Aggregation options (δ grid, permutations, border-std threshold). */
  summary?: SummaryOptions;
  onProgress?: (p: SolidMarkAuditProgress) => void;
  /** Stops after the current step: finished images are kept, the report says `interrupted`. */
  signal?: AbortSignal;
}

/** What {@link auditSolidMark} returns. */
export interface SolidMarkAuditReport {
  /** Every selected image scored by every model. */
  complete: boolean;
  /** Stopped by the signal. */
  interrupted: boolean;
  /** Results of the trained model (keymap order), finished images only. */
  results: SolidMarkImageResult[];
  /** Results of the random-init model, or null when none was given. */
  nullResults: SolidMarkImageResult[] | null;
  summary: SolidMarkSummary;
  /** Images (per model) computed in this run / reused from `outDir`. */
  computed: number;
  reused: number;
  outDir: string | null;
}

interface Manifest {
  format: typeof SOLIDMARK_AUDIT_FORMAT;
  version: 1;
  settings: Record<string, unknown>;
  nullModelId: string | null;
  createdAt: string;
}

/** A 32-bit mix of (seed, entry, repeat) for per-image streams (splitmix-style finaliser). */
function streamSeed(seed: number, entry: number, repeat: number): number {
  let h = (Math.floor(seed) ^ 0x9e3779b9) >>> 0;
  for (const v of [entry, repeat]) {
    h = Math.imul(h ^ (v >>> 0), 0x85ebca6b) >>> 0;
    h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35) >>> 0;
    h = (h ^ (h >>> 16)) >>> 0;
  }
  return h;
}

function resultFile(dir: string, role: SolidMarkRole, entry: number): string {
  return path.join(dir, role, `entry-${String(entry).padStart(6, '0')}.json`);
}

function readResult(file: string, e: SolidMarkKeymapEntry, repeats: number): SolidMarkImageResult | null {
  if (!fs.existsSync(file)) return null;
  try {
    const r = JSON.parse(fs.readFileSync(file, 'utf8')) as SolidMarkImageResult;
    // Files are written atomically; anything else (hand-edited, foreign) is recomputed.
    if (r.id !== e.id || r.predictedKeys?.length !== repeats || JSON.stringify(r.keys) !== JSON.stringify(e.keys)) return null;
    return r;
  } catch {
    return null;
  }
}

function checkPositiveInt(v: number, name: string): number {
  if (!Number.isInteger(v) || v < 1) throw new ConfigError(`${name} must be a positive integer, got ${v}`);
  return v;
}

function sameInfo(a: Denoiser, b: Denoiser): boolean {
  const x = a.info;
  const y = b.info;
  return x.sampleSize === y.sampleSize && x.inChannels === y.inChannels && x.outChannels === y.outChannels && x.numClassEmbeds === y.numClassEmbeds;
}

/** Throws {@link UnmarkedModelError} / shape errors when the model cannot be scored with this keymap. */
export function checkMarkedModel(denoiser: Denoiser, keymap: SolidMarkKeymap | null | undefined): SolidMarkKeymap {
  if (keymap === null || keymap === undefined) {
    throw new UnmarkedModelError(
      'SOLIDMARK_NO_KEYMAP',
      'no SolidMark keymap: the model was not trained with SolidMark keys (or its keymap was lost). ℓ_SM is meaningless ' +
        'for such a model — its border is unrelated to any key, so every count sits at chance by construction. Train with ' +
        'makeMarkedTrainingSet and keep its solidmark_keymap.json next to the checkpoint.',
    );
  }
  const km = parseSolidMarkKeymap(keymap);
  if (!km.entries.some((e) => e.copies > 0)) {
    throw new UnmarkedModelError(
      'SOLIDMARK_NO_TRAINED_KEYS',
      'the keymap has no trained image (every entry has 0 copies): no key was ever injected, so ℓ_SM is meaningless',
    );
  }
  const canvas = markedCanvasSize(km.mark, km.imageSize);
  const { sampleSize, inChannels } = denoiser.info;
  if (sampleSize !== canvas) {
    if (sampleSize === km.imageSize && canvas !== km.imageSize) {
      throw new UnmarkedModelError(
        'SOLIDMARK_UNMARKED_MODEL',
        `the model takes ${sampleSize}px samples, the size of the unmarked images: it was trained without the ` +
          `${JSON.stringify(km.mark)} mark (marked canvases are ${canvas}px), so ℓ_SM is meaningless for it`,
        { sampleSize, canvas },
      );
    }
    throw new ShapeError(`the model takes ${sampleSize}px samples but the keymap's marked canvases are ${canvas}px`, { sampleSize, canvas });
  }
  if (inChannels !== km.channels) throw new ShapeError(`the model takes ${inChannels} channels but the keymap's images have ${km.channels}`);
  return km;
}

/**
 * Runs the SolidMark audit (module docs). Throws {@link UnmarkedModelError} for a model without
 * keys, `KeymapError` when keymap, dataset and membership disagree, `InputError`
 * (`SOLIDMARK_AUDIT_MISMATCH`) when `outDir` holds an audit made with other settings.
 */
export async function auditSolidMark(o: SolidMarkAuditOptions): Promise<SolidMarkAuditReport> {
  const keymap = checkMarkedModel(o.denoiser, o.keymap);
  if (o.nullDenoiser && !sameInfo(o.denoiser, o.nullDenoiser)) {
    throw new ConfigError('the random-init model must have the trained model\'s configuration (sample size, channels, classes)');
  }
  const images = asImageBatch(o.dataset.images, 'display', { name: 'dataset images' });
  const [, h, , C] = images.shape;
  if (h !== keymap.imageSize || C !== keymap.channels) {
    throw new ShapeError(`the dataset images are ${h}px ×${C} but the keymap was made for ${keymap.imageSize}px ×${keymap.channels}`);
  }
  const where = resolveKeymapImages(keymap, o.dataset.records);
  if (o.membership) checkKeymapAgainstMembership(keymap, o.membership);
  const repeats = checkPositiveInt(o.repeats ?? 1, 'repeats');
  const batchSize = checkPositiveInt(o.batchSize ?? 8, 'batchSize');
  const steps = checkPositiveInt(o.numInferenceSteps ?? SOLIDMARK_DEFAULT_SAMPLING_STEPS, 'numInferenceSteps');
  const seed = o.seed ?? 0;
  if (!Number.isFinite(seed)) throw new ConfigError(`seed must be a finite number, got ${seed}`);

  let selected = o.entries ? [...o.entries] : keymap.entries.map((_, i) => i);
  for (const i of selected) {
    if (!Number.isInteger(i) || i < 0 || i >= keymap.entries.length) throw new ConfigError(`entry ${i} is not in the keymap (${keymap.entries.length} entries)`);
  }
  if (o.groups) selected = selected.filter((i) => o.groups?.includes((keymap.entries[i] as SolidMarkKeymapEntry).group));
  if (o.limit !== undefined) selected = selected.slice(0, checkPositiveInt(o.limit, 'limit'));
  if (selected.length === 0) throw new ConfigError('no keymap entry is selected for the audit');
  const conditional = o.denoiser.info.numClassEmbeds !== null;
  if (conditional) {
    for (const i of selected) {
      if ((keymap.entries[i] as SolidMarkKeymapEntry).label === null) {
        throw new ConfigError(`the model is class-conditional but image ${(keymap.entries[i] as SolidMarkKeymapEntry).id} has no label`);
      }
    }
  }

  // Manifest: the settings that determine every per-image result.
  const outDir = o.outDir ?? null;
  if (outDir) {
    const settings = {
      scheduler: o.scheduler.className,
      schedule: createHash('sha256').update(Buffer.from(o.scheduler.alphasCumprod.buffer, o.scheduler.alphasCumprod.byteOffset, o.scheduler.alphasCumprod.byteLength)).digest('hex').slice(0, 16),
      numInferenceSteps: steps,
      eta: o.eta ?? null,
      resample: o.resample ?? 1,
      repeats,
      seed,
      mark: markSpecToJSON(keymap.mark),
      keymap: createHash('sha256').update(JSON.stringify(keymap.entries)).digest('hex').slice(0, 16),
      model: { ...o.denoiser.info, id: o.modelId ?? null },
    };
    const mfile = path.join(outDir, 'manifest.json');
    let manifest: Manifest | null = null;
    if (fs.existsSync(mfile)) {
      try {
        manifest = JSON.parse(fs.readFileSync(mfile, 'utf8')) as Manifest;
      } catch (err) {
        throw new InputError('SOLIDMARK_AUDIT_CORRUPT', `${mfile} is not valid JSON: ${(err as Error).message}`, { file: mfile });
      }
      if (manifest?.format !== SOLIDMARK_AUDIT_FORMAT || JSON.stringify(manifest.settings) !== JSON.stringify(settings)) {
        throw new InputError(
          'SOLIDMARK_AUDIT_MISMATCH',
          `${outDir} holds an audit made with other settings (${JSON.stringify(manifest?.settings)}); use another outDir or the same settings`,
          { outDir },
        );
      }
      if (o.nullDenoiser && o.nullModelId !== undefined && manifest.nullModelId !== null && manifest.nullModelId !== o.nullModelId) {
        throw new InputError('SOLIDMARK_AUDIT_MISMATCH', `${outDir} holds random-init results of model ${manifest.nullModelId}, not ${o.nullModelId}`, { outDir });
      }
    }
    if (!manifest || (o.nullModelId !== undefined && manifest.nullModelId === null)) {
      manifest = {
        format: SOLIDMARK_AUDIT_FORMAT,
        version: 1,
        settings,
        nullModelId: o.nullModelId ?? manifest?.nullModelId ?? null,
        createdAt: manifest?.createdAt ?? new Date().toISOString(),
      };
      writeFileAtomicSync(mfile, JSON.stringify(manifest, null, 1));
    }
  }

  const roles: Array<{ role: SolidMarkRole; denoiser: Denoiser }> = [{ role: 'model', denoiser: o.denoiser }];
  if (o.nullDenoiser) roles.push({ role: 'random-init', denoiser: o.nullDenoiser });
  const done = new Map<SolidMarkRole, Map<number, SolidMarkImageResult>>(roles.map((r) => [r.role, new Map()]));
  let reused = 0;
  let computed = 0;
  if (outDir) {
    for (const { role } of roles) {
      for (const i of selected) {
        const r = readResult(resultFile(outDir, role, i), keymap.entries[i] as SolidMarkKeymapEntry, repeats);
        if (r) {
          done.get(role)?.set(i, r);
          reused++;
        }
      }
    }
  }

  const S = markedCanvasSize(keymap.mark, keymap.imageSize);
  const mask = markMask(keymap.mark, S, C);
  const perBatch = Math.max(1, Math.floor(batchSize / repeats));
  let interrupted = false;
  try {
    for (const { role, denoiser } of roles) {
      const finished = done.get(role) as Map<number, SolidMarkImageResult>;
      const reusedHere = finished.size;
      const pending = selected.filter((i) => !finished.has(i));
      for (let b = 0; b < pending.length && !interrupted; b += perBatch) {
        if (o.signal?.aborted) {
          interrupted = true;
          break;
        }
        const chunk = pending.slice(b, b + perBatch);
        const ents = chunk.map((i) => keymap.entries[i] as SolidMarkKeymapEntry);
        const t0 = performance.now();
        // Canvas rows: every entry `repeats` times. The mark region is painted 0 — the true key
        // never enters the input; the outpainting overwrites the region anyway.
        const rowIdx = chunk.flatMap((i) => new Array<number>(repeats).fill(where[i] as number));
        const known = tf.tidy(() => {
          const picked = tf.gather(images, tf.tensor1d(rowIdx, 'int32')) as ImageBatch<'display'>;
          return toModelRange(applyMark(picked, new Array<number>(rowIdx.length).fill(0), keymap.mark));
        });
        let predicted: PredictedKeys | null = null;
        try {
          const generators = chunk.flatMap((i) => Array.from({ length: repeats }, (_, r) => new Generator(streamSeed(seed, i, r))));
          const out = await outpaintRePaint(denoiser, known, mask, {
            scheduler: o.scheduler,
            numInferenceSteps: steps,
            ...(o.eta !== undefined ? { eta: o.eta } : {}),
            ...(o.resample !== undefined ? { resample: o.resample } : {}),
            ...(conditional ? { classLabels: ents.flatMap((e) => new Array<number>(repeats).fill(e.label as number)) } : {}),
            generator: generators,
            ...(o.signal ? { signal: o.signal } : {}),
          });
          try {
            const display = toDisplayRange(out);
            try {
              predicted = predictKeys(display, mask);
            } finally {
              display.dispose();
            }
          } finally {
            out.dispose();
          }
        } catch (err) {
          if (err instanceof DiffmemError && err.code === 'ABORTED') {
            interrupted = true;
            break;
          }
          throw err;
        } finally {
          known.dispose();
        }
        if (!predicted) break;
        const got: PredictedKeys = predicted;
        const seconds = (performance.now() - t0) / 1000 / chunk.length;
        chunk.forEach((i, j) => {
          const e = ents[j] as SolidMarkKeymapEntry;
          const rows = [j * repeats, (j + 1) * repeats] as const;
          const result = scoreSolidMarkImage(
            { entry: i, index: e.index, id: e.id, label: e.label, group: e.group, copies: e.copies, keys: e.keys },
            got.keys.slice(...rows),
            got.borderStd.slice(...rows),
            seconds,
          );
          if (outDir) writeFileAtomicSync(resultFile(outDir, role, i), JSON.stringify({ role, ...result }, null, 1));
          finished.set(i, result);
          computed++;
        });
        o.onProgress?.({
          role,
          done: finished.size,
          total: selected.length,
          reused: reusedHere,
          ids: ents.map((e) => e.id),
          secondsPerImage: seconds,
        });
      }
      if (interrupted) break;
    }
  } finally {
    mask.dispose();
  }

  const ordered = (role: SolidMarkRole): SolidMarkImageResult[] => {
    const m = done.get(role) as Map<number, SolidMarkImageResult>;
    return selected.filter((i) => m.has(i)).map((i) => m.get(i) as SolidMarkImageResult);
  };
  const results = ordered('model');
  // Compare the two models on the images both finished.
  const nullAll = o.nullDenoiser ? ordered('random-init') : null;
  const nullIds = new Set(nullAll?.map((r) => r.id));
  const common = nullAll ? results.filter((r) => nullIds.has(r.id)) : results;
  const complete = !interrupted && results.length === selected.length && (!nullAll || nullAll.length === selected.length);
  const summary = summarizeSolidMark(nullAll ? common : results, nullAll, o.summary);
  if (nullAll && common.length < results.length) {
    summary.warnings.push(`the random-init model finished ${common.length} of ${results.length} images: the summary covers those only`);
  }
  if (!complete) summary.warnings.push(`incomplete audit: ${results.length} of ${selected.length} images scored; rerun with the same outDir to finish`);
  if (outDir && complete) writeFileAtomicSync(path.join(outDir, 'summary.json'), JSON.stringify(summary, null, 1));
  return { complete, interrupted, results, nullResults: nullAll, summary, computed, reused, outDir };
}
