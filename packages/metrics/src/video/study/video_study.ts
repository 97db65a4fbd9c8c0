/**
 * An end-to-end video memorization study on a model trained here, where the membership is known
 * exactly: moving-digits clips from real MNIST digits → clip-level duplication split (k clips × n
 * copies + ordinary clips + held-out clips) → a small factorised space-time UNet trained with core's
 * trainer (class-conditional with class dropout, for classifier-free guidance) → DDIM sampling with
 * CFG → content (GSSCD) and motion (OFS-k) memorization rates for duplicated vs non-duplicated clips
 * (Chen et al., arXiv 2410.21669) → inference-time detection AUC from the guidance magnitudes
 * D_c / D_f / D_m (Wen et al. 2024 adapted to video, `video-memorization.md` §5).
 *
 * Everything is seeded; the report carries every number plus wall and CPU time per phase.
 * @module
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import {
  clipsInModelSpace,
  ConfigError,
  DDIMScheduler,
  Generator,
  groupIndices,
  imageGridPng,
  loadVideoUNetFromFolder,
  makeClipMemorizationSplit,
  makeMovingDigits,
  sampleVideosDDIM,
  saveMembership,
  saveVideoUNetToFolder,
  smallVideoUNetConfig,
  trainingIndices,
  trainVideoDiffusionModel,
  VideoUNetModel,
  writeFileAtomicSync,
  type ClipDataset,
  type DigitSource,
  type ImageBatch,
  type Membership,
} from '@diffmem/core';
import { calibrateDetector, VideoMagnitudeTracker, type DetectorCalibration } from '../detection.js';
import { evaluateVideoMemorization, type MotionMode, type TrainingClipInfo, type VideoMemorizationEvaluation } from './evaluate.js';

/** Configuration of {@link runVideoMemorizationStudy} (see {@link DEFAULT_VIDEO_STUDY_CONFIG}). */
export interface VideoStudyConfig {
  seed: number;
  data: {
    size: number;
    numFrames: number;
    digitsPerClip: number | [number, number];
    /** Pixels per frame (default [size/16, size/8]). */
    speed: [number, number] | null;
    source: DigitSource;
  };
  split: { duplicated: number; copies: number; ordinary: number; heldOut: number };
  model: {
    blockOutChannels: number[];
    layersPerBlock: number;
    /** Spatial + temporal attention at the lowest level and in the mid block. */
    attention: boolean;
    temporalConvLayers: number;
    normNumGroups: number;
    /** Condition on the clip's digit class (10 classes + 1 null row) — needed for CFG detection. */
    conditional: boolean;
  };
  train: {
    steps: number;
    batchSize: number;
    learningRate: number;
    warmupSteps: number;
    /** Probability of the null class during training (classifier-free guidance). */
    classDropout: number;
    /** EMA decay, or false for none. */
    ema: number | false;
    /** Training target (and the sampler's `predictionType`). */
    predictionType: 'epsilon' | 'v_prediction' | 'sample';
  };
  schedule: { numTrainTimesteps: number; betaSchedule: 'linear' | 'squaredcos_cap_v2' };
  sampling: {
    /** Conditional models: clips generated per digit class. */
    clipsPerClass: number;
    /** Unconditional models: clips generated. */
    numClips: number;
    numInferenceSteps: number;
    guidanceScale: number;
    /** T₀: the first DDIM steps whose guidance differences feed the detector. */
    detectionSteps: number;
    /** Clips per sampling batch. */
    batchSize: number;
  };
  evaluation: { contentFpr: number; motionFpr: number; motionMode: MotionMode; ofsK: number };
}

/**
 * Defaults: 16×16 clips of 8 frames, 2 digits, 5 clips × 100 copies + 200 ordinary + 100 held out,
 * v-prediction, 8 clips per class (80) with guidance scale 1.5.
 *
 * The guidance scale is low on purpose: on this tiny model, w = 3 pushes the samples off the
 * training clips (grainy, flickering frames; the copies of duplicated clips match their source in a
 * few frames only and their motion is lost), w = 6 destroys them; w = 1–1.5 keeps whole trajectories
 * (docs/video-diffusion-study.md, "Diagnosis"). w must stay ≠ 1 for the guidance-magnitude detectors.
 */
