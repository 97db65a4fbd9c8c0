/**
 * Content and motion memorization of generated clips against a known training set (Chen et al.,
 * arXiv 2410.21669: GSSCD for content, OFS-k for motion), with thresholds calibrated on held-out
 * real clips and rates split by training-set duplication — the measurement half of a memorization
 * study where the membership (which clips were duplicated, how often) is known exactly.
 *
 * For every generated clip G: the content score max_R GSSCD(G, R) with each frame embedder and the
 * motion score max_R OFS-k(G, R), both over the training clips R, with the argmax reference. A score
 * above its threshold τ flags G as a copy *of that reference*. τ is chosen on control clips — real
 * clips of the same distribution that were never trained on, scored against the same training set —
 * so that at most a fraction `fpr` of them is flagged (`thresholdAtFpr`, flag when score > τ).
 * @module
 */
import * as tf from '@tensorflow/tfjs-core';
import { ConfigError, ShapeError } from '@diffmem/core';
import { CopyDescriptorEmbedder } from '../../embedders/copy_descriptor.js';
import type { Embedder } from '../../embedders/types.js';
import { thresholdAtFpr } from '../../roc.js';
import { contentScore, VideoReferenceIndex } from '../content.js';
import { MotionAnalyzer, MotionReferenceIndex, type MotionProfile, type OfsReading } from '../motion.js';
import { objectMotionProfile } from './object_motion.js';
import { PixelFrameEmbedder } from '../../embedders/pixel_embedder.js';

/** Duplication group of a training clip. */
export type TrainingGroup = 'duplicated' | 'ordinary';

/** One training clip of the reference set. */
export interface TrainingClipInfo {
  id: string;
  group: TrainingGroup;
  /** Copies in the training set. */
  copies: number;
  label: number | null;
}

/** How motion profiles are computed. */
export type MotionMode =
  /** {@link objectMotionProfile}: static camera, support-weighted raw flow (synthetic clips). */
  | 'object'
  /** {@link MotionAnalyzer.analyze}: camera-compensated residual flow with NMF (real footage). */
  | 'analyzer';

/** Options of {@link evaluateVideoMemorization}. */
export interface EvaluateVideoMemorizationOptions {
  /**
   * Content embedders by name (default: `copy-descriptor` = the weight-free
   * {@link CopyDescriptorEmbedder}, and `pixels` = {@link PixelFrameEmbedder}).
   */
  embedders?: Record<string, Embedder>;
  /** Target false-positive rate on the controls for the content thresholds (default 0.02). */
  contentFpr?: number;
  /** Target false-positive rate on the controls for the motion threshold (default 0.02). */
  motionFpr?: number;
  /** Fixed thresholds instead of calibrated ones (per embedder name / motion). */
  thresholds?: { content?: Record<string, number>; motion?: number };
  motion?: {
    /** Default `'object'`. */
    mode?: MotionMode;
    /** Analyser (grids, estimator, NMF); default grid 32×32, descriptor 8×8. */
    analyzer?: MotionAnalyzer;
    /** OFS reading and k (default `'run'`, 4). */
    reading?: OfsReading;
    k?: number;
  };
}

/** Content match of one clip under one embedder. */
export interface ContentMatch {
  score: number;
  referenceId: string;
  referenceGroup: TrainingGroup;
  generatedFrame: number;
  referenceFrame: number;
  memorized: boolean;
}

/** Motion match of one clip. */
export interface MotionMatch {
  /** max over references of OFS-k, or null when undefined. */
  score: number | null;
  /** Why the score is undefined (e.g. `'static'`), else null. */
  reason: string | null;
  referenceId: string | null;
  referenceGroup: TrainingGroup | null;
  memorized: boolean;
}

/** Scores of one generated (or control) clip. */
export interface ClipMemorizationScores {
  index: number;
  /** Conditioning class of a generated clip (null when unconditional or for controls). */
  label: number | null;
  content: Record<string, ContentMatch>;
  motion: MotionMatch;
}

/** Rates of one memorization criterion. */
export interface MemorizationRates {
  /** Fraction of generated clips flagged. */
  generated: number;
  /** Flagged generated clips by the group of the training clip they copy. */
  copies: Record<TrainingGroup, number>;
  /** Fraction of training clips of each group copied by at least one generated clip. */
  replicated: Record<TrainingGroup, number>;
  /** Fraction of held-out control clips flagged (the realised false-positive rate). */
  controls: number;
  /**
   * Fraction of generated clips flagged among those conditioned on a class that has a duplicated
   * training clip, and among the others (null when there are none of that kind / unconditional).
   */
  byLabel: { withDuplicate: number | null; withoutDuplicate: number | null };
}

