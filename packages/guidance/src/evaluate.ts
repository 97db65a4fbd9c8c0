/**
 * The AMG evaluation protocol (Chen, Liu & Xu, CVPR 2024, §6; official `image_sample_guided.py`
 * and `scripts/eval.py`) for any denoiser: N samples per method from the same seeds, scored by
 * - nL2 against the training set (k = 50, α = 0.5, generated-centric): Top5% (5th percentile),
 *   Top1 (minimum), %<1.4 and %<1.6 (Tables 2–3);
 * - optionally a copy-detection embedding: Top5% (95th percentile), Top1 and the fraction above
 *   the threshold (Table 1: SSCD > 0.5);
 * - the Fréchet distance to held-out images (`@diffmem/metrics`; on the embedder's descriptors,
 *   else on 4×4 pixel features — a pixel-space proxy, not FID);
 * - sampling time.
 *
 * Methods: plain sampling (core's pipeline), AMG (any {@link AMGConfig}, incl. the per-term and
 * threshold ablations of Tables 4–5), GNI and the Jain et al. CFG schedules. Each method sees the
 * same x_T and per-step noise for sample i (seed per batch), and class labels cycle i mod K as the
 * official script does. Results print as a table and are written as JSON atomically.
 * @module
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import {
  ConfigError,
  DDIMScheduler,
  DDPMScheduler,
  InputError,
  loadDiffusionPipeline,
  ShapeError,
  loadDatasetFromSpec,
  loadMembership,
  writeFileAtomicSync,
  type DatasetSpec,
  type Denoiser,
  type ImageBatch,
} from '@diffmem/core';
import {
  FeatureStatsAccumulator,
  ReferenceIndex,
  featureStats,
  frechetDistanceFromStats,
  nearestCosine,
  nl2,
  nl2Stats,
  pixelFeatures,
  similarityStats,
  type FeatureStats,
  type Nl2Stats,
  type ReferenceId,
  type SimilarityStats,
} from '@diffmem/metrics';
import { AMGPipeline, type AMGConfig } from './amg_pipeline.js';
import {
  JAIN_OPPOSITE_GUIDANCE,
  JAIN_STATIC_TRANSITION,
  sampleCFGSchedule,
  sampleGNI,
  samplePlain,
  type CFGScheduleSpec,
  type GNIMode,
} from './baselines.js';
import { officialIDDPMConfig, officialSDConfig, paperConfig } from './presets.js';
import { NoisedTrainingNl2Similarity, PixelNl2Similarity, type SimilarityEmbedder, type SimilarityScorer } from './similarity.js';
import { THRESHOLDS } from './thresholds.js';

type AnyScheduler = DDIMScheduler | DDPMScheduler;

/** What an AMG method's config builder receives. */
export interface MethodContext {
  /** The training images (display space) as a reference index, shared by every method. */
  readonly index: ReferenceIndex;
  /** σ = −nL2(x̂0) against `index` (k = min(50, N)), with the training labels when known. */
  readonly pixelSimilarity: PixelNl2Similarity;
  /** A fresh official-iDDPM scorer (x_t vs noised training set); the harness disposes it. */
  noisedSimilarity(): NoisedTrainingNl2Similarity;
  readonly scheduler: AnyScheduler;
  /** True for class-conditional sampling with classifier-free guidance (s0 ≠ 1). */
  readonly cfg: boolean;
  readonly guidanceScale: number;
}

/** One row of the evaluation. */
export type EvaluationMethod =
  | { readonly name: string; readonly kind: 'plain' }
  | { readonly name: string; readonly kind: 'amg'; readonly config: (ctx: MethodContext) => AMGConfig }
  | { readonly name: string; readonly kind: 'gni'; readonly noiseScale?: number; readonly mode?: GNIMode }
  | { readonly name: string; readonly kind: 'cfg-schedule'; readonly schedule: CFGScheduleSpec };

/** Options of {@link defaultEvaluationMethods}. */
export interface DefaultMethodsOptions {
  readonly sampler: 'ddim' | 'ddpm';
  /** Class-conditional model. */
  readonly conditional: boolean;
  /** Classifier-free guidance in use (s0 ≠ 1). */
  readonly cfg: boolean;
  /** G_sim scale of the AMG rows (default 100, the official value). */
  readonly scale?: number;
  /** Include the threshold and per-term ablations (default true). */
  readonly ablations?: boolean;
}

