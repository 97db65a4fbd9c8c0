/**
 * Content memorization of video diffusion models: GSSCD, the frame-level max of copy-descriptor
 * similarities (Chen et al., "Investigating Memorization in Video Diffusion Models", arXiv
 * 2410.21669, §2 of `video-memorization.md`), and the prior clip-level VSSCD (Rahman, Perera &
 * Patel, "Frame by Familiar Frame", WACV 2025) as a baseline.
 *
 * With e(·) an L2-normalised frame descriptor (SSCD in the papers; any {@link Embedder} here),
 * G = (g_1…g_N) a generated clip and R = (r_1…r_M) a training clip (M = 1 for a training image):
 *
 * ```
 * s(g_i, r_j) = ⟨e(g_i), e(r_j)⟩
 * GSSCD(G, R) = max_{i ≤ N, j ≤ M} s(g_i, r_j)
 * Score(G)    = max_{R ∈ train} GSSCD(G, R)
 * ```
 *
 * This "max over frame pairs" reading follows the reviewers' description (frame-level; "a naive
 * extension of SSCD … see the VSC competition", whose baseline aggregates matches with a max);
 * the paper's exact typesetting is not confirmed. The optional robustness rule flags G only when at
 * least m generated frames match the same reference: |{i : max_j s(g_i, r_j) ≥ τ}| ≥ m.
 *
 * Cost: the reference frames are embedded once into a matrix (rows in blocks), and a query is one
 * matrix product per block, [N, D] × [D, rows], followed by a per-clip max on the CPU.
 * @module
 */
import * as tf from '@tensorflow/tfjs-core';
import { ConfigError, InputError, NonFiniteError, ShapeError, type Image, type Video } from '@diffmem/core';
import { l2NormalizeRows, type Embedder } from '../embedders/types.js';
import type { ReferenceId } from '../index_storage.js';
import { checkClip, checkInteger, checkNumber, readTensor } from './validate.js';

/** What a reference entry was indexed from. */
export type ReferenceClipKind = 'video' | 'image';

/** One reference (training clip or training image) of a {@link VideoReferenceIndex}. */
export interface ReferenceClip {
  id: ReferenceId;
  kind: ReferenceClipKind;
  /** First row of its frames in the index. */
  start: number;
  /** Number of frames (1 for images). */
  frames: number;
}

/** Options of {@link VideoReferenceIndex}. */
export interface VideoReferenceIndexOptions {
  /** Frames per `embed` call when indexing and querying (default 64). */
  batchSize?: number;
  /** Rows per stored block, the unit of each matrix product (default 8192). */
  blockRows?: number;
}

/**
 * Frame descriptors of training clips and training images, embedded once, with the clip each row
 * belongs to. Images are indexed as 1-frame references (kind `'image'`) in the same matrix, so a
 * generated clip is compared with video frames and images in one product.
 */
export class VideoReferenceIndex {
  /** The frame embedder (queries must use the same one). */
  readonly embedder: Embedder;
  /** Frames per `embed` call. */
  readonly batchSize: number;
  private readonly blockRows: number;
  private readonly blocks: tf.Tensor2D[] = [];
  private pending: tf.Tensor2D[] = [];
  private pendingRows = 0;
  private readonly clipList: ReferenceClip[] = [];
  private readonly byId = new Map<ReferenceId, number>();
  /** ‖Σ_j e(r_j)‖ per clip (mean-pooled VSSCD). */
  private readonly sumNorms: number[] = [];
  private rows = 0;
  private disposed = false;
  private dimension = -1;

  constructor(embedder: Embedder, options: VideoReferenceIndexOptions = {}) {
    if (!embedder || typeof embedder.embed !== 'function') {
      throw new ConfigError('VideoReferenceIndex needs an Embedder (an object with embed(images) → [N, D])');
    }
    this.embedder = embedder;
    this.batchSize = checkInteger(options.batchSize ?? 64, 'batchSize');
    this.blockRows = checkInteger(options.blockRows ?? 8192, 'blockRows');
  }