export const DEFAULT_VIDEO_STUDY_CONFIG: Readonly<VideoStudyConfig> = Object.freeze({
  seed: 0,
  data: { size: 16, numFrames: 8, digitsPerClip: 2, speed: null, source: { kind: 'mnist' } },
  split: { duplicated: 5, copies: 100, ordinary: 200, heldOut: 100 },
  model: { blockOutChannels: [16, 32], layersPerBlock: 1, attention: false, temporalConvLayers: 1, normNumGroups: 8, conditional: true },
  train: { steps: 1000, batchSize: 8, learningRate: 2e-3, warmupSteps: 50, classDropout: 0.1, ema: false, predictionType: 'v_prediction' },
  schedule: { numTrainTimesteps: 1000, betaSchedule: 'squaredcos_cap_v2' },
  sampling: { clipsPerClass: 8, numClips: 80, numInferenceSteps: 25, guidanceScale: 1.5, detectionSteps: 5, batchSize: 10 },
  evaluation: { contentFpr: 0.02, motionFpr: 0.02, motionMode: 'object', ofsK: 4 },
} as VideoStudyConfig);

/** A partial config: every section and field optional. */
export type VideoStudyConfigInput = { seed?: number } & { [S in Exclude<keyof VideoStudyConfig, 'seed'>]?: Partial<VideoStudyConfig[S]> };

/** Merges `input` over the defaults and validates it. @throws ConfigError naming the field. */
export function resolveVideoStudyConfig(input: VideoStudyConfigInput = {}): VideoStudyConfig {
  const d = DEFAULT_VIDEO_STUDY_CONFIG;
  const c: VideoStudyConfig = {
    seed: input.seed ?? d.seed,
    data: { ...d.data, ...input.data },
    split: { ...d.split, ...input.split },
    model: { ...d.model, ...input.model },
    train: { ...d.train, ...input.train },
    schedule: { ...d.schedule, ...input.schedule },
    sampling: { ...d.sampling, ...input.sampling },
    evaluation: { ...d.evaluation, ...input.evaluation },
  };
  const int = (field: string, v: number, min: number): void => {
    if (!Number.isInteger(v) || v < min) throw new ConfigError(`video study: ${field} must be an integer ≥ ${min}, got ${JSON.stringify(v)}`, { field });
  };
  int('seed', c.seed, 0);
  int('split.duplicated', c.split.duplicated, 0);
  int('split.copies', c.split.copies, 1);
  int('split.ordinary', c.split.ordinary, 0);
  int('split.heldOut', c.split.heldOut, 2);
  if (c.split.duplicated + c.split.ordinary === 0) throw new ConfigError('video study: the training set is empty (split.duplicated + split.ordinary = 0)', { field: 'split' });
  int('train.steps', c.train.steps, 0);
  int('train.batchSize', c.train.batchSize, 1);
  int('sampling.clipsPerClass', c.sampling.clipsPerClass, 1);
  int('sampling.numClips', c.sampling.numClips, 1);
  int('sampling.numInferenceSteps', c.sampling.numInferenceSteps, 1);
  int('sampling.detectionSteps', c.sampling.detectionSteps, 1);
  int('sampling.batchSize', c.sampling.batchSize, 1);
  int('evaluation.ofsK', c.evaluation.ofsK, 1);
  if (c.sampling.detectionSteps > c.sampling.numInferenceSteps) {
    throw new ConfigError('video study: sampling.detectionSteps exceeds sampling.numInferenceSteps', { field: 'sampling.detectionSteps' });
  }
  if (!(c.train.learningRate > 0)) throw new ConfigError(`video study: train.learningRate must be > 0, got ${c.train.learningRate}`, { field: 'train.learningRate' });
  if (!['epsilon', 'v_prediction', 'sample'].includes(c.train.predictionType)) {
    throw new ConfigError(`video study: train.predictionType must be epsilon, v_prediction or sample, got ${JSON.stringify(c.train.predictionType)}`, { field: 'train.predictionType' });
  }
  if (!(c.train.classDropout >= 0 && c.train.classDropout < 1)) throw new ConfigError('video study: train.classDropout must be in [0, 1)', { field: 'train.classDropout' });
  if (c.model.conditional && c.train.classDropout === 0 && c.sampling.guidanceScale !== 1) {
    throw new ConfigError('video study: classifier-free guidance (guidanceScale ≠ 1) needs train.classDropout > 0', { field: 'train.classDropout' });
  }
  if (c.evaluation.ofsK > c.data.numFrames - 1) {
    throw new ConfigError(`video study: evaluation.ofsK = ${c.evaluation.ofsK} needs clips of more than ${c.evaluation.ofsK} frames`, { field: 'evaluation.ofsK' });
  }
  return c;
}