/**
 * Plain sampling, AMG (paper flow, official scaling) and, with `ablations`, Table 5's threshold
 * ablation (always on, constant λ), Table 4's per-term ablation (CFG models), the official iDDPM
 * flow (DDPM) and the official SD flow (CFG); GNI for class-conditional models; the Jain et al.
 * schedules for CFG models.
 */
export function defaultEvaluationMethods(o: DefaultMethodsOptions): EvaluationMethod[] {
  const scale = o.scale ?? 100;
  const ablations = o.ablations ?? true;
  const base = (ctx: MethodContext): AMGConfig => paperConfig(ctx.pixelSimilarity, { cfg: ctx.cfg, scale });
  const out: EvaluationMethod[] = [{ name: 'plain', kind: 'plain' }, { name: 'amg', kind: 'amg', config: base }];
  if (ablations) {
    out.push({
      name: 'amg:always-on',
      kind: 'amg',
      config: (ctx) => {
        const c = base(ctx);
        return { ...c, threshold: THRESHOLDS.always(c.threshold) };
      },
    });
    // Table 5's "constant λ": the schedule's final value λ_0 (nL2 < 1.5).
    out.push({ name: 'amg:constant-threshold', kind: 'amg', config: (ctx) => ({ ...base(ctx), threshold: THRESHOLDS.constant(-1.5) }) });
    if (o.cfg) {
      const only = (sim: boolean, spe: boolean, dup: boolean) => (ctx: MethodContext): AMGConfig => {
        const c = base(ctx);
        return { ...c, sim: sim ? c.sim : null, spe: spe ? c.spe : null, dup: dup ? c.dup : null };
      };
      out.push(
        { name: 'amg:sim', kind: 'amg', config: only(true, false, false) },
        { name: 'amg:spe', kind: 'amg', config: only(false, true, false) },
        { name: 'amg:dup', kind: 'amg', config: only(false, false, true) },
        { name: 'amg:sim+spe', kind: 'amg', config: only(true, true, false) },
        { name: 'amg:sim+dup', kind: 'amg', config: only(true, false, true) },
        { name: 'amg:spe+dup', kind: 'amg', config: only(false, true, true) },
        { name: 'amg:official-sd-flow', kind: 'amg', config: (ctx) => officialSDConfig(ctx.pixelSimilarity, { cfg: true, scale }) },
      );
    }
    if (o.sampler === 'ddpm') out.push({ name: 'amg:official-iddpm', kind: 'amg', config: (ctx) => officialIDDPMConfig(ctx.noisedSimilarity()) });
  }
  if (o.conditional) out.push({ name: 'gni', kind: 'gni', noiseScale: 0.1 });
  if (o.cfg) {
    out.push({ name: 'jain:static-transition', kind: 'cfg-schedule', schedule: JAIN_STATIC_TRANSITION });
    out.push({ name: 'jain:opposite-guidance', kind: 'cfg-schedule', schedule: JAIN_OPPOSITE_GUIDANCE });
  }
  return out;
}

/** The training set the samples must not copy. */
export interface EvaluationTrainingSet {
  /** Display-space images [N,H,W,C] in [0, 1] (not disposed). */
  readonly images: tf.Tensor4D;
  /** Class label per image (enables G_dup and GNI's label space). */
  readonly labels?: ArrayLike<number>;
  /** Ids reported for the nearest neighbours. */
  readonly ids?: readonly ReferenceId[];
}