  /** Number of references (clips + images). */
  get size(): number {
    return this.clipList.length;
  }

  /** Number of indexed frames (rows). */
  get frameCount(): number {
    return this.rows;
  }

  /** Descriptor length (−1 while empty). */
  get dim(): number {
    return this.dimension;
  }

  /** The references, in insertion order. */
  get references(): readonly ReferenceClip[] {
    return this.clipList;
  }

  /** The reference with this id, or undefined. */
  reference(id: ReferenceId): ReferenceClip | undefined {
    const i = this.byId.get(id);
    return i === undefined ? undefined : this.clipList[i];
  }

  /** Indexes a training clip [T,H,W,C] (display space) under `id`. The clip is not disposed. */
  addClip(id: ReferenceId, frames: Video<'display'> | tf.Tensor4D): void {
    this.checkNewId(id);
    const { clip } = checkClip(frames, `reference clip ${String(id)}`);
    const emb = embedFrames(this.embedder, clip, this.batchSize, `reference clip ${String(id)}`);
    this.append(id, 'video', emb);
  }

  /** Indexes a training image [H,W,C] or [1,H,W,C] as a 1-frame reference of kind `'image'`. */
  addImage(id: ReferenceId, image: Image<'display'> | tf.Tensor3D | tf.Tensor4D): void {
    this.checkNewId(id);
    const { clip, reshaped } = checkClip(image, `reference image ${String(id)}`, true);
    try {
      if (clip.shape[0] !== 1) {
        throw new ShapeError(`reference image ${String(id)} must be one image, got ${clip.shape[0]} frames (use addImages)`, {
          actual: clip.shape,
        });
      }
      this.append(id, 'image', embedFrames(this.embedder, clip, this.batchSize, `reference image ${String(id)}`));
    } finally {
      if (reshaped) clip.dispose();
    }
  }

  /** Indexes a batch of training images [N,H,W,C], one 1-frame reference per image. */
  addImages(ids: readonly ReferenceId[], images: tf.Tensor4D): void {
    const { clip } = checkClip(images, 'reference images');
    if (ids.length !== clip.shape[0]) {
      throw new ShapeError(`addImages got ${ids.length} id(s) for ${clip.shape[0]} image(s)`, { ids: ids.length, images: clip.shape[0] });
    }
    const seen = new Set<ReferenceId>();
    for (const id of ids) {
      this.checkNewId(id);
      if (seen.has(id)) throw new ConfigError(`duplicate reference id ${JSON.stringify(id)} in addImages`, { id });
      seen.add(id);
    }
    const emb = embedFrames(this.embedder, clip, this.batchSize, 'reference images');
    try {
      for (let i = 0; i < ids.length; i++) {
        this.append(ids[i] as ReferenceId, 'image', tf.slice(emb, [i, 0], [1, -1]));
      }
    } finally {
      emb.dispose();
    }
  }

  /**
   * Indexes precomputed frame descriptors [M, D] (e.g. from an offline run of the same embedder);
   * rows are L2-normalised again here. The tensor is not disposed.
   */
  addEmbeddings(id: ReferenceId, kind: ReferenceClipKind, embeddings: tf.Tensor2D): void {
    this.checkNewId(id);
    if (kind !== 'video' && kind !== 'image') throw new ConfigError(`kind must be 'video' or 'image', got ${String(kind)}`);
    if (!(embeddings instanceof tf.Tensor) || embeddings.rank !== 2 || embeddings.shape[0] === 0) {
      throw new ShapeError(`embeddings of ${String(id)} must be a non-empty [M, D] tensor`, { id });
    }
    if (kind === 'image' && embeddings.shape[0] !== 1) {
      throw new ShapeError(`an image reference has exactly one row, got ${embeddings.shape[0]}`, { id });
    }
    assertFiniteMatrix(embeddings, `embeddings of ${String(id)}`);
    this.append(id, kind, l2NormalizeRows(embeddings));
  }

