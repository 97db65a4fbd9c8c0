/**
 * Per-step similarity scores σ_t of Anti-Memorization Guidance (Chen, Liu & Xu, CVPR 2024, §4),
 * each with its gradient for the dissimilarity guidance G_sim:
 *
 * - {@link PixelNl2Similarity} — pixel level, Eq. 8: σ_t = −nL2(x̂0) against the training set
 *   (k = 50 neighbours of the generated sample, α = 0.5; RMS ℓ2 in [0, 1] units as the official
 *   `mem_util.L2`). Input: the predicted clean sample x̂0 (Eq. 12).
 * - {@link EmbeddingSimilarity} — object level, Eq. 9: σ_t = E(x̂0)ᵀE(n0), the cosine of
 *   copy-detection descriptors (SSCD in the paper), n0 the most similar reference.
 * - {@link NoisedTrainingNl2Similarity} — the official iDDPM code's variant: nL2 of the noisy x_t
 *   against the training set noised to the same t (`q_sample(train, t)`, fresh noise per call).
 *   Input: x_t.
 *
 * Gradients are taken with respect to the scorer's input in model space ([−1, 1]); the sampler
 * chains them to x_t (∂x̂0/∂x_t = 1/√ᾱ_t with ε̂ held constant, so no back-propagation through the
 * denoiser — the official code computes ε̂ under `no_grad`). Neighbour searches run on a detached
 * copy, so ∇σ is the gradient with the matched neighbours fixed; the nL2 denominator is held
 * constant by default, as in the official iDDPM `cond_fn`.
 * @module
 */
import * as tf from '@tensorflow/tfjs-core';
import { ConfigError, Generator, InputError, ShapeError, addNoise, toGenerator, type RandomSource } from '@diffmem/core';
import {
  NL2_DEFAULTS,
  ReferenceIndex,
  nearestCosineDifferentiable,
  nl2,
  nl2Differentiable,
  type Embedder,
  type Nl2Variant,
  type ReferenceId,
} from '@diffmem/metrics';

/** Where a scorer reads the sample: the predicted clean sample x̂0 (paper) or x_t (iDDPM code). */
export type SimilarityInput = 'x0' | 'xt';

/** The step a similarity is evaluated at. */
export interface SimilarityContext {
  /** DDPM timestep t. */
  readonly timestep: number;
  /** T. */
  readonly numTrainTimesteps: number;
  /** ᾱ_t. */
  readonly alphaProd: number;
  /** x_t itself (model space), for scorers that need it besides their input. */
  readonly sample?: tf.Tensor4D;
}

/** What to compute besides σ. */
export interface SimilarityRequest {
  /** Return ∂σ_i/∂input_i (default false). */
  readonly grad?: boolean;
  /** Also return the `voteK` nearest reference indices per sample (G_dup's duplicate-label vote). */
  readonly voteK?: number;
}

/** σ_t per sample, the matched neighbour and optionally the gradient. */
export interface SimilarityEvaluation {
  /** σ_i (cosine, or −nL2). */
  readonly sigma: number[];
  /** nL2_i for the nL2 scorers, else null. */
  readonly nl2: number[] | null;
  /** Global reference index of n0 per sample. */
  readonly nearestIndex: number[];
  /** Reference id of n0 per sample. */
  readonly nearestId: ReferenceId[];
  /** ∂σ_i/∂input_i in model space, shaped like the input (caller disposes); null unless requested. */
  readonly grad: tf.Tensor4D | null;
  /** The `voteK` nearest reference indices per sample, when requested. */
  readonly voteIndices: number[][] | null;
}