/** Options of {@link evaluateAMG}. */
export interface EvaluateAMGOptions {
  readonly denoiser: Denoiser;
  readonly scheduler: AnyScheduler;
  readonly training: EvaluationTrainingSet;
  /** Held-out display images for the Fréchet distance (omit to skip it). */
  readonly heldOut?: tf.Tensor4D;
  /** N, samples per method. */
  readonly numSamples: number;
  /** Samples per sampling call (default min(N, 16)). */
  readonly batchSize?: number;
  readonly numInferenceSteps: number;
  /** DDIM η (default 0). */
  readonly eta?: number;
  /** Base seed: batch b uses seed + b for every method (default 0). */
  readonly seed?: number;
  /** CFG scale s0 for class-conditional models (default 1). */
  readonly guidanceScale?: number;
  /** The null class id (required for CFG; also excluded from the default label cycle). */
  readonly nullClassId?: number;
  /** Class of sample i (default i mod K, K = number of non-null classes, as the official script). */
  readonly classLabel?: (i: number) => number;
  /** Methods (default {@link defaultEvaluationMethods}). */
  readonly methods?: readonly EvaluationMethod[];
  /** G_sim scale of the default AMG rows (default 100). */
  readonly scale?: number;
  /** Include the threshold / per-term / official-flow ablations in the default methods (default true). */
  readonly ablations?: boolean;
  /** nL2 neighbourhood (default k = 50 capped at the training size, α = 0.5). */
  readonly nl2?: { readonly k?: number; readonly alpha?: number };
  /** A copy-detection embedder for the embedding columns and the Fréchet features. */
  readonly embedder?: SimilarityEmbedder;
  /** Memorized when the embedding cosine exceeds this (default 0.5, the SSCD convention). */
  readonly embeddingThreshold?: number;
  /** Seed of the official-iDDPM similarity's q_sample noise (default 1234). */
  readonly similaritySeed?: number;
  /** Write the report here as JSON (atomically). */
  readonly outFile?: string;
  /** Progress lines. */
  readonly log?: (line: string) => void;
}

/** One method's scores. */
export interface MethodResult {
  readonly name: string;
  readonly kind: EvaluationMethod['kind'];
  readonly numSamples: number;
  /** nL2 statistics (`amg`: Top5%, Top1, %<1.4, %<1.6 as in AMG Tables 2–3). */
  readonly nl2: Nl2Stats;
  /** Embedding similarity statistics (`amg`: Table 1 columns) and the fraction above `threshold`. */
  readonly embedding: (SimilarityStats & { readonly embedder: string; readonly threshold: number; readonly above: number }) | null;
  readonly frechet: { readonly value: number; readonly features: string; readonly dim: number } | null;
  /** Sampling wall time (ms) and per sample. */
  readonly timeMs: number;
  readonly msPerSample: number;
  /** AMG only: fraction of (sample, step) pairs where a term fired. */
  readonly guidedFraction: number | null;
  /** Fraction of output pixels at ±1 (clipped): a range/garbage check. */
  readonly saturatedFraction: number;
  /** Per-sample nL2, nearest training id. */
  readonly samples: { readonly nl2: number[]; readonly nearestId: ReferenceId[] };
}

/** The JSON report. */
export interface EvaluationReport {
  readonly format: 'diffmem-amg-evaluation';
  readonly version: 1;
  readonly createdAt: string;
  readonly config: Record<string, unknown>;
  readonly results: MethodResult[];
  /** The printed table. */
  readonly table: string;
}

const pct = (v: number): string => (Number.isFinite(v) ? (100 * v).toFixed(2) : '—');
const num = (v: number, d = 3): string => (Number.isFinite(v) ? v.toFixed(d) : '—');

/** The results as a fixed-width text table (AMG Tables 1–3 columns). */
export function formatEvaluationTable(results: readonly MethodResult[]): string {
  const header = ['method', 'nL2 Top5%↑', 'Top1↑', '%<1.4', '%<1.6', 'emb Top5%↓', 'emb %>thr', 'Fréchet', 'ms/sample', 'guided%', 'sat%'];
  const rows = results.map((r) => [
    r.name,
    num(r.nl2.amg.top5pct),
    num(r.nl2.amg.top1),
    pct(r.nl2.amg.pctBelow14 / 100),
    pct(r.nl2.amg.pctBelow16 / 100),
    r.embedding ? num(r.embedding.amg.top5pct) : '—',
    r.embedding ? pct(r.embedding.above) : '—',
    r.frechet ? num(r.frechet.value, 4) : '—',
    num(r.msPerSample, 1),
    r.guidedFraction === null ? '—' : pct(r.guidedFraction),
    pct(r.saturatedFraction),
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] as string).length)));
  const line = (cells: string[]): string => cells.map((c, i) => (i === 0 ? c.padEnd(widths[i] as number) : c.padStart(widths[i] as number))).join('  ');
  return [line(header), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(line)].join('\n');
}