  /** Frees every stored tensor; the index cannot be used afterwards. */
  dispose(): void {
    tf.dispose([...this.blocks, ...this.pending]);
    this.blocks.length = 0;
    this.pending = [];
    this.disposed = true;
  }

  /** Rows to clip ordinal, and the stored blocks (pending rows are consolidated first). @internal */
  matrixBlocks(): { blocks: readonly tf.Tensor2D[]; rowClip: Int32Array } {
    this.assertAlive();
    this.flush();
    const rowClip = new Int32Array(this.rows);
    this.clipList.forEach((c, k) => rowClip.fill(k, c.start, c.start + c.frames));
    return { blocks: this.blocks, rowClip };
  }

  /** ‖Σ_j e(r_j)‖ of reference `k` (its clip-level mean-pooled descriptor, unnormalised). @internal */
  sumNorm(k: number): number {
    return this.sumNorms[k] as number;
  }

  private checkNewId(id: ReferenceId): void {
    this.assertAlive();
    if (typeof id !== 'string' && !(typeof id === 'number' && Number.isFinite(id))) {
      throw new ConfigError(`reference id must be a string or a finite number, got ${String(id)}`);
    }
    if (this.byId.has(id)) throw new ConfigError(`reference id ${JSON.stringify(id)} is already in the index`, { id });
  }

  private assertAlive(): void {
    if (this.disposed) throw new InputError('INDEX_DISPOSED', 'this VideoReferenceIndex has been disposed');
  }

  /** Takes ownership of `emb` (normalised rows). */
  private append(id: ReferenceId, kind: ReferenceClipKind, emb: tf.Tensor2D): void {
    const d = emb.shape[1];
    if (this.dimension >= 0 && d !== this.dimension) {
      emb.dispose();
      throw new ShapeError(`descriptors of ${String(id)} have ${d} dimensions, the index has ${this.dimension}`, { id });
    }
    this.dimension = d;
    const norm = readTensor(() => tf.norm(tf.sum(emb, 0)))[0] as number;
    this.byId.set(id, this.clipList.length);
    this.clipList.push({ id, kind, start: this.rows, frames: emb.shape[0] });
    this.sumNorms.push(norm);
    this.rows += emb.shape[0];
    this.pending.push(emb);
    this.pendingRows += emb.shape[0];
    if (this.pendingRows >= this.blockRows) this.flush();
  }

  /** Concatenates pending rows into blocks of at most `blockRows`. */
  private flush(): void {
    if (this.pending.length === 0) return;
    const all = this.pending.length === 1 ? (this.pending[0] as tf.Tensor2D) : (tf.concat(this.pending, 0) as tf.Tensor2D);
    if (all !== this.pending[0]) tf.dispose(this.pending);
    this.pending = [];
    this.pendingRows = 0;
    const n = all.shape[0];
    if (n <= this.blockRows) {
      this.blocks.push(all);
      return;
    }
    for (let s = 0; s < n; s += this.blockRows) {
      this.blocks.push(tf.slice(all, [s, 0], [Math.min(this.blockRows, n - s), -1]));
    }
    all.dispose();
  }
}

function assertFiniteMatrix(t: tf.Tensor, name: string): void {
  const bad = readTensor(() => tf.sum(tf.cast(tf.logicalNot(tf.isFinite(t)), 'float32')))[0] as number;
  if (bad > 0) throw new NonFiniteError(`${name} contains ${bad} non-finite value(s) (NaN or Infinity)`, { name, count: bad });
}