/** A per-step similarity σ_t (higher = more similar to a reference image). */
export interface SimilarityScorer {
  /** e.g. `'pixel-nl2'`, `'embedding-cosine:sscd'`, `'noised-training-nl2'`. */
  readonly name: string;
  /** `'nl2'` (σ = −nL2 ≤ 0) or `'cosine'` (σ ∈ [−1, 1]). */
  readonly metric: 'nl2' | 'cosine';
  readonly input: SimilarityInput;
  /** Number of references. */
  readonly size: number;
  /** Class label of every reference (index order), for G_dup; null when unknown. */
  readonly labels: Int32Array | null;
  /** σ for a batch [N,H,W,C] in model space. Does not dispose its input. */
  evaluate(input: tf.Tensor4D, ctx: SimilarityContext, request?: SimilarityRequest): SimilarityEvaluation;
  /** Releases tensors the scorer owns (never the caller's index or embedder). */
  dispose(): void;
}

/**
 * The part of `@diffmem/metrics`' {@link Embedder} that σ_t uses: display images [N,H,W,C] in
 * [0, 1] → L2-normalised descriptors [N, dim]. For G_sim it must be built from tf ops (it is
 * differentiated through).
 */
export type SimilarityEmbedder = Pick<Embedder, 'name' | 'dim' | 'embed'>;

function checkLabels(labels: ArrayLike<number> | undefined, size: number): Int32Array | null {
  if (labels === undefined) return null;
  if (labels.length !== size) {
    throw new ShapeError(`got ${labels.length} reference labels for ${size} references`, { expected: size, actual: labels.length });
  }
  const out = Int32Array.from(labels);
  out.forEach((l, i) => {
    if (!(l >= 0) || l !== labels[i]) throw new ConfigError(`reference label ${i} must be a non-negative integer, got ${String(labels[i])}`);
  });
  return out;
}

function checkIndex(index: ReferenceIndex, kind: 'images' | 'features', who: string): void {
  if (!(index instanceof ReferenceIndex)) throw new ConfigError(`${who} needs a ReferenceIndex from @diffmem/metrics`);
  if (index.size === 0) {
    throw new InputError('EMPTY_REFERENCE_INDEX', `${who}: the reference index is empty — AMG needs the training images it should not copy`);
  }
  if (index.kind !== kind) {
    throw new ConfigError(
      `${who} needs a reference index of ${kind === 'images' ? 'display images [N,H,W,C] (ReferenceIndex.fromImages)' : 'descriptors [N,D] (ReferenceIndex.fromFeatures)'}, got one of ${index.kind}`,
    );
  }
}

function checkNeighbours(k: number, size: number, who: string): number {
  if (!Number.isInteger(k) || k < 1) throw new ConfigError(`${who}: k must be a positive integer, got ${k}`);
  if (k > size) {
    throw new ConfigError(`${who}: k = ${k} neighbours requested but the reference set holds ${size} image(s); use k ≤ ${size}`, { k, size });
  }
  return k;
}

function checkInput(input: tf.Tensor4D, itemShape: readonly number[] | null, who: string): void {
  if (!(input instanceof tf.Tensor) || input.rank !== 4) throw new ShapeError(`${who}: input must be a [N,H,W,C] tensor`);
  if (itemShape && (input.shape[1] !== itemShape[0] || input.shape[2] !== itemShape[1] || input.shape[3] !== itemShape[2])) {
    throw new ShapeError(
      `${who}: samples [${input.shape.slice(1).join(',')}] do not match the reference images [${itemShape.join(',')}]`,
      { expected: itemShape, actual: input.shape.slice(1) },
    );
  }
}

function f32sqrt(a: number): number {
  return Math.fround(Math.sqrt(a));
}

/** Model space [−1, 1] → display [0, 1] without clipping (so gradients reach every pixel). */
function toDisplay(x: tf.Tensor, clip: boolean): tf.Tensor {
  const d = tf.mul(tf.add(x, 1), 0.5);
  return clip ? tf.clipByValue(d, 0, 1) : d;
}

