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
import { ConfigError, InputError, ShapeError } from '@diffmem/core';
import { CopyDescriptorEmbedder } from '../../embedders/copy_descriptor.js';
import type { Embedder } from '../../embedders/types.js';
import { thresholdAtFpr } from '../../roc.js';
import { contentScore, VideoReferenceIndex } from '../content.js';
import { MotionAnalyzer, MotionReferenceIndex, ofs, type MotionProfile, type OfsReading } from '../motion.js';
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

/** Options of {@link ClipMemorizationScorer}: how clips are compared with the training clips. */
export interface ClipMemorizationScorerOptions {
  /**
   * Content embedders by name (default: `copy-descriptor` = the weight-free
   * {@link CopyDescriptorEmbedder}, and `pixels` = {@link PixelFrameEmbedder}).
   */
  embedders?: Record<string, Embedder>;
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

/** Options of {@link evaluateVideoMemorization}. */
export interface EvaluateVideoMemorizationOptions extends ClipMemorizationScorerOptions {
  /** Target false-positive rate on the controls for the content thresholds (default 0.02). */
  contentFpr?: number;
  /** Target false-positive rate on the controls for the motion threshold (default 0.02). */
  motionFpr?: number;
  /** Fixed thresholds instead of calibrated ones (per embedder name / motion). */
  thresholds?: { content?: Record<string, number>; motion?: number };
}

/** Content match of one clip under one embedder. */
export interface ContentMatch {
  score: number;
  referenceId: string;
  referenceGroup: TrainingGroup;
  generatedFrame: number;
  referenceFrame: number;
  /**
   * OFS-k of the clip against this same reference (null when undefined): does a content copy also
   * move like the clip it copies? {@link VideoMemorizationEvaluation} `contentAndMotion` flags it
   * when both this and the content score exceed their thresholds.
   */
  motionScore: number | null;
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
    /**
     * Flagged by content (that embedder) and whose motion score against the *same* training clip
     * ({@link ContentMatch.motionScore}) exceeds the motion threshold: frames and movement copied.
     */
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
 * The training side of a memorization study, indexed once: every training clip's frame
 * descriptors per content embedder ({@link VideoReferenceIndex}) and its motion profile
 * ({@link MotionReferenceIndex}). {@link ClipMemorizationScorer.score} compares one clip with all
 * of them — max-GSSCD per embedder and max OFS-k, each with its argmax, plus OFS-k against the
 * content match — without thresholds (those are {@link evaluateVideoMemorization}'s job). Call
 * `dispose()` when done.
 */
export class ClipMemorizationScorer {
  /** The motion profile mode. */
  readonly mode: MotionMode;
  /** The OFS reading and k. */
  readonly reading: OfsReading;
  readonly k: number;
  readonly analyzer: MotionAnalyzer;
  private readonly info: readonly TrainingClipInfo[];
  private readonly byId: Map<string, TrainingClipInfo>;
  private readonly contentIndex = new Map<string, VideoReferenceIndex>();
  private readonly motionIndex: MotionReferenceIndex;
  private readonly profiles = new Map<string, MotionProfile>();
  private disposed = false;

  /**
   * @param training unique training clips, display space [N,T,H,W,C] (not disposed), and who they are.
   * @throws ShapeError for malformed clips, ConfigError for bad options or duplicate ids.
   */
  constructor(training: { clips: tf.Tensor5D; clipsInfo: readonly TrainingClipInfo[] }, options: ClipMemorizationScorerOptions = {}) {
    const trainClips = check5(training.clips, 'training clips');
    const info = training.clipsInfo;
    if (!Array.isArray(info) || info.length !== trainClips.shape[0]) {
      throw new ShapeError(`training has ${trainClips.shape[0]} clips but ${Array.isArray(info) ? info.length : 'no'} clipsInfo entries`);
    }
    if (new Set(info.map((r) => r.id)).size !== info.length) throw new ConfigError('training clip ids must be unique');
    const embedders = options.embedders ?? defaultStudyEmbedders();
    if (Object.keys(embedders).length === 0) throw new ConfigError('a memorization study needs at least one content embedder');
    const mode = options.motion?.mode ?? 'object';
    if (mode !== 'object' && mode !== 'analyzer') throw new ConfigError(`motion.mode must be 'object' or 'analyzer', got ${String(mode)}`);
    this.mode = mode;
    this.analyzer = options.motion?.analyzer ?? new MotionAnalyzer({ size: [32, 32], descriptorSize: [8, 8] });
    this.reading = options.motion?.reading ?? 'run';
    this.k = options.motion?.k ?? 4;
    this.info = info;
    this.byId = new Map(info.map((r) => [r.id, r]));
    this.motionIndex = new MotionReferenceIndex(this.analyzer);
    try {
      for (const [name, e] of Object.entries(embedders)) this.contentIndex.set(name, new VideoReferenceIndex(e));
      for (let i = 0; i < info.length; i++) {
        const clip = clipAt(trainClips, i);
        try {
          const id = (info[i] as TrainingClipInfo).id;
          for (const idx of this.contentIndex.values()) idx.addClip(id, clip);
          const p = this.profile(clip);
          this.motionIndex.add(id, p);
          this.profiles.set(id, p);
        } finally {
          clip.dispose();
        }
      }
    } catch (e) {
      this.dispose();
      throw e;
    }
  }

  /** Training clips indexed. */
  get size(): number {
    return this.info.length;
  }

  /** Content embedder names. */
  get embedderNames(): string[] {
    return [...this.contentIndex.keys()];
  }

  /** Who a training clip is. */
  clipInfo(id: string): TrainingClipInfo | undefined {
    return this.byId.get(id);
  }

  /** Training clips of a group. */
  groupMembers(group: TrainingGroup): TrainingClipInfo[] {
    return this.info.filter((r) => r.group === group);
  }

  private profile(clip: tf.Tensor4D): MotionProfile {
    return this.mode === 'object' ? objectMotionProfile(this.analyzer, clip) : this.analyzer.analyze(clip);
  }

  /**
   * Scores one display-space clip [T,H,W,C] (not disposed) against every training clip; `memorized`
   * fields are false until thresholds are applied.
   */
  score(clip: tf.Tensor4D, label: number | null = null, index = 0): ClipMemorizationScores {
    if (this.disposed) throw new InputError('INDEX_DISPOSED', 'this ClipMemorizationScorer has been disposed');
    const g = this.profile(clip);
    const content: Record<string, ContentMatch> = {};
    for (const [name, idx] of this.contentIndex) {
      const r = contentScore(clip, idx, { topK: 1 });
      const ref = this.byId.get(String(r.match.referenceId)) as TrainingClipInfo;
      const own = ofs(g, this.profiles.get(ref.id) as MotionProfile, { reading: this.reading, k: this.k });
      content[name] = {
        score: r.score,
        referenceId: ref.id,
        referenceGroup: ref.group,
        generatedFrame: r.match.generatedFrame,
        referenceFrame: r.match.referenceFrame,
        motionScore: own.score,
        memorized: false,
      };
    }
    const m = this.motionIndex.score(g, { reading: this.reading, k: this.k, topK: 1 });
    const ref = m.match ? (this.byId.get(String(m.match.referenceId)) as TrainingClipInfo) : null;
    return {
      index,
      label,
      content,
      motion: { score: m.score, reason: m.reason, referenceId: ref?.id ?? null, referenceGroup: ref?.group ?? null, memorized: false },
    };
  }

  /** Releases the content indexes' tensors. Idempotent. */
  dispose(): void {
    for (const idx of this.contentIndex.values()) idx.dispose();
    this.contentIndex.clear();
    this.motionIndex.dispose();
    this.disposed = true;
  }
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
  const labels = input.generatedLabels;
  if (labels !== undefined && labels.length !== generated.shape[0]) {
    throw new ShapeError(`generatedLabels has ${labels.length} entries for ${generated.shape[0]} generated clips`);
  }
  const fprC = options.contentFpr ?? 0.02;
  const fprM = options.motionFpr ?? 0.02;
  const scorer = new ClipMemorizationScorer(input.training, options);
  try {
    const scoreBatch = (batch: tf.Tensor5D, lab: ReadonlyArray<number | null> | undefined): ClipMemorizationScores[] => {
      const out: ClipMemorizationScores[] = [];
      for (let i = 0; i < batch.shape[0]; i++) {
        const clip = clipAt(batch, i);
        try {
          out.push(scorer.score(clip, lab?.[i] ?? null, i));
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
    for (const name of scorer.embedderNames) {
      const fixed = options.thresholds?.content?.[name];
      content[name] = fixed ?? thresholdAtFpr(ctl.map((c) => (c.content[name] as ContentMatch).score), fprC).threshold;
    }
    const ctlMotion = ctl.map((c) => c.motion.score).filter((s): s is number => s !== null);
    const motion = options.thresholds?.motion ?? (ctlMotion.length > 0 ? thresholdAtFpr(ctlMotion, fprM).threshold : null);
    for (const c of [...gen, ...ctl]) {
      for (const [name, m] of Object.entries(c.content)) m.memorized = m.score > (content[name] as number);
      c.motion.memorized = motion !== null && c.motion.score !== null && c.motion.score > motion;
    }

    const dupLabels = new Set(scorer.groupMembers('duplicated').filter((r) => r.label !== null).map((r) => r.label as number));
    const rates = (flag: (c: ClipMemorizationScores) => string | null): MemorizationRates => {
      const hits = gen.map(flag);
      const copies: Record<TrainingGroup, number> = { duplicated: 0, ordinary: 0 };
      const replicatedIds = new Set<string>();
      for (const id of hits) {
        if (id === null) continue;
        copies[(scorer.clipInfo(id) as TrainingClipInfo).group]++;
        replicatedIds.add(id);
      }
      const frac = (group: TrainingGroup): number => {
        const members = scorer.groupMembers(group);
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
    for (const name of scorer.embedderNames) {
      contentRates[name] = rates((c) => (c.content[name]?.memorized ? (c.content[name] as ContentMatch).referenceId : null));
      bothRates[name] = rates((c) => {
        const m = c.content[name] as ContentMatch;
        return m.memorized && motion !== null && m.motionScore !== null && m.motionScore > motion ? m.referenceId : null;
      });
    }
    const motionUndefined: Record<string, number> = {};
    for (const c of gen) if (c.motion.score === null) motionUndefined[c.motion.reason ?? 'unknown'] = (motionUndefined[c.motion.reason ?? 'unknown'] ?? 0) + 1;
    return {
      thresholds: { content, motion },
      generated: gen,
      controls: ctl,
      rates: { content: contentRates, motion: rates((c) => (c.motion.memorized ? c.motion.referenceId : null)), contentAndMotion: bothRates },
      motionMode: scorer.mode,
      motionUndefined,
    };
  } finally {
    scorer.dispose();
  }
}