/** Embeds a [T,H,W,C] clip in batches and L2-normalises the rows (a new [T, D] tensor). */
function embedFrames(embedder: Embedder, clip: tf.Tensor4D, batchSize: number, name: string): tf.Tensor2D {
  const t = clip.shape[0];
  const parts: tf.Tensor2D[] = [];
  try {
    for (let s = 0; s < t; s += batchSize) {
      const m = Math.min(batchSize, t - s);
      const part = tf.tidy(() => {
        const frames = m === t ? clip : tf.slice(clip, [s, 0, 0, 0], [m, -1, -1, -1]);
        const e = embedder.embed(frames);
        if (!(e instanceof tf.Tensor) || e.rank !== 2 || e.shape[0] !== m) {
          throw new ShapeError(
            `embedder ${embedder.name} returned ${e instanceof tf.Tensor ? `[${e.shape.join(',')}]` : typeof e} for ${m} frame(s) of ${name}; expected [${m}, D]`,
          );
        }
        return l2NormalizeRows(e as tf.Tensor2D);
      });
      parts.push(part);
    }
    const bad = readTensor(() => tf.addN(parts.map((p) => tf.sum(tf.cast(tf.logicalNot(tf.isFinite(p)), 'float32')))))[0] as number;
    if (bad > 0) {
      throw new NonFiniteError(`embedder ${embedder.name} produced ${bad} non-finite value(s) for ${name}`, { name, count: bad });
    }
  } catch (e) {
    tf.dispose(parts);
    throw e;
  }
  if (parts.length === 1) return parts[0] as tf.Tensor2D;
  const out = tf.concat(parts, 0) as tf.Tensor2D;
  tf.dispose(parts);
  return out;
}

/** The best frame pair between a generated clip and one reference. */
export interface FrameMatch {
  /** Index of the generated frame g_i. */
  generatedFrame: number;
  /** Id of the reference (training clip or image). */
  referenceId: ReferenceId;
  referenceKind: ReferenceClipKind;
  /** Index of the reference frame r_j (0 for images). */
  referenceFrame: number;
  /** s(g_i, r_j), cosine of the L2-normalised descriptors. */
  similarity: number;
}

/** GSSCD of the generated clip against one reference. */
export interface ClipContentScore {
  referenceId: ReferenceId;
  referenceKind: ReferenceClipKind;
  /** GSSCD(G, R) = max_{i,j} s(g_i, r_j). */
  gsscd: number;
  /** The argmax pair, for a human audit. */
  match: FrameMatch;
  /** |{i : max_j s(g_i, r_j) ≥ τ}|, the number of generated frames that match this reference. */
  framesAbove: number;
  /** framesAbove ≥ m (the at-least-m-frames rule; m = 1 is the plain max rule). */
  memorized: boolean;
}

/** Options of {@link contentScore}. */
export interface ContentScoreOptions {
  /**
   * Decision threshold τ_c on the cosine (default 0.5, the usual SSCD replication cut-off; 0.75 is
   * SSCD's "high-confidence copy"). Thresholds are specific to the embedder: calibrate them (e.g.
   * {@link thresholdAtFpr} on known non-copies) when not using SSCD.
   */
  threshold?: number;
  /** m of the at-least-m-frames rule (default 1: the plain frame-level max). */
  minFrames?: number;
  /** References reported in `topClips`, best first (default 5). */
  topK?: number;
}

/** Result of {@link contentScore}. */
export interface ContentScoreResult {
  /** Score(G) = max over references of GSSCD(G, R). */
  score: number;
  /** The argmax (generated frame, reference id, reference frame). */
  match: FrameMatch;
  /** Some reference has ≥ m generated frames with s ≥ τ. */
  memorized: boolean;
  /** Some training **image** passes the rule ("replicates an image", §4 of the reference note). */
  imageReplicated: boolean;
  /** Some training **clip** passes the rule ("replicates a video frame"). */
  videoReplicated: boolean;
  /** Best image reference and best video reference (null when the index has none of that kind). */
  bestImage: ClipContentScore | null;
  bestVideo: ClipContentScore | null;
  /** For every generated frame, its best reference frame over the whole index. */
  perFrame: FrameMatch[];
  /** The `topK` references by GSSCD, best first. */
  topClips: ClipContentScore[];
  threshold: number;
  minFrames: number;
}