/** Options of {@link PixelNl2Similarity}. */
export interface PixelNl2Options {
  /** Neighbourhood size k (default 50, Eq. 8). */
  k?: number;
  /** α (default 0.5). */
  alpha?: number;
  /** Default `'generated-centric'` (AMG Eq. 8). */
  variant?: Nl2Variant;
  /** Hold the denominator constant in ∇σ (default true, the official `cond_fn`). */
  detachDenominator?: boolean;
  /** Clamp x̂0 to [−1, 1] before scoring (default false: the official code scores x̂0 unclipped). */
  clipInput?: boolean;
  /** Class label per reference (index order), for G_dup. */
  labels?: ArrayLike<number>;
  /**
   * At a bit-exact copy (nL2 < `exactCopyTolerance`) σ is at its maximum and ∇σ is undefined
   * (the official torch code back-propagates through sqrt(0)). With `'noisy-sample'` (default)
   * the gradient is taken a hair away from n0 along x_t/√ᾱ_t − n0 — the direction in which the
   * sample already departs from the copy; `'none'` keeps the (zero) gradient. Only models that
   * reproduce training images to float precision (e.g. core's EmpiricalDenoiser) reach this case.
   */
  exactCopyDirection?: 'noisy-sample' | 'none';
  /** nL2 below which x̂0 counts as a bit-exact copy (default 1e-4, ≈ RMS 1e-5 in [0, 1] units). */
  exactCopyTolerance?: number;
}

/** AMG Eq. 8: σ_t = −nL2(x̂0) against a display-image {@link ReferenceIndex}. */
export class PixelNl2Similarity implements SimilarityScorer {
  readonly name = 'pixel-nl2';
  readonly metric = 'nl2' as const;
  readonly input = 'x0' as const;
  readonly size: number;
  readonly labels: Int32Array | null;
  readonly k: number;
  readonly alpha: number;
  readonly variant: Nl2Variant;
  private readonly detach: boolean;
  private readonly clip: boolean;
  private readonly exactCopyDirection: 'noisy-sample' | 'none';
  private readonly exactCopyTolerance: number;

  /**
   * @param index the training images in display space (`ReferenceIndex.fromImages`); not owned.
   * @throws InputError `EMPTY_REFERENCE_INDEX`; ConfigError for k > size or a feature index.
   */
  constructor(
    readonly index: ReferenceIndex,
    options: PixelNl2Options = {},
  ) {
    checkIndex(index, 'images', 'PixelNl2Similarity');
    this.size = index.size;
    this.k = checkNeighbours(options.k ?? NL2_DEFAULTS.k, index.size, 'PixelNl2Similarity');
    this.alpha = options.alpha ?? NL2_DEFAULTS.alpha;
    if (!(this.alpha > 0)) throw new ConfigError(`alpha must be > 0, got ${this.alpha}`);
    this.variant = options.variant ?? 'generated-centric';
    this.detach = options.detachDenominator ?? true;
    this.clip = options.clipInput ?? false;
    this.labels = checkLabels(options.labels, index.size);
    this.exactCopyDirection = options.exactCopyDirection ?? 'noisy-sample';
    if (this.exactCopyDirection !== 'noisy-sample' && this.exactCopyDirection !== 'none') {
      throw new ConfigError(`exactCopyDirection must be 'noisy-sample' or 'none', got ${String(this.exactCopyDirection)}`);
    }
    this.exactCopyTolerance = options.exactCopyTolerance ?? 1e-4;
  }

  /** ∂σ/∂x̂0 of sample rows `rows`, evaluated a hair (RMS 1e-4 in display units) from n0 along x_t/√ᾱ − x̂0. */
  private tieBreakGrad(input: tf.Tensor4D, rows: number[], ctx: SimilarityContext): tf.Tensor4D {
    const opts = { k: this.k, alpha: this.alpha, variant: this.variant, detachDenominator: this.detach, eps: 1e-12 };
    const probe = tf.tidy(() => {
      const idx = tf.tensor1d(rows, 'int32');
      const x0 = tf.gather(input, idx);
      const u = tf.div(tf.gather(ctx.sample as tf.Tensor4D, idx), f32sqrt(ctx.alphaProd));
      const d = tf.sub(u, x0);
      const rms = tf.sqrt(tf.add(tf.mean(tf.square(d), [1, 2, 3], true), 1e-30));
      // 2e-4 in model units = 1e-4 in display units.
      return tf.add(x0, tf.mul(tf.div(d, rms), 2e-4));
    });
    try {
      return tf.grad((x: tf.Tensor) => tf.sum(nl2Differentiable(toDisplay(x, this.clip), this.index, opts).sigma))(probe) as tf.Tensor4D;
    } finally {
      probe.dispose();
    }
  }

