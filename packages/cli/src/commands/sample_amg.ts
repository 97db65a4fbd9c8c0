/**
 * `diffmem sample --amg`: sampling with Anti-Memorization Guidance (Chen, Liu & Xu, CVPR 2024)
 * from a trained model folder. σ_t = −nL2(x̂0) against the exact training set (AMG Eq. 8, pixel
 * level; the training images come from the folder's `membership.json` + `diffmem.json`), the
 * paper's control flow (Eqs. 10–17) with the official time-dependent G_sim scaling
 * (`paperConfig` in `@diffmem/guidance`), λ_t the official iDDPM schedule on nL2, a constant or
 * "always on". G_spe and G_dup need classifier-free guidance (`--guidance-scale` ≠ 1 on a model
 * trained with class dropout); each term can be switched off. Writes the PNG grid and a per-step
 * log (σ_t, λ_t, which terms fired, the matched training image) as JSON.
 * @module
 */
import { InvalidArgumentError } from 'commander';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import {
  ConfigError,
  DDIMScheduler,
  imageGridPng,
  InputError,
  loadDatasetFromSpec,
  loadDiffusionPipeline,
  toDisplayRange,
  writeFileAtomicSync,
} from '@diffmem/core';
import { AMG_NL2_THRESHOLDS, nl2, nl2Stats, ReferenceIndex, type Nl2Stats } from '@diffmem/metrics';
import { AMGPipeline, paperConfig, PixelNl2Similarity, THRESHOLDS, type AMGConfig, type AMGStepLog, type ThresholdSchedule } from '@diffmem/guidance';
import { trainingReferences } from './audit_nl2.js';
import type { SamplingFlags } from './sample.js';
import { ProgressBar } from '../progress.js';

/** `--amg-threshold`: the official schedule, a constant λ (σ units: σ = −nL2) or always on. */
export type AMGThresholdChoice = { kind: 'official' } | { kind: 'constant'; value: number } | { kind: 'always' };

/** Parses `official`, `constant:X` or `always`. */
export function parseAMGThreshold(v: string): AMGThresholdChoice {
  if (v === 'official') return { kind: 'official' };
  if (v === 'always') return { kind: 'always' };
  const m = /^constant:(.+)$/.exec(v);
  if (m) {
    const value = Number(m[1]);
    if (Number.isFinite(value)) return { kind: 'constant', value };
  }
  throw new InvalidArgumentError(`--amg-threshold must be official, constant:X (λ in σ units, σ = −nL2: constant:-1.5 guides when nL2 < 1.5) or always, got "${v}"`);
}

/** Options of {@link runSampleAMG}. */
export interface SampleAMGOptions extends SamplingFlags {
  /** Per-step log JSON (default: next to `out`, `<name>.amg-log.json`). */
  log?: string;
  /** G_sim scale (official 100). */
  amgScale: number;
  amgThreshold: AMGThresholdChoice;
  /** Terms on/off (`--no-gsim`, `--no-gspe`, `--no-gdup`). */
  gsim: boolean;
  gspe: boolean;
  gdup: boolean;
  /** σ_t: only `nl2` (pixel nL2 against the training set). */
  similarity: 'nl2';
  /** nL2 neighbourhood size (capped at the training set size − 1). */
  k: number;
  alpha: number;
}

/** What {@link runSampleAMG} returns. */
export interface SampleAMGResult {
  out: string | null;
  log: string | null;
  n: number;
  seconds: number;
  /** Terms that were active (a term needs CFG for G_spe/G_dup). */
  terms: { sim: boolean; spe: boolean; dup: boolean };
  threshold: ThresholdSchedule;
  scale: number;
  references: number;
  /** Samples guided at ≥ 1 step, and guided steps per sample. */
  guidedSamples: number;
  guidedSteps: number[];
  /** nL2 of the final images against the training set. */
  finalNl2: { stats: Nl2Stats; values: number[]; nearestIds: (string | number)[] };
}