function checkDisplayImages(t: tf.Tensor4D, name: string): void {
  if (!(t instanceof tf.Tensor) || t.rank !== 4) throw new ShapeError(`${name} must be display images [N,H,W,C]`);
  if (t.shape[0] === 0) throw new InputError('EMPTY_REFERENCE_INDEX', `${name} is empty`);
}

/**
 * Runs every method on N samples with the same seeds and scores them (see the module notes).
 * @throws InputError `EMPTY_REFERENCE_INDEX` for an empty training set; ConfigError for
 *   inconsistent options (e.g. CFG without nullClassId, AMG terms the model cannot use).
 */
export async function evaluateAMG(o: EvaluateAMGOptions): Promise<EvaluationReport> {
  if (!o || !o.denoiser || !o.scheduler) throw new ConfigError('evaluateAMG needs a denoiser and a scheduler');
  checkDisplayImages(o.training?.images, 'training.images');
  const N = o.numSamples;
  if (!Number.isInteger(N) || N < 2) throw new ConfigError(`numSamples must be an integer ≥ 2, got ${N}`);
  const B = o.batchSize ?? Math.min(N, 16);
  if (!Number.isInteger(B) || B < 1) throw new ConfigError(`batchSize must be a positive integer, got ${B}`);
  const info = o.denoiser.info;
  const { images } = o.training;
  if (images.shape[1] !== info.sampleSize || images.shape[2] !== info.sampleSize || images.shape[3] !== info.inChannels) {
    throw new ShapeError(
      `training images [${images.shape.slice(1).join(',')}] do not match the model's samples [${info.sampleSize},${info.sampleSize},${info.inChannels}]`,
    );
  }
  const sampler = o.scheduler instanceof DDIMScheduler ? 'ddim' : o.scheduler instanceof DDPMScheduler ? 'ddpm' : null;
  if (sampler === null) throw new ConfigError('evaluateAMG needs a DDIMScheduler or a DDPMScheduler');
  const conditional = info.numClassEmbeds !== null;
  const s0 = o.guidanceScale ?? 1;
  const cfg = conditional && s0 !== 1;
  if (cfg && o.nullClassId === undefined) throw new ConfigError('classifier-free guidance (guidanceScale ≠ 1) needs nullClassId');
  const numClasses = conditional
    ? (info.numClassEmbeds as number) - (o.nullClassId !== undefined && o.nullClassId === (info.numClassEmbeds as number) - 1 ? 1 : 0)
    : 0;
  const labelOf = (i: number): number => {
    if (o.classLabel) return o.classLabel(i);
    let c = i % numClasses;
    if (o.nullClassId !== undefined && c >= o.nullClassId) c += 1; // never sample the null class
    return c;
  };
  const log = o.log ?? (() => {});
  const methods =
    o.methods ??
    defaultEvaluationMethods({
      sampler,
      conditional,
      cfg,
      ...(o.scale !== undefined ? { scale: o.scale } : {}),
      ...(o.ablations !== undefined ? { ablations: o.ablations } : {}),
    });
  const names = new Set<string>();
  for (const m of methods) {
    if (names.has(m.name)) throw new ConfigError(`duplicate method name ${m.name}`);
    names.add(m.name);
  }
  const seed = o.seed ?? 0;
  const k = Math.min(o.nl2?.k ?? 50, images.shape[0]);
  const alpha = o.nl2?.alpha ?? 0.5;
  const embThreshold = o.embeddingThreshold ?? 0.5;

  const index = ReferenceIndex.fromImages(images, o.training.ids ? { ids: o.training.ids } : {});
  const trainModel = tf.tidy(() => tf.sub(tf.mul(images, 2), 1)) as tf.Tensor4D;
  const pixelSimilarity = new PixelNl2Similarity(index, { k, alpha, ...(o.training.labels ? { labels: o.training.labels } : {}) });
  let embIndex: ReferenceIndex | null = null;
  let heldStats: FeatureStats | null = null;
  const results: MethodResult[] = [];
  try {
    if (o.embedder) {
      const e = tf.tidy(() => o.embedder?.embed(images) as tf.Tensor2D);
      try {
        embIndex = ReferenceIndex.fromFeatures(e, o.training.ids ? { ids: o.training.ids } : {});
      } finally {
        e.dispose();
      }
    }
    // Fréchet features: the embedder's descriptors, else metrics' pixel features at 4×4 (48-d,
    // small enough for few-sample covariances).
    const featureFn = o.embedder ? (x: tf.Tensor4D) => (o.embedder as SimilarityEmbedder).embed(x) : pixelFeatures(4);
    const features = (display: tf.Tensor4D): tf.Tensor2D => tf.tidy(() => featureFn(display));
    if (o.heldOut) {
      checkDisplayImages(o.heldOut, 'heldOut');
      const f = features(o.heldOut);
      try {
        heldStats = featureStats(f);
      } finally {
        f.dispose();
      }
    }

    for (const method of methods) {
      log(`[evaluate] ${method.name}: ${N} samples`);
      const nl2Values: number[] = [];
      const nearestIds: ReferenceId[] = [];
      const embSims: number[] = [];
      const featAcc = heldStats ? new FeatureStatsAccumulator() : null;
      let timeMs = 0;
      let guidedSteps = 0;
      let totalSteps = 0;
      let saturated = 0;
      let pixels = 0;
      const scorers: SimilarityScorer[] = [];
      const ctx: MethodContext = {
        index,
        pixelSimilarity,
        noisedSimilarity: () => {
          const s = new NoisedTrainingNl2Similarity(trainModel, {
            alphasCumprod: o.scheduler.alphasCumprod,
            generator: o.similaritySeed ?? 1234,
            k,
            alpha,
            ...(o.training.ids ? { ids: o.training.ids } : {}),
            ...(o.training.labels ? { labels: o.training.labels } : {}),
          });
          scorers.push(s);
          return s;
        },
        scheduler: o.scheduler,
        cfg,
        guidanceScale: s0,
      };
      try {
        const amgConfig = method.kind === 'amg' ? method.config(ctx) : null;
        for (let b = 0, start = 0; start < N; b++, start += B) {
          const n = Math.min(B, N - start);
          const labels = conditional ? Array.from({ length: n }, (_, j) => labelOf(start + j)) : undefined;
          const common = {
            batchSize: n,
            numInferenceSteps: o.numInferenceSteps,
            generator: seed + b,
            ...(sampler === 'ddim' && o.eta !== undefined ? { eta: o.eta } : {}),
          };
          const cond = {
            ...(labels ? { classLabels: labels } : {}),
            ...(cfg ? { guidanceScale: s0, nullClassId: o.nullClassId as number } : {}),
          };
          const t0 = performance.now();
          let out: ImageBatch<'model'>;
          switch (method.kind) {
            case 'plain':
              out = await samplePlain(o.denoiser, o.scheduler, { ...common, ...cond });
              break;
            case 'amg': {
              const r = await new AMGPipeline(o.denoiser, o.scheduler).generate({ ...common, ...cond, amg: amgConfig as AMGConfig });
              guidedSteps += r.guidedSteps.reduce((a, v) => a + v, 0);
              totalSteps += n * r.log.length;
              out = r.images;
              break;
            }
            case 'gni':
              if (!labels) throw new ConfigError(`${method.name}: GNI needs a class-conditional model`);
              out = await sampleGNI(o.denoiser, o.scheduler, {
                ...common,
                ...cond,
                classLabels: labels,
                noiseScale: method.noiseScale ?? 0.1,
                noiseGenerator: (seed + b + 0x5eed) >>> 0,
                ...(method.mode ? { mode: method.mode } : {}),
              });
              break;
            case 'cfg-schedule':
              if (!labels || o.nullClassId === undefined) throw new ConfigError(`${method.name}: CFG schedules need a class-conditional model and nullClassId`);
              out = await sampleCFGSchedule(o.denoiser, o.scheduler, { ...common, classLabels: labels, nullClassId: o.nullClassId, schedule: method.schedule });
              break;
            default:
              throw new ConfigError(`unknown method kind ${JSON.stringify((method as { kind?: unknown }).kind)}`);
          }
          timeMs += performance.now() - t0;
          try {
            const display = tf.tidy(() => tf.mul(tf.add(out, 1), 0.5)) as tf.Tensor4D;
            try {
              const r = nl2(display, index, { k, alpha });
              nl2Values.push(...r.nl2);
              nearestIds.push(...r.nearestId);
              if (o.embedder && embIndex) {
                const e = tf.tidy(() => o.embedder?.embed(display) as tf.Tensor2D);
                try {
                  embSims.push(...nearestCosine(e, embIndex).similarity);
                } finally {
                  e.dispose();
                }
              }
              if (featAcc) {
                const f = features(display);
                try {
                  featAcc.add(f);
                } finally {
                  f.dispose();
                }
              }
              const sat = tf.tidy(() => tf.sum(tf.cast(tf.greaterEqual(tf.abs(out), 0.999), 'float32')).dataSync()[0] as number);
              saturated += sat;
              pixels += out.size;
            } finally {
              display.dispose();
            }
          } finally {
            out.dispose();
          }
        }
      } finally {
        for (const s of scorers) s.dispose();
      }
      let frechet: MethodResult['frechet'] = null;
      if (heldStats && featAcc) {
        const st = featAcc.finish();
        frechet = { value: frechetDistanceFromStats(st, heldStats), features: o.embedder ? `embedder:${o.embedder.name}` : 'pixels-4x4', dim: st.dim };
      }
      let embedding: MethodResult['embedding'] = null;
      if (o.embedder) {
        const st = similarityStats(embSims, [embThreshold]);
        embedding = { ...st, embedder: o.embedder.name, threshold: embThreshold, above: st.fractionAbove[String(embThreshold)] as number };
      }
      const result: MethodResult = {
        name: method.name,
        kind: method.kind,
        numSamples: N,
        nl2: nl2Stats(nl2Values),
        embedding,
        frechet,
        timeMs,
        msPerSample: timeMs / N,
        guidedFraction: method.kind === 'amg' && totalSteps > 0 ? guidedSteps / totalSteps : null,
        saturatedFraction: pixels > 0 ? saturated / pixels : 0,
        samples: { nl2: nl2Values, nearestId: nearestIds },
      };
      results.push(result);
      log(`[evaluate] ${method.name}: %<1.4 = ${num(result.nl2.amg.pctBelow14, 2)}, ${num(result.msPerSample, 1)} ms/sample`);
    }
  } finally {
    pixelSimilarity.dispose();
    index.dispose();
    embIndex?.dispose();
    trainModel.dispose();
  }
  const table = formatEvaluationTable(results);
  const report: EvaluationReport = {
    format: 'diffmem-amg-evaluation',
    version: 1,
    createdAt: new Date().toISOString(),
    config: {
      sampler,
      numSamples: N,
      batchSize: B,
      numInferenceSteps: o.numInferenceSteps,
      eta: o.eta ?? 0,
      seed,
      guidanceScale: s0,
      nullClassId: o.nullClassId ?? null,
      trainingSize: images.shape[0],
      heldOutSize: o.heldOut?.shape[0] ?? 0,
      nl2: { k, alpha, variant: 'generated-centric' },
      embedder: o.embedder?.name ?? null,
      embeddingThreshold: o.embedder ? embThreshold : null,
      scale: o.scale ?? 100,
      methods: methods.map((m) => ({ name: m.name, kind: m.kind })),
    },
    results,
    table,
  };
  if (o.outFile) writeFileAtomicSync(o.outFile, `${JSON.stringify(report, null, 1)}\n`);
  return report;
}