  /** σ = −nL2 of x̂0 (model space [N,H,W,C]); see {@link SimilarityScorer.evaluate}. */
  evaluate(input: tf.Tensor4D, ctx: SimilarityContext, request: SimilarityRequest = {}): SimilarityEvaluation {
    checkInput(input, this.index.itemShape, this.name);
    const opts = { k: this.k, alpha: this.alpha, variant: this.variant, detachDenominator: this.detach, eps: 1e-12 };
    let nl2Values: number[] = [];
    let nearestIndex: number[] = [];
    let nearestId: ReferenceId[] = [];
    let grad: tf.Tensor4D | null = null;
    if (request.grad) {
      grad = tf.grad((x: tf.Tensor) => {
        const r = nl2Differentiable(toDisplay(x, this.clip), this.index, opts);
        nl2Values = r.nl2;
        nearestIndex = r.nearestIndices;
        nearestId = r.nearestIds;
        return tf.sum(r.sigma);
      })(input) as tf.Tensor4D;
      const exact = nl2Values.map((v, i) => (v < this.exactCopyTolerance ? i : -1)).filter((i) => i >= 0);
      if (exact.length > 0 && this.exactCopyDirection === 'noisy-sample' && ctx.sample) {
        const g = grad;
        const sub = this.tieBreakGrad(input, exact, ctx);
        grad = tf.tidy(() => {
          const map = Array.from({ length: input.shape[0] }, (_, i) => {
            const j = exact.indexOf(i);
            return j >= 0 ? input.shape[0] + j : i;
          });
          return tf.gather(tf.concat([g, sub], 0), tf.tensor1d(map, 'int32')) as tf.Tensor4D;
        });
        tf.dispose([g, sub]);
      }
    } else {
      const d = tf.tidy(() => toDisplay(input, this.clip));
      try {
        const r = nl2(d, this.index, opts);
        nl2Values = r.nl2;
        nearestIndex = r.nearestIndex;
        nearestId = r.nearestId;
      } finally {
        d.dispose();
      }
    }
    let voteIndices: number[][] | null = null;
    if (request.voteK !== undefined) {
      const d = tf.tidy(() => toDisplay(input, this.clip));
      try {
        voteIndices = this.index.search(d, { k: Math.min(request.voteK, this.size), metric: 'rms-l2' }).indices;
      } finally {
        d.dispose();
      }
    }
    return { sigma: nl2Values.map((v) => -v), nl2: nl2Values, nearestIndex, nearestId, grad, voteIndices };
  }

  /** Nothing to release (the index belongs to the caller). */
  dispose(): void {}
}

/** Options of {@link EmbeddingSimilarity}. */
export interface EmbeddingSimilarityOptions {
  /** Clamp x̂0 to [−1, 1] before embedding (default false, as the official SD `cond_fn`). */
  clipInput?: boolean;
  /** Class label per reference (index order), for G_dup. */
  labels?: ArrayLike<number>;
}

/** AMG Eq. 9: σ_t = cos(E(x̂0), E(n0)) against a descriptor {@link ReferenceIndex}. */
export class EmbeddingSimilarity implements SimilarityScorer {
  readonly name: string;
  readonly metric = 'cosine' as const;
  readonly input = 'x0' as const;
  readonly size: number;
  readonly labels: Int32Array | null;
  private readonly clip: boolean;