/** Wall and CPU seconds of one phase (CPU: this process, all threads). */
export interface PhaseTime {
  wallSeconds: number;
  cpuSeconds: number;
}

function startTimer(): () => PhaseTime {
  const w0 = performance.now();
  const c0 = process.cpuUsage();
  return () => {
    const c = process.cpuUsage(c0);
    return { wallSeconds: (performance.now() - w0) / 1000, cpuSeconds: (c.user + c.system) / 1e6 };
  };
}

/** Detection AUCs of one labelling of the generated clips, per magnitude. */
export interface DetectionAucs {
  positives: number;
  negatives: number;
  /** D_c (content magnitude). */
  content: DetectorCalibration | null;
  /** D_f (per-frame max). */
  perFrame: DetectorCalibration | null;
  /** D_m (temporal difference of the guidance). */
  motion: DetectorCalibration | null;
}

/** The inference-time detection results. */
export interface VideoStudyDetection {
  /** Steps averaged (T₀). */
  steps: number;
  /** D_c, D_f, D_m per generated clip. */
  scores: Array<{ content: number; perFrameMax: number; motion: number | null }>;
  /** Positives: clips conditioned on a class that has a duplicated training clip ("memorized prompts"). */
  promptLevel: DetectionAucs;
  /** Positives: clips flagged as content copies (by each embedder's GSSCD). */
  contentCopies: Record<string, DetectionAucs>;
  /** Positives: clips flagged as motion copies (OFS-k). */
  motionCopies: DetectionAucs;
  /**
   * Only the clips conditioned on a class with a duplicated clip: motion copies vs the rest of
   * them — does the magnitude tell *which* generations of a memorized prompt copy the motion,
   * beyond the class identity that `motionCopies` also rewards? (null for unconditional models)
   */
  motionCopiesWithinDuplicatedClasses: DetectionAucs | null;
}

/** Everything a study run measured. */
export interface VideoStudyReport {
  format: 'diffmem-video-study';
  version: 1;
  config: VideoStudyConfig;
  dataset: { name: string; clips: number; spec: ClipDataset['spec'] };
  membership: { duplicated: Array<{ id: string; label: number | null; copies: number }>; ordinary: number; heldOut: number; trainingSetSize: number };
  model: { parameters: number; config: Record<string, unknown> };
  training: {
    steps: number;
    lossHistory: Array<{ step: number; loss: number }>;
    firstLoss: number | null;
    lastLoss: number | null;
    /** The model folder loaded instead of training ({@link VideoStudyRunOptions.modelDir}), else null. */
    loadedFrom: string | null;
  };
  evaluation: VideoMemorizationEvaluation;
  detection: VideoStudyDetection | null;
  timings: { data: PhaseTime; train: PhaseTime; sample: PhaseTime; evaluate: PhaseTime; total: PhaseTime };
  /** Files written (when an output folder was given). */
  files: string[];
}