/** Options of {@link evaluateModelFolder}. */
export interface EvaluateModelFolderOptions
  extends Omit<EvaluateAMGOptions, 'denoiser' | 'scheduler' | 'training' | 'heldOut' | 'nullClassId' | 'classLabel'> {
  /** A diffmem/diffusers pipeline folder (`unet/`, `scheduler/`, `membership.json`), or a training output folder (its `latest` checkpoint). */
  readonly modelDir: string;
  /** Default `<model>/membership.json`. */
  readonly membershipFile?: string;
  /** Where the training images come from (default: `<model>/diffmem.json`'s dataset). */
  readonly dataset?: DatasetSpec;
  /** `'ddim'` (default) or `'ddpm'`; the scheduler config is read from the folder. */
  readonly sampler?: 'ddim' | 'ddpm';
  /**
   * diffusers scheduler-config fields that override the folder's (e.g. `{ clip_sample: false }`:
   * clipping x̂0 at every step with an unclipped ε, as diffusers does, breaks the copies a
   * memorizing model makes under classifier-free guidance — measure both).
   */
  readonly schedulerConfig?: Readonly<Record<string, unknown>>;
  /** Override the null class id recorded in `diffmem.json`. */
  readonly nullClassId?: number;
  /**
   * Loads the denoiser from the resolved folder (default: core's `loadUNet2DFromFolder`, looked
   * up at run time). The harness disposes it.
   */
  readonly loadModel?: (dir: string) => Promise<LoadedModel>;
}