  /**
   * @param embedder a differentiable descriptor (e.g. an SSCD port) applied to display images
   * @param index the training images' descriptors (`ReferenceIndex.fromFeatures`); not owned
   */
  constructor(
    readonly embedder: SimilarityEmbedder,
    readonly index: ReferenceIndex,
    options: EmbeddingSimilarityOptions = {},
  ) {
    if (!embedder || typeof embedder.embed !== 'function') throw new ConfigError('EmbeddingSimilarity needs an embedder with embed(images)');
    checkIndex(index, 'features', 'EmbeddingSimilarity');
    if (index.dim !== embedder.dim) {
      throw new ShapeError(`the embedder gives ${embedder.dim}-d descriptors but the index holds ${index.dim}-d ones`, {
        expected: index.dim,
        actual: embedder.dim,
      });
    }
    this.name = `embedding-cosine:${embedder.name}`;
    this.size = index.size;
    this.clip = options.clipInput ?? false;
    this.labels = checkLabels(options.labels, index.size);
  }

  /** σ = cos(E(x̂0), E(n0)) (model space input); see {@link SimilarityScorer.evaluate}. */
  evaluate(input: tf.Tensor4D, _ctx: SimilarityContext, request: SimilarityRequest = {}): SimilarityEvaluation {
    checkInput(input, null, this.name);
    let sigma: number[] = [];
    let nearestIndex: number[] = [];
    let nearestId: ReferenceId[] = [];
    let grad: tf.Tensor4D | null = null;
    const score = (x: tf.Tensor): tf.Tensor1D => {
      const e = this.embedder.embed(toDisplay(x, this.clip) as tf.Tensor4D);
      const r = nearestCosineDifferentiable(e, this.index);
      sigma = r.similarity;
      nearestIndex = r.nearestIndex;
      nearestId = r.nearestId;
      return r.sigma;
    };
    if (request.grad) grad = tf.grad((x: tf.Tensor) => tf.sum(score(x)))(input) as tf.Tensor4D;
    else tf.dispose(tf.tidy(() => score(input)));
    let voteIndices: number[][] | null = null;
    if (request.voteK !== undefined) {
      const e = tf.tidy(() => this.embedder.embed(toDisplay(input, this.clip) as tf.Tensor4D));
      try {
        voteIndices = this.index.search(e, { k: Math.min(request.voteK, this.size), metric: 'cosine' }).indices;
      } finally {
        e.dispose();
      }
    }
    return { sigma, nl2: null, nearestIndex, nearestId, grad, voteIndices };
  }

  /** Nothing to release (the index and embedder belong to the caller). */
  dispose(): void {}
}

/** Options of {@link NoisedTrainingNl2Similarity}. */
export interface NoisedTrainingOptions {
  /** ᾱ_t table (the scheduler's `alphasCumprod`). */
  alphasCumprod: Float32Array;
  /** Seed/Generator for the q_sample noise — a stream separate from sampling (default seed 0). */
  generator?: RandomSource;
  /** k (default 50). */
  k?: number;
  /** α (default 0.5). */
  alpha?: number;
  /** Hold the denominator constant in ∇σ (default true, the official `cond_fn`). */
  detachDenominator?: boolean;
  /** Reference ids (default 0..M−1). */
  ids?: readonly ReferenceId[];
  /** Class label per training image, for G_dup. */
  labels?: ArrayLike<number>;
}

/**
 * The official iDDPM similarity (`gaussian_diffusion.get_cache`): σ = −nL2(x_t, q_sample(train, t)),
 * the training set noised to the sample's timestep with fresh noise at every call (one draw per
 * call, shared by the batch — the official code samples one image per batch). Owns a copy of the
 * training images; dispose it.
 */
export class NoisedTrainingNl2Similarity implements SimilarityScorer {
  readonly name = 'noised-training-nl2';
  readonly metric = 'nl2' as const;
  readonly input = 'xt' as const;
  readonly size: number;
  readonly labels: Int32Array | null;
  readonly k: number;
  readonly alpha: number;
  private readonly train: tf.Tensor4D;
  private readonly alphas: Float32Array;
  private readonly generator: Generator;
  private readonly detach: boolean;
  private readonly ids: readonly ReferenceId[] | undefined;