/** Options of {@link runVideoMemorizationStudy}. */
export interface VideoStudyRunOptions {
  /** Folder for the model, membership, dataset spec, report and sample grids. */
  outDir?: string;
  /** Progress lines. */
  log?: (message: string) => void;
  /**
   * A model folder saved by an earlier run (`<run>/model`): load it instead of training, then sample
   * and evaluate as usual — to re-run sampling / evaluation (e.g. another guidance scale) without
   * retraining. The data and split are rebuilt from the config, so the config's `seed`, `data`,
   * `split` and `model` must be the ones it was trained with: the model's frames, size and class
   * table are checked, and so is `<run>/membership.json` when present (same duplicated and
   * ordinary clips, same copies). @throws ConfigError on a mismatch.
   */
  modelDir?: string;
}

/** Clip ids (with their copies) of the duplicated and of the ordinary training clips of a membership. */
function trainingGroupIds(m: { entries: ReadonlyArray<{ id: string; group: string; copies: number }> }): string {
  const ids = (g: string): string =>
    m.entries
      .filter((e) => e.group === g && e.copies > 0)
      .map((e) => `${e.id}×${e.copies}`)
      .sort()
      .join(',');
  return `${ids('duplicated')}|${ids('ordinary')}`;
}

/** Loads `dir` for {@link runVideoMemorizationStudy} and checks it fits the study's data and split. */
async function loadStudyModel(dir: string, config: VideoStudyConfig, membership: Membership, classes: number): Promise<VideoUNetModel> {
  const model = await loadVideoUNetFromFolder(dir);
  const want = { numFrames: config.data.numFrames, sampleSize: config.data.size, numClassEmbeds: config.model.conditional ? classes + 1 : null };
  const got = { numFrames: model.info.numFrames, sampleSize: model.info.sampleSize, numClassEmbeds: model.info.numClassEmbeds ?? null };
  if (JSON.stringify(want) !== JSON.stringify(got)) {
    model.dispose();
    throw new ConfigError(`video study: the model in ${dir} does not fit the config (model ${JSON.stringify(got)}, config ${JSON.stringify(want)})`, { field: 'modelDir' });
  }
  const saved = path.join(path.dirname(path.resolve(dir)), 'membership.json');
  if (fs.existsSync(saved)) {
    const m = JSON.parse(fs.readFileSync(saved, 'utf8')) as { entries: Array<{ id: string; group: string; copies: number }> };
    if (trainingGroupIds(m) !== trainingGroupIds(membership)) {
      model.dispose();
      throw new ConfigError(`video study: ${saved} (the model's training split) differs from the split this config builds; use the seed, data and split the model was trained with`, { field: 'modelDir' });
    }
  }
  return model;
}

function aucs(pos: number[], neg: number[]): DetectorCalibration | null {
  return pos.length > 0 && neg.length > 0 ? calibrateDetector(pos, neg) : null;
}

function detectionAucs(scores: VideoStudyDetection['scores'], positive: boolean[]): DetectionAucs {
  const pick = (f: (s: VideoStudyDetection['scores'][number]) => number | null, want: boolean): number[] =>
    scores.flatMap((s, i) => {
      const v = f(s);
      return positive[i] === want && v !== null ? [v] : [];
    });
  return {
    positives: positive.filter(Boolean).length,
    negatives: positive.filter((p) => !p).length,
    content: aucs(pick((s) => s.content, true), pick((s) => s.content, false)),
    perFrame: aucs(pick((s) => s.perFrameMax, true), pick((s) => s.perFrameMax, false)),
    motion: aucs(pick((s) => s.motion, true), pick((s) => s.motion, false)),
  };
}

/** A [N·2T,H,W,1] grid: each row a generated clip, then the training clip it matches best. */
function auditGrid(generated: tf.Tensor5D, training: tf.Tensor5D, matchIndex: number[]): Uint8Array {
  const grid = tf.tidy(() => {
    const [n, t, h, w, c] = generated.shape;
    const matched = tf.gather(training, tf.tensor1d(matchIndex, 'int32'));
    const rows = tf.concat([generated, matched], 1); // [N, 2T, H, W, C]
    const frames = tf.reshape(rows, [n * 2 * t, h, w, c]) as tf.Tensor4D;
    return tf.image.resizeNearestNeighbor(frames, [h * 3, w * 3]);
  });
  try {
    return imageGridPng(grid as ImageBatch<'display'>, 2 * generated.shape[1]);
  } finally {
    grid.dispose();
  }
}