function jsonNumbers(_: string, v: unknown): unknown {
  return typeof v === 'number' && !Number.isFinite(v) ? String(v) : v;
}

/** Samples with AMG, writes the grid and the per-step log, returns a summary. */
export async function runSampleAMG(o: SampleAMGOptions): Promise<SampleAMGResult> {
  const t0 = performance.now();
  if (o.similarity !== 'nl2') throw new ConfigError(`--similarity ${String(o.similarity)} is not available from the CLI (nl2 only)`);
  if (!(o.amgScale > 0)) throw new ConfigError(`--amg-scale must be > 0, got ${o.amgScale}`);
  const pipe = await loadDiffusionPipeline(o.model);
  let index: ReferenceIndex | null = null;
  let sim: PixelNl2Similarity | null = null;
  try {
    if (!pipe.membership || !pipe.dataset) {
      throw new InputError('MEMBERSHIP_NOT_FOUND', `${pipe.dir} has no membership.json / diffmem.json: AMG needs the training images it should not copy`, { dir: pipe.dir });
    }
    const rows = pipe.unet.info.numClassEmbeds;
    const s0 = o.guidanceScale ?? 1;
    const cfg = rows !== null && pipe.nullClassId !== null && s0 !== 1;
    if (o.guidanceScale !== undefined && o.guidanceScale !== 1 && !cfg) {
      throw new ConfigError('--guidance-scale needs a class-conditional model trained with class dropout (a CFG null class)');
    }
    const ds = loadDatasetFromSpec(pipe.dataset);
    let labels: number[] | undefined;
    try {
      const refs = trainingReferences(ds, pipe.membership);
      index = ReferenceIndex.fromImages(refs.images, { ids: refs.ids });
      refs.images.dispose();
      const train = pipe.membership.entries.filter((e) => e.copies > 0);
      if (train.every((e) => e.label !== null)) labels = train.map((e) => e.label as number);
    } finally {
      ds.images.dispose();
    }
    const k = Math.min(o.k, index.size - 1);
    if (k < 1) throw new ConfigError('nL2 needs at least two training images');
    sim = new PixelNl2Similarity(index, { k, alpha: o.alpha, ...(labels ? { labels } : {}) });
    const base = paperConfig(sim, { cfg, scale: o.amgScale });
    const threshold: ThresholdSchedule =
      o.amgThreshold.kind === 'official' ? base.threshold : o.amgThreshold.kind === 'constant' ? THRESHOLDS.constant(o.amgThreshold.value) : THRESHOLDS.always(base.threshold);
    const amg: AMGConfig = {
      ...base,
      threshold,
      sim: o.gsim ? base.sim : null,
      spe: o.gspe ? base.spe : null,
      dup: o.gdup ? base.dup : null,
    };
    if (!amg.sim && !amg.spe && !amg.dup) {
      throw new ConfigError(
        cfg ? 'every AMG term is switched off (--no-gsim --no-gspe --no-gdup): nothing would guide' : 'G_sim is switched off and G_spe/G_dup need classifier-free guidance (--guidance-scale ≠ 1): nothing would guide',
      );
    }

    let classLabels: number[] | undefined;
    if (rows !== null) {
      const classes = Array.from({ length: rows }, (_, c) => c).filter((c) => c !== pipe.nullClassId);
      if (o.classLabel !== undefined && !classes.includes(o.classLabel)) throw new ConfigError(`--class-label ${o.classLabel} is not a class of this model (0…${rows - 1}, null ${pipe.nullClassId})`);
      classLabels = Array.from({ length: o.n }, (_, i) => o.classLabel ?? (classes[i % classes.length] as number));
    } else if (o.classLabel !== undefined) {
      throw new ConfigError('--class-label needs a class-conditional model');
    }
    const scheduler = o.scheduler === 'ddim' ? DDIMScheduler.fromConfig(pipe.scheduler.toConfig()) : pipe.scheduler;
    const bar = new ProgressBar('amg sampling', o.steps, { quiet: o.quiet || o.json });
    const result = await new AMGPipeline(pipe.unet, scheduler).generate({
      amg,
      batchSize: o.n,
      numInferenceSteps: o.steps,
      generator: o.seed,
      ...(classLabels ? { classLabels } : {}),
      ...(cfg ? { guidanceScale: s0, nullClassId: pipe.nullClassId as number } : {}),
      callback: (info) => {
        const f = info.log.fired;
        bar.update(info.step + 1, `${f.sim.filter((v, i) => v || f.spe[i] || f.dup[i]).length}/${o.n} guided at this step`);
      },
    });
    const display = toDisplayRange(result.images);
    result.images.dispose();
    let finalNl2: SampleAMGResult['finalNl2'];
    try {
      const r = nl2(display, index, { k, alpha: o.alpha });
      finalNl2 = { stats: nl2Stats(r.nl2, [AMG_NL2_THRESHOLDS.memorized, AMG_NL2_THRESHOLDS.loose]), values: r.nl2, nearestIds: r.nearestId };
      if (o.out) writeFileAtomicSync(path.resolve(o.out), imageGridPng(display));
    } finally {
      display.dispose();
    }
    const logFile = o.log ?? (o.out ? o.out.replace(/\.png$/i, '') + '.amg-log.json' : null);
    const terms = { sim: amg.sim !== null && amg.sim !== undefined, spe: amg.spe !== null && amg.spe !== undefined, dup: amg.dup !== null && amg.dup !== undefined };
    if (logFile) {
      const doc = {
        model: pipe.dir,
        settings: { n: o.n, steps: o.steps, scheduler: o.scheduler, seed: o.seed, guidanceScale: s0, classLabels: classLabels ?? null, k, alpha: o.alpha, scale: o.amgScale, threshold, terms },
        guidedSteps: result.guidedSteps,
        steps: result.log satisfies AMGStepLog[],
      };
      writeFileAtomicSync(path.resolve(logFile), JSON.stringify(doc, jsonNumbers, 1));
    }
    return {
      out: o.out ?? null,
      log: logFile,
      n: o.n,
      seconds: (performance.now() - t0) / 1000,
      terms,
      threshold,
      scale: o.amgScale,
      references: index.size,
      guidedSamples: result.guidedSteps.filter((g) => g > 0).length,
      guidedSteps: result.guidedSteps,
      finalNl2,
    };
  } finally {
    sim?.dispose();
    index?.dispose();
    pipe.unet.dispose();
  }
}