  /**
   * @param trainImages the training images in model space [−1, 1], [M,H,W,C] (copied)
   * @throws InputError `EMPTY_REFERENCE_INDEX` for an empty set; ConfigError for k > M.
   */
  constructor(trainImages: tf.Tensor4D, options: NoisedTrainingOptions) {
    if (!(trainImages instanceof tf.Tensor) || trainImages.rank !== 4) {
      throw new ShapeError('NoisedTrainingNl2Similarity needs training images [M,H,W,C] in model space');
    }
    const m = trainImages.shape[0];
    if (m === 0) throw new InputError('EMPTY_REFERENCE_INDEX', 'NoisedTrainingNl2Similarity: the training set is empty');
    if (!(options?.alphasCumprod instanceof Float32Array)) throw new ConfigError('NoisedTrainingNl2Similarity needs alphasCumprod (scheduler.alphasCumprod)');
    this.size = m;
    this.k = checkNeighbours(options.k ?? NL2_DEFAULTS.k, m, this.name);
    this.alpha = options.alpha ?? NL2_DEFAULTS.alpha;
    if (!(this.alpha > 0)) throw new ConfigError(`alpha must be > 0, got ${this.alpha}`);
    this.alphas = options.alphasCumprod;
    this.generator = toGenerator(options.generator ?? 0);
    this.detach = options.detachDenominator ?? true;
    this.ids = options.ids;
    this.labels = checkLabels(options.labels, m);
    this.train = tf.clone(trainImages);
  }

  /** The noised training set at t as a descriptor index (display units, flattened); caller disposes. */
  private noisedIndex(t: number): ReferenceIndex {
    const [m, h, w, c] = this.train.shape;
    const noised = tf.tidy(() => {
      const z = tf.tensor4d(this.generator.normalArray(m * h * w * c), [m, h, w, c], 'float32');
      const xt = addNoise(this.alphas, this.train, z, t);
      return tf.reshape(tf.mul(tf.add(xt, 1), 0.5), [m, h * w * c]);
    });
    try {
      return ReferenceIndex.fromFeatures(noised, this.ids ? { ids: this.ids } : {});
    } finally {
      noised.dispose();
    }
  }

  /** σ = −nL2(x_t, q_sample(train, t)) with fresh noise; see {@link SimilarityScorer.evaluate}. */
  evaluate(input: tf.Tensor4D, ctx: SimilarityContext, request: SimilarityRequest = {}): SimilarityEvaluation {
    checkInput(input, this.train.shape.slice(1), this.name);
    const index = this.noisedIndex(ctx.timestep);
    try {
      const opts = { k: this.k, alpha: this.alpha, detachDenominator: this.detach, eps: 1e-12 };
      const n = input.shape[0];
      const flat = (x: tf.Tensor): tf.Tensor => tf.reshape(toDisplay(x, false), [n, -1]);
      let nl2Values: number[] = [];
      let nearestIndex: number[] = [];
      let nearestId: ReferenceId[] = [];
      let grad: tf.Tensor4D | null = null;
      if (request.grad) {
        grad = tf.grad((x: tf.Tensor) => {
          const r = nl2Differentiable(flat(x), index, opts);
          nl2Values = r.nl2;
          nearestIndex = r.nearestIndices;
          nearestId = r.nearestIds;
          return tf.sum(r.sigma);
        })(input) as tf.Tensor4D;
      } else {
        const q = tf.tidy(() => flat(input));
        try {
          const r = nl2(q, index, opts);
          nl2Values = r.nl2;
          nearestIndex = r.nearestIndex;
          nearestId = r.nearestId;
        } finally {
          q.dispose();
        }
      }
      let voteIndices: number[][] | null = null;
      if (request.voteK !== undefined) {
        const q = tf.tidy(() => flat(input));
        try {
          voteIndices = index.search(q, { k: Math.min(request.voteK, this.size), metric: 'rms-l2' }).indices;
        } finally {
          q.dispose();
        }
      }
      return { sigma: nl2Values.map((v) => -v), nl2: nl2Values, nearestIndex, nearestId, grad, voteIndices };
    } finally {
      index.dispose();
    }
  }

  /** Releases the copy of the training images. */
  dispose(): void {
    this.train.dispose();
  }
}