/** A loaded model the harness can dispose. */
export interface LoadedModel extends Denoiser {
  dispose(): void;
}

/**
 * {@link evaluateAMG} on a trained model folder: loads the UNet (core's `loadUNet2DFromFolder`),
 * its scheduler config, `membership.json` (core's `loadMembership`) and the dataset it points
 * to; the training set is every image with copies > 0 (each once), the held-out group feeds the
 * Fréchet distance.
 */
export async function evaluateModelFolder(o: EvaluateModelFolderOptions): Promise<EvaluationReport> {
  if (!o?.modelDir || !fs.existsSync(o.modelDir)) throw new InputError('MODEL_NOT_FOUND', `model folder ${String(o?.modelDir)} does not exist`, { dir: o?.modelDir });
  // core resolves training outputs (newest checkpoint), pipeline folders and bare UNet folders.
  const pipe = await loadDiffusionPipeline(o.modelDir);
  let unet: LoadedModel = pipe.unet;
  if (o.loadModel) {
    pipe.unet.dispose();
    unet = await o.loadModel(pipe.dir);
  }
  const sampler = o.sampler ?? 'ddim';
  const schedulerJson = { ...pipe.scheduler.toConfig(), ...(o.schedulerConfig ?? {}) };
  const scheduler = sampler === 'ddim' ? DDIMScheduler.fromConfig(schedulerJson) : o.schedulerConfig ? DDPMScheduler.fromConfig(schedulerJson) : pipe.scheduler;
  const membershipFile = o.membershipFile ?? path.join(pipe.dir, 'membership.json');
  if (!o.membershipFile && !pipe.membership) {
    unet.dispose();
    throw new InputError('MEMBERSHIP_NOT_FOUND', `no membership file at ${membershipFile}: AMG needs to know the training set`, { file: membershipFile });
  }
  const membership = o.membershipFile ? loadMembership(o.membershipFile) : (pipe.membership as NonNullable<typeof pipe.membership>);
  const spec = o.dataset ?? pipe.dataset;
  if (!spec) {
    unet.dispose();
    throw new ConfigError(`${pipe.dir} has no diffmem.json dataset spec: pass dataset (where the training images come from)`);
  }
  const nullClassId = o.nullClassId ?? pipe.nullClassId ?? undefined;
  const ds = loadDatasetFromSpec(spec);
  try {
    const train = membership.entries.filter((e) => e.copies > 0);
    const held = membership.entries.filter((e) => e.group === 'held-out');
    if (train.length === 0) throw new InputError('EMPTY_REFERENCE_INDEX', `${membershipFile} lists no training images`);
    for (const e of membership.entries) {
      if (e.index >= ds.records.length) throw new InputError('MEMBERSHIP_INVALID', `membership index ${e.index} is outside the dataset ${ds.name} (${ds.records.length} images)`);
    }
    const pick = (idx: number[]): tf.Tensor4D => tf.tidy(() => tf.gather(ds.images, tf.tensor1d(idx, 'int32')) as tf.Tensor4D);
    const trainImages = pick(train.map((e) => e.index));
    const heldImages = held.length >= 2 ? pick(held.map((e) => e.index)) : null;
    try {
      const labels = train.every((e) => e.label !== null) ? train.map((e) => e.label as number) : undefined;
      const { modelDir: _dir, membershipFile: _m, dataset: _d, sampler: _s, nullClassId: _n, loadModel: _l, schedulerConfig: _c, ...rest } = o;
      return await evaluateAMG({
        ...rest,
        denoiser: unet,
        scheduler,
        training: { images: trainImages, ids: train.map((e) => e.id), ...(labels ? { labels } : {}) },
        ...(heldImages ? { heldOut: heldImages } : {}),
        ...(nullClassId !== undefined && nullClassId !== null ? { nullClassId } : {}),
      });
    } finally {
      trainImages.dispose();
      heldImages?.dispose();
    }
  } finally {
    ds.images.dispose();
    unet.dispose();
  }
}