/** Per-reference statistics of the similarity matrix S = E_G · E_Rᵀ. @internal */
interface SimilarityStats {
  n: number;
  /** best[k·N + i] = max_j s(g_i, r^k_j). */
  best: Float32Array;
  /** Argmax j of best. */
  bestFrame: Int32Array;
  /** Σ_{i,j} s(g_i, r^k_j) per reference. */
  total: Float64Array;
  /** Σ_t s(g_t, r^k_t) for references with exactly N frames (NaN otherwise). */
  diagonal: Float64Array;
  /** ‖Σ_i e(g_i)‖. */
  querySumNorm: number;
}

function similarityStats(index: VideoReferenceIndex, query: tf.Tensor2D): SimilarityStats {
  const { blocks, rowClip } = index.matrixBlocks();
  const refs = index.references;
  if (refs.length === 0) throw new InputError('EMPTY_INDEX', 'the reference index is empty: add clips or images first');
  if (query.shape[1] !== index.dim) {
    throw new ShapeError(`query descriptors have ${query.shape[1]} dimensions, the index has ${index.dim}`);
  }
  const n = query.shape[0];
  const best = new Float32Array(refs.length * n).fill(-Infinity);
  const bestFrame = new Int32Array(refs.length * n);
  const total = new Float64Array(refs.length);
  const diagonal = new Float64Array(refs.length).fill(NaN);
  refs.forEach((r, k) => {
    if (r.frames === n) diagonal[k] = 0;
  });
  let row0 = 0;
  for (const block of blocks) {
    const rowsInBlock = block.shape[0];
    const s = readTensor(() => tf.matMul(query, block, false, true)); // [N, rows]
    for (let i = 0; i < n; i++) {
      const base = i * rowsInBlock;
      for (let r = 0; r < rowsInBlock; r++) {
        const g = row0 + r;
        const k = rowClip[g] as number;
        const v = s[base + r] as number;
        const slot = k * n + i;
        if (v > (best[slot] as number)) {
          best[slot] = v;
          bestFrame[slot] = g - (refs[k] as ReferenceClip).start;
        }
        total[k] = (total[k] as number) + v;
        if (g - (refs[k] as ReferenceClip).start === i && !Number.isNaN(diagonal[k] as number)) diagonal[k] = (diagonal[k] as number) + v;
      }
    }
    row0 += rowsInBlock;
  }
  const querySumNorm = readTensor(() => tf.norm(tf.sum(query, 0)))[0] as number;
  return { n, best, bestFrame, total, diagonal, querySumNorm };
}

/** Checks caller-supplied query descriptors (finite) and L2-normalises them before scoring. */
function normalizedStats(index: VideoReferenceIndex, query: tf.Tensor2D): SimilarityStats {
  assertFiniteMatrix(query, 'generated-frame descriptors');
  const q = l2NormalizeRows(query);
  try {
    return similarityStats(index, q);
  } finally {
    q.dispose();
  }
}

/** Embeds a generated clip with the index's embedder: [N, D] L2-normalised rows (caller disposes). */
export function embedClip(index: VideoReferenceIndex, generated: Video<'display'> | tf.Tensor4D): tf.Tensor2D {
  const { clip } = checkClip(generated, 'generated clip');
  return embedFrames(index.embedder, clip, index.batchSize, 'generated clip');
}

/**
 * Content memorization score of a generated clip against every reference of `index` (GSSCD,
 * frame-level max; see the module documentation), with the argmax for auditing, the per-frame best
 * matches, the at-least-m-frames rule and the image/video replication flags.
 */
export function contentScore(
  generated: Video<'display'> | tf.Tensor4D,
  index: VideoReferenceIndex,
  options: ContentScoreOptions = {},
): ContentScoreResult {
  const query = embedClip(index, generated);
  try {
    return contentScoreFromEmbeddings(query, index, options);
  } finally {
    query.dispose();
  }
}