/** Result of {@link evaluateVideoMemorization}. */
export interface VideoMemorizationEvaluation {
  thresholds: { content: Record<string, number>; motion: number | null };
  generated: ClipMemorizationScores[];
  controls: ClipMemorizationScores[];
  rates: {
    content: Record<string, MemorizationRates>;
    motion: MemorizationRates;
    /** Flagged by content (that embedder) and motion with the same training clip. */
    contentAndMotion: Record<string, MemorizationRates>;
  };
  motionMode: MotionMode;
  /** Generated clips without a motion score, by reason. */
  motionUndefined: Record<string, number>;
}

/** Inputs of {@link evaluateVideoMemorization}; tensors are display space [N,T,H,W,C] and not disposed. */
export interface EvaluateVideoMemorizationInput {
  generated: tf.Tensor5D;
  /** Conditioning class per generated clip (omit for unconditional sampling). */
  generatedLabels?: ReadonlyArray<number | null>;
  /** Unique training clips and who they are. */
  training: { clips: tf.Tensor5D; clipsInfo: readonly TrainingClipInfo[] };
  /** Real clips never trained on (threshold calibration). */
  controls: tf.Tensor5D;
}

function clipAt(batch: tf.Tensor5D, i: number): tf.Tensor4D {
  return tf.tidy(() => tf.squeeze(tf.slice(batch, [i], [1]), [0]) as tf.Tensor4D);
}

function check5(t: unknown, name: string): tf.Tensor5D {
  if (!(t instanceof tf.Tensor) || t.rank !== 5 || t.shape[0] === 0) {
    throw new ShapeError(`${name} must be a non-empty batch of clips [N,T,H,W,C], got ${t instanceof tf.Tensor ? `[${t.shape.join(',')}]` : typeof t}`);
  }
  return t as tf.Tensor5D;
}

/** The default embedders: the weight-free copy descriptor and pixel cross-correlation. */
export function defaultStudyEmbedders(): Record<string, Embedder> {
  return { 'copy-descriptor': new CopyDescriptorEmbedder(), pixels: new PixelFrameEmbedder() };
}

/**
 * Scores generated clips (and held-out controls) against the training clips for content (GSSCD per
 * embedder) and motion (OFS-k), calibrates thresholds on the controls, and reports memorization
 * rates by duplication group. See the module documentation.
 * @throws ShapeError for malformed inputs, ConfigError for bad options.
 */