/**
 * Runs the whole study (see the module documentation) and returns its report; with `outDir`,
 * also writes `model/` (config.json + safetensors), `membership.json`, `dataset.json`,
 * `report.json` and `samples.png` (each generated clip next to its best content match).
 */
export async function runVideoMemorizationStudy(input: VideoStudyConfigInput = {}, options: VideoStudyRunOptions = {}): Promise<VideoStudyReport> {
  const config = resolveVideoStudyConfig(input);
  if (options.modelDir !== undefined && options.outDir !== undefined && path.resolve(options.outDir) === path.dirname(path.resolve(options.modelDir))) {
    throw new ConfigError('video study: write a re-evaluation (modelDir) to another folder than the run that trained the model, or its report would be overwritten', { field: 'outDir' });
  }
  const log = options.log ?? (() => undefined);
  const total = startTimer();
  const files: string[] = [];
  const memBefore = tf.memory().numTensors;

  // 1. Data and membership.
  let timer = startTimer();
  const s = config.split;
  const ds = makeMovingDigits({
    numClips: s.duplicated + s.ordinary + s.heldOut,
    numFrames: config.data.numFrames,
    size: config.data.size,
    digitsPerClip: config.data.digitsPerClip,
    ...(config.data.speed ? { speed: config.data.speed } : {}),
    source: config.data.source,
    seed: config.seed,
  });
  let model: VideoUNetModel | null = null;
  const owned: tf.Tensor[] = [ds.clips];
  try {
    const membership: Membership = makeClipMemorizationSplit(ds, { ...s, seed: config.seed + 1 });
    const trainSet = membership.entries.filter((e) => e.copies > 0);
    const uniqueTrain = trainSet.map((e) => e.index);
    const position = new Map(uniqueTrain.map((idx, i) => [idx, i]));
    const trainIndices = trainingIndices(membership).map((i) => position.get(i) as number);
    const heldOut = groupIndices(membership, 'held-out');
    const trainClipsModel = clipsInModelSpace(ds, uniqueTrain);
    owned.push(trainClipsModel);
    const labels = Int32Array.from(uniqueTrain, (i) => ds.records[i]?.label as number);
    const dataTime = timer();
    log(`data: ${ds.records.length} clips ${config.data.numFrames}×${config.data.size}², ${trainSet.length} unique training clips, training set ${trainIndices.length}`);

    // 2. Model and training.
    timer = startTimer();
    const classes = 10;
    const cond = config.model.conditional;
    const modelConfig = smallVideoUNetConfig({
      sampleSize: config.data.size,
      numFrames: config.data.numFrames,
      channels: 1,
      blockOutChannels: config.model.blockOutChannels,
      layersPerBlock: config.model.layersPerBlock,
      attention: config.model.attention,
      normNumGroups: config.model.normNumGroups,
      temporalConvLayers: config.model.temporalConvLayers,
      ...(cond ? { numClassEmbeds: classes + 1 } : {}),
    });
    const scheduler = new DDIMScheduler({
      numTrainTimesteps: config.schedule.numTrainTimesteps,
      betaSchedule: config.schedule.betaSchedule,
      predictionType: config.train.predictionType,
    });
    let training: VideoStudyReport['training'];
    if (options.modelDir !== undefined) {
      model = await loadStudyModel(options.modelDir, config, membership, classes);
      log(`model: ${model.paramCount()} parameters, loaded from ${options.modelDir} (no training)`);
      training = { steps: 0, lossHistory: [], firstLoss: null, lastLoss: null, loadedFrom: options.modelDir };
    } else {
      model = VideoUNetModel.fromConfig(modelConfig, { seed: config.seed + 2 });
      log(`model: ${model.paramCount()} parameters; training ${config.train.steps} steps × ${config.train.batchSize} clips`);
      const trained = await trainVideoDiffusionModel(model, {
        clips: trainClipsModel,
        trainIndices,
        ...(cond ? { labels, classDropout: config.train.classDropout, nullClassId: classes } : {}),
        alphasCumprod: scheduler.alphasCumprod,
        predictionType: config.train.predictionType,
        batchSize: config.train.batchSize,
        maxSteps: config.train.steps,
        optimizer: { kind: 'adamw', learningRate: config.train.learningRate, weightDecay: 0 },
        warmupSteps: config.train.warmupSteps,
        ema: config.train.ema === false ? false : { decay: config.train.ema },
        seed: config.seed + 3,
        logEvery: Math.max(1, Math.floor(config.train.steps / 20)),
        onProgress: (p) => log(`train: step ${p.step}/${p.totalSteps} loss ${p.loss.toFixed(4)} (${p.stepsPerSecond.toFixed(2)} steps/s)`),
      });
      if (trained.ema) {
        // Sample with the EMA weights (what diffusers' training scripts export).
        for (const [k, v] of model.variables) v.assign(trained.ema.shadow.get(k) as tf.Variable);
        trained.ema.dispose();
      }
      training = {
        steps: trained.steps,
        lossHistory: trained.lossHistory,
        firstLoss: trained.lossHistory[0]?.loss ?? null,
        lastLoss: trained.lossHistory[trained.lossHistory.length - 1]?.loss ?? null,
        loadedFrom: null,
      };
    }
    const trainTime = timer();

    // 3. Sampling (with the guidance magnitudes of the first steps).
    timer = startTimer();
    const genLabels: Array<number | null> = cond
      ? Array.from({ length: classes * config.sampling.clipsPerClass }, (_, i) => Math.floor(i / config.sampling.clipsPerClass))
      : new Array<number | null>(config.sampling.numClips).fill(null);
    const useCfg = cond && config.sampling.guidanceScale !== 1;
    const detScores: VideoStudyDetection['scores'] = [];
    const parts: tf.Tensor5D[] = [];
    const gen = new Generator(config.seed + 4);
    for (let b = 0; b < genLabels.length; b += config.sampling.batchSize) {
      const batchLabels = genLabels.slice(b, b + config.sampling.batchSize);
      const tracker = new VideoMagnitudeTracker({ batched: true });
      const clips = await sampleVideosDDIM(model, scheduler, {
        numClips: batchLabels.length,
        numInferenceSteps: config.sampling.numInferenceSteps,
        generator: gen,
        ...(cond ? { classLabels: batchLabels as number[] } : {}),
        ...(useCfg ? { guidanceScale: config.sampling.guidanceScale, nullClassId: classes } : {}),
        onStep: (st) => {
          if (useCfg && st.step < config.sampling.detectionSteps) tracker.track(st.conditional as tf.Tensor, st.unconditional as tf.Tensor);
        },
      });
      parts.push(tf.tidy(() => tf.clipByValue(tf.mul(tf.add(clips, 1), 0.5), 0, 1)) as tf.Tensor5D);
      clips.dispose();
      if (useCfg) {
        const r = tracker.result();
        for (let i = 0; i < batchLabels.length; i++) {
          detScores.push({ content: r.content[i] as number, perFrameMax: r.perFrameMax[i] as number, motion: r.motion[i] ?? null });
        }
      }
      log(`sample: ${Math.min(b + config.sampling.batchSize, genLabels.length)}/${genLabels.length} clips`);
    }
    const generated = (parts.length === 1 ? parts[0] : tf.concat(parts, 0)) as tf.Tensor5D;
    if (parts.length > 1) tf.dispose(parts);
    owned.push(generated);
    const sampleTime = timer();

    // 4. Evaluation: content and motion memorization, calibrated on the held-out clips.
    timer = startTimer();
    const trainDisplay = tf.tidy(() => tf.gather(ds.clips, tf.tensor1d(uniqueTrain, 'int32'))) as tf.Tensor5D;
    const controls = tf.tidy(() => tf.gather(ds.clips, tf.tensor1d(heldOut, 'int32'))) as tf.Tensor5D;
    owned.push(trainDisplay, controls);
    const clipsInfo: TrainingClipInfo[] = trainSet.map((e) => ({ id: e.id, group: e.group === 'duplicated' ? 'duplicated' : 'ordinary', copies: e.copies, label: e.label }));
    const evaluation = evaluateVideoMemorization(
      { generated, generatedLabels: genLabels, training: { clips: trainDisplay, clipsInfo }, controls },
      {
        contentFpr: config.evaluation.contentFpr,
        motionFpr: config.evaluation.motionFpr,
        motion: { mode: config.evaluation.motionMode, k: config.evaluation.ofsK },
      },
    );
    let detection: VideoStudyDetection | null = null;
    if (useCfg) {
      const dupLabels = new Set(trainSet.filter((e) => e.group === 'duplicated').map((e) => e.label));
      const contentCopies: Record<string, DetectionAucs> = {};
      for (const name of Object.keys(evaluation.thresholds.content)) {
        contentCopies[name] = detectionAucs(detScores, evaluation.generated.map((g) => g.content[name]?.memorized === true));
      }
      detection = {
        steps: config.sampling.detectionSteps,
        scores: detScores,
        promptLevel: detectionAucs(detScores, genLabels.map((l) => l !== null && dupLabels.has(l))),
        contentCopies,
        motionCopies: detectionAucs(detScores, evaluation.generated.map((g) => g.motion.memorized)),
        motionCopiesWithinDuplicatedClasses: null,
      };
      const inDup = genLabels.map((l) => l !== null && dupLabels.has(l));
      if (inDup.some(Boolean)) {
        detection.motionCopiesWithinDuplicatedClasses = detectionAucs(
          detScores.filter((_, i) => inDup[i]),
          evaluation.generated.filter((_, i) => inDup[i]).map((g) => g.motion.memorized),
        );
      }
    }
    const evaluateTime = timer();

    const report: VideoStudyReport = {
      format: 'diffmem-video-study',
      version: 1,
      config,
      dataset: { name: ds.name, clips: ds.records.length, spec: ds.spec },
      membership: {
        duplicated: membership.entries.filter((e) => e.group === 'duplicated').map((e) => ({ id: e.id, label: e.label, copies: e.copies })),
        ordinary: s.ordinary,
        heldOut: heldOut.length,
        trainingSetSize: trainIndices.length,
      },
      model: { parameters: model.paramCount(), config: model.toJSON() },
      training,
      evaluation,
      detection,
      timings: { data: dataTime, train: trainTime, sample: sampleTime, evaluate: evaluateTime, total: total() },
      files,
    };

    if (options.outDir) {
      const out = options.outDir;
      // A loaded model stays where it is (the report names it in training.loadedFrom).
      if (options.modelDir === undefined) {
        await saveVideoUNetToFolder(model, path.join(out, 'model'));
        files.push(path.join(out, 'model'));
      }
      saveMembership(path.join(out, 'membership.json'), membership);
      writeFileAtomicSync(path.join(out, 'dataset.json'), JSON.stringify(ds.spec, null, 1));
      const pixelsOrFirst = Object.keys(evaluation.thresholds.content).includes('pixels') ? 'pixels' : (Object.keys(evaluation.thresholds.content)[0] as string);
      const trainPos = new Map(clipsInfo.map((c, i) => [c.id, i]));
      const match = evaluation.generated.map((g) => trainPos.get(g.content[pixelsOrFirst]?.referenceId as string) ?? 0);
      writeFileAtomicSync(path.join(out, 'samples.png'), auditGrid(generated, trainDisplay, match));
      files.push(path.join(out, 'membership.json'), path.join(out, 'dataset.json'), path.join(out, 'samples.png'), path.join(out, 'report.json'));
      report.timings.total = total();
      writeFileAtomicSync(path.join(out, 'report.json'), JSON.stringify(report, null, 1));
    }
    return report;
  } finally {
    tf.dispose(owned);
    model?.dispose();
    const leaked = tf.memory().numTensors - memBefore;
    if (leaked !== 0) log(`warning: ${leaked} tensor(s) not released by the study`);
  }
}