/** {@link contentScore} for generated-frame descriptors already computed ([N, D], L2-normalised). */
export function contentScoreFromEmbeddings(
  query: tf.Tensor2D,
  index: VideoReferenceIndex,
  options: ContentScoreOptions = {},
): ContentScoreResult {
  const threshold = checkNumber(options.threshold ?? 0.5, 'threshold', -1, 1);
  const minFrames = checkInteger(options.minFrames ?? 1, 'minFrames');
  const topK = checkInteger(options.topK ?? 5, 'topK');
  if (!(query instanceof tf.Tensor) || query.rank !== 2 || query.shape[0] === 0) {
    throw new ShapeError('generated-frame descriptors must be a non-empty [N, D] tensor');
  }
  const n = query.shape[0];
  if (minFrames > n) {
    throw new ConfigError(`minFrames = ${minFrames} exceeds the ${n} frame(s) of the generated clip`, { minFrames, frames: n });
  }
  const stats = normalizedStats(index, query);
  const refs = index.references;
  const clipScores: ClipContentScore[] = refs.map((r, k) => {
    let bi = 0;
    let framesAbove = 0;
    for (let i = 0; i < n; i++) {
      const v = stats.best[k * n + i] as number;
      if (v > (stats.best[k * n + bi] as number)) bi = i;
      if (v >= threshold) framesAbove++;
    }
    const match: FrameMatch = {
      generatedFrame: bi,
      referenceId: r.id,
      referenceKind: r.kind,
      referenceFrame: stats.bestFrame[k * n + bi] as number,
      similarity: stats.best[k * n + bi] as number,
    };
    return { referenceId: r.id, referenceKind: r.kind, gsscd: match.similarity, match, framesAbove, memorized: framesAbove >= minFrames };
  });
  const perFrame: FrameMatch[] = [];
  for (let i = 0; i < n; i++) {
    let bk = 0;
    for (let k = 1; k < refs.length; k++) if ((stats.best[k * n + i] as number) > (stats.best[bk * n + i] as number)) bk = k;
    const r = refs[bk] as ReferenceClip;
    perFrame.push({
      generatedFrame: i,
      referenceId: r.id,
      referenceKind: r.kind,
      referenceFrame: stats.bestFrame[bk * n + i] as number,
      similarity: stats.best[bk * n + i] as number,
    });
  }
  const ranked = [...clipScores].sort((a, b) => b.gsscd - a.gsscd);
  const best = ranked[0] as ClipContentScore;
  const bestOf = (kind: ReferenceClipKind): ClipContentScore | null => ranked.find((c) => c.referenceKind === kind) ?? null;
  return {
    score: best.gsscd,
    match: best.match,
    memorized: clipScores.some((c) => c.memorized),
    imageReplicated: clipScores.some((c) => c.memorized && c.referenceKind === 'image'),
    videoReplicated: clipScores.some((c) => c.memorized && c.referenceKind === 'video'),
    bestImage: bestOf('image'),
    bestVideo: bestOf('video'),
    perFrame,
    topClips: ranked.slice(0, topK),
    threshold,
    minFrames,
  };
}

/**
 * GSSCD(G, R) of two clips (R may be a single image [H,W,C]): the best frame pair and its cosine.
 * Convenience for one pair; for many references build a {@link VideoReferenceIndex}.
 */
export function gsscd(
  generated: Video<'display'> | tf.Tensor4D,
  reference: Video<'display'> | Image<'display'> | tf.Tensor4D | tf.Tensor3D,
  embedder: Embedder,
): FrameMatch {
  const index = new VideoReferenceIndex(embedder);
  try {
    if (reference instanceof tf.Tensor && reference.rank === 3) index.addImage('reference', reference as tf.Tensor3D);
    else index.addClip('reference', reference as tf.Tensor4D);
    return contentScore(generated, index, { topK: 1 }).match;
  } finally {
    index.dispose();
  }
}