export function evaluateVideoMemorization(input: EvaluateVideoMemorizationInput, options: EvaluateVideoMemorizationOptions = {}): VideoMemorizationEvaluation {
  const generated = check5(input.generated, 'generated');
  const controls = check5(input.controls, 'controls');
  const trainClips = check5(input.training.clips, 'training clips');
  const info = input.training.clipsInfo;
  if (info.length !== trainClips.shape[0]) throw new ShapeError(`training has ${trainClips.shape[0]} clips but ${info.length} clipsInfo entries`);
  if (new Set(info.map((r) => r.id)).size !== info.length) throw new ConfigError('training clip ids must be unique');
  const labels = input.generatedLabels;
  if (labels !== undefined && labels.length !== generated.shape[0]) {
    throw new ShapeError(`generatedLabels has ${labels.length} entries for ${generated.shape[0]} generated clips`);
  }
  const embedders = options.embedders ?? defaultStudyEmbedders();
  if (Object.keys(embedders).length === 0) throw new ConfigError('evaluateVideoMemorization needs at least one content embedder');
  const fprC = options.contentFpr ?? 0.02;
  const fprM = options.motionFpr ?? 0.02;
  const mode = options.motion?.mode ?? 'object';
  if (mode !== 'object' && mode !== 'analyzer') throw new ConfigError(`motion.mode must be 'object' or 'analyzer', got ${String(mode)}`);
  const analyzer = options.motion?.analyzer ?? new MotionAnalyzer({ size: [32, 32], descriptorSize: [8, 8] });
  const reading = options.motion?.reading ?? 'run';
  const k = options.motion?.k ?? 4;
  const byId = new Map(info.map((r) => [r.id, r]));
  const profile = (clip: tf.Tensor4D): MotionProfile => (mode === 'object' ? objectMotionProfile(analyzer, clip) : analyzer.analyze(clip));

  // Index the training clips once per embedder and once for motion.
  const contentIndex = new Map<string, VideoReferenceIndex>();
  const motionIndex = new MotionReferenceIndex(analyzer);
  try {
    for (const [name, e] of Object.entries(embedders)) contentIndex.set(name, new VideoReferenceIndex(e));
    for (let i = 0; i < info.length; i++) {
      const clip = clipAt(trainClips, i);
      try {
        const id = (info[i] as TrainingClipInfo).id;
        for (const idx of contentIndex.values()) idx.addClip(id, clip);
        motionIndex.add(id, profile(clip));
      } finally {
        clip.dispose();
      }
    }

    const scoreBatch = (batch: tf.Tensor5D, lab: ReadonlyArray<number | null> | undefined): ClipMemorizationScores[] => {
      const out: ClipMemorizationScores[] = [];
      for (let i = 0; i < batch.shape[0]; i++) {
        const clip = clipAt(batch, i);
        try {
          const content: Record<string, ContentMatch> = {};
          for (const [name, idx] of contentIndex) {
            const r = contentScore(clip, idx, { topK: 1 });
            const ref = byId.get(String(r.match.referenceId)) as TrainingClipInfo;
            content[name] = {
              score: r.score,
              referenceId: ref.id,
              referenceGroup: ref.group,
              generatedFrame: r.match.generatedFrame,
              referenceFrame: r.match.referenceFrame,
              memorized: false,
            };
          }
          const m = motionIndex.score(profile(clip), { reading, k, topK: 1 });
          const ref = m.match ? (byId.get(String(m.match.referenceId)) as TrainingClipInfo) : null;
          out.push({
            index: i,
            label: lab?.[i] ?? null,
            content,
            motion: { score: m.score, reason: m.reason, referenceId: ref?.id ?? null, referenceGroup: ref?.group ?? null, memorized: false },
          });
        } finally {
          clip.dispose();
        }
      }
      return out;
    };

    const gen = scoreBatch(generated, labels);
    const ctl = scoreBatch(controls, undefined);

    // Thresholds: calibrated on the controls unless given.
    const content: Record<string, number> = {};
    for (const name of contentIndex.keys()) {
      const fixed = options.thresholds?.content?.[name];
      content[name] = fixed ?? thresholdAtFpr(ctl.map((c) => (c.content[name] as ContentMatch).score), fprC).threshold;
    }
    const ctlMotion = ctl.map((c) => c.motion.score).filter((s): s is number => s !== null);
    const motion = options.thresholds?.motion ?? (ctlMotion.length > 0 ? thresholdAtFpr(ctlMotion, fprM).threshold : null);
    for (const c of [...gen, ...ctl]) {
      for (const [name, m] of Object.entries(c.content)) m.memorized = m.score > (content[name] as number);
      c.motion.memorized = motion !== null && c.motion.score !== null && c.motion.score > motion;
    }

    const dupLabels = new Set(info.filter((r) => r.group === 'duplicated' && r.label !== null).map((r) => r.label as number));
    const rates = (flag: (c: ClipMemorizationScores) => string | null): MemorizationRates => {
      const hits = gen.map(flag);
      const copies: Record<TrainingGroup, number> = { duplicated: 0, ordinary: 0 };
      const replicatedIds = new Set<string>();
      for (const id of hits) {
        if (id === null) continue;
        copies[(byId.get(id) as TrainingClipInfo).group]++;
        replicatedIds.add(id);
      }
      const frac = (group: TrainingGroup): number => {
        const members = info.filter((r) => r.group === group);
        return members.length === 0 ? 0 : members.filter((r) => replicatedIds.has(r.id)).length / members.length;
      };
      const share = (sel: (c: ClipMemorizationScores) => boolean): number | null => {
        const idx = gen.map((c, i) => (sel(c) ? i : -1)).filter((i) => i >= 0);
        return idx.length === 0 ? null : idx.filter((i) => hits[i] !== null).length / idx.length;
      };
      return {
        generated: hits.filter((h) => h !== null).length / gen.length,
        copies,
        replicated: { duplicated: frac('duplicated'), ordinary: frac('ordinary') },
        controls: ctl.filter((c) => flag(c) !== null).length / ctl.length,
        byLabel: {
          withDuplicate: share((c) => c.label !== null && dupLabels.has(c.label)),
          withoutDuplicate: share((c) => c.label !== null && !dupLabels.has(c.label)),
        },
      };
    };
    const contentRates: Record<string, MemorizationRates> = {};
    const bothRates: Record<string, MemorizationRates> = {};
    for (const name of contentIndex.keys()) {
      contentRates[name] = rates((c) => (c.content[name]?.memorized ? (c.content[name] as ContentMatch).referenceId : null));
      bothRates[name] = rates((c) => {
        const m = c.content[name] as ContentMatch;
        return m.memorized && c.motion.memorized && c.motion.referenceId === m.referenceId ? m.referenceId : null;
      });
    }
    const motionUndefined: Record<string, number> = {};
    for (const c of gen) if (c.motion.score === null) motionUndefined[c.motion.reason ?? 'unknown'] = (motionUndefined[c.motion.reason ?? 'unknown'] ?? 0) + 1;
    return {
      thresholds: { content, motion },
      generated: gen,
      controls: ctl,
      rates: { content: contentRates, motion: rates((c) => (c.motion.memorized ? c.motion.referenceId : null)), contentAndMotion: bothRates },
      motionMode: mode,
      motionUndefined,
    };
  } finally {
    for (const idx of contentIndex.values()) idx.dispose();
    motionIndex.dispose();
  }
}