/** The human-readable summary of {@link runSampleAMG}. */
export function formatSampleAMG(r: SampleAMGResult): string {
  const on = Object.entries(r.terms).filter(([, v]) => v).map(([k]) => `G_${k}`).join(' + ');
  const st = r.finalNl2.stats;
  const thr = r.threshold.kind === 'constant' ? `constant ${r.threshold.value}` : r.threshold.kind === 'always' ? 'always on' : 'official (iDDPM nL2 schedule)';
  return [
    `AMG sampled ${r.n} images in ${r.seconds.toFixed(1)} s (${on}, scale ${r.scale}, λ_t ${thr}; ${r.references} training images)`,
    `  guided samples: ${r.guidedSamples}/${r.n}; guided steps per sample: min ${Math.min(...r.guidedSteps)}, max ${Math.max(...r.guidedSteps)}`,
    `  final nL2: %<1.4 ${st.amg.pctBelow14.toFixed(1)}  %<1.6 ${st.amg.pctBelow16.toFixed(1)}  top1 ${st.amg.top1.toFixed(3)}  median ${st.p50.toFixed(3)}`,
    ...(r.out ? [`  grid: ${r.out}`] : []),
    ...(r.log ? [`  per-step log: ${r.log}`] : []),
  ].join('\n');
}