/** Clip-level pooling of the VSSCD baseline. */
export type VsscdPooling = 'concat' | 'mean';

/** Options of {@link vsscdScore}. */
export interface VsscdOptions {
  /**
   * `'concat'` (default, Rahman et al.): the frame descriptors of a clip are concatenated into
   * one video descriptor; only references with as many frames as the generated clip are
   * comparable. `'mean'`: frame descriptors are averaged (any lengths, images included).
   */
  pooling?: VsscdPooling;
  /** References reported in `topClips` (default 5). */
  topK?: number;
}

/** One reference's VSSCD. */
export interface ClipVsscd {
  referenceId: ReferenceId;
  referenceKind: ReferenceClipKind;
  vsscd: number;
}

/** Result of {@link vsscdScore}. */
export interface VsscdResult {
  /** Top-VSSCD: the best clip-level cosine over comparable references (null if none). */
  score: number | null;
  referenceId: ReferenceId | null;
  pooling: VsscdPooling;
  /** References that could not be compared (concat pooling with a different frame count). */
  skipped: number;
  topClips: ClipVsscd[];
}

/**
 * The prior clip-level baseline VSSCD (Rahman et al., WACV 2025): the cosine between clip-level
 * descriptors. Computed from the same frame-similarity matrix as GSSCD:
 * - concat: ⟨[e(g_1)…e(g_N)], [e(r_1)…e(r_N)]⟩ / (√N·√N) = (1/N) Σ_t s(g_t, r_t) (unit-norm frames);
 * - mean: ⟨Σ_i e(g_i), Σ_j e(r_j)⟩ / (‖Σ_i e(g_i)‖·‖Σ_j e(r_j)‖) = Σ_{i,j} s(g_i, r_j) / (‖·‖‖·‖).
 * Because frames are pooled, a copy of a few frames is diluted — the weakness GSSCD removes.
 */
export function vsscdScore(
  generated: Video<'display'> | tf.Tensor4D,
  index: VideoReferenceIndex,
  options: VsscdOptions = {},
): VsscdResult {
  const query = embedClip(index, generated);
  try {
    return vsscdFromEmbeddings(query, index, options);
  } finally {
    query.dispose();
  }
}

/** {@link vsscdScore} for generated-frame descriptors already computed. */
export function vsscdFromEmbeddings(query: tf.Tensor2D, index: VideoReferenceIndex, options: VsscdOptions = {}): VsscdResult {
  const pooling = options.pooling ?? 'concat';
  if (pooling !== 'concat' && pooling !== 'mean') throw new ConfigError(`pooling must be 'concat' or 'mean', got ${String(pooling)}`);
  const topK = checkInteger(options.topK ?? 5, 'topK');
  if (!(query instanceof tf.Tensor) || query.rank !== 2 || query.shape[0] === 0) {
    throw new ShapeError('generated-frame descriptors must be a non-empty [N, D] tensor');
  }
  const stats = normalizedStats(index, query);
  const scores: ClipVsscd[] = [];
  let skipped = 0;
  index.references.forEach((r, k) => {
    let v: number;
    if (pooling === 'concat') {
      if (r.frames !== stats.n) {
        skipped++;
        return;
      }
      v = (stats.diagonal[k] as number) / stats.n;
    } else {
      const denom = stats.querySumNorm * index.sumNorm(k);
      v = denom > 0 ? (stats.total[k] as number) / denom : 0;
    }
    scores.push({ referenceId: r.id, referenceKind: r.kind, vsscd: v });
  });
  scores.sort((a, b) => b.vsscd - a.vsscd);
  const best = scores[0];
  return {
    score: best ? best.vsscd : null,
    referenceId: best ? best.referenceId : null,
    pooling,
    skipped,
    topClips: scores.slice(0, topK),
  };
}
