/**
 * An optional {@link Denoiser} hook that conditions on a class-embedding *vector* instead of an
 * integer label — what the GNI baseline needs (Somepalli et al., NeurIPS 2023, `sd_mitigation.py
 * --rand_noise_lam`: add λ·N(0, I) to the conditioning embedding; the integer-label analogue is
 * noise on the class-embedding row).
 *
 * `withClassEmbeddingHook(unet)` adds the hook to core's `UNet2DModel` (diffusers'
 * `class_embed_type = None` + `num_class_embeds`, i.e. an `nn.Embedding` table) without touching
 * its weights: the forward pass reads its parameters through a `ParamSource`, so the table row is
 * swapped for the requested vectors. The table has K rows, so a batch is run in chunks of ≤ K
 * samples (K ≥ 2 for any CFG model), each chunk one forward pass.
 * @module
 */
import * as tf from '@tensorflow/tfjs-core';
import { ConfigError, ShapeError, type Denoiser, type DenoiserInfo } from '@diffmem/core';

/** A denoiser that also accepts explicit class-embedding vectors. */
export interface ClassEmbeddingDenoiser extends Denoiser {
  /** Embedding dimension D. */
  readonly classEmbeddingDim: number;
  /** The class-embedding rows of `ids` [N] → [N, D] (a new tensor). */
  classEmbeddings(ids: tf.Tensor1D): tf.Tensor2D;
  /** ε_θ(x_t, t, e) with one class-embedding vector per sample (`embeddings` [N, D]). Tidy-safe. */
  predictWithClassEmbedding(sample: tf.Tensor4D, timestep: number | tf.Tensor1D, embeddings: tf.Tensor2D): tf.Tensor4D;
}

/** True when `d` implements {@link ClassEmbeddingDenoiser}. */
export function hasClassEmbeddingHook(d: Denoiser): d is ClassEmbeddingDenoiser {
  const c = d as Partial<ClassEmbeddingDenoiser>;
  return typeof c.predictWithClassEmbedding === 'function' && typeof c.classEmbeddings === 'function';
}

/** The parts of core's `UNet2DModel` the hook uses (structural, so any compatible model works). */
export interface UNet2DModelLike extends Denoiser {
  readonly architecture: {
    readonly classEmbedding: unknown;
    forward(p: { get(name: string): tf.Tensor }, sample: tf.Tensor4D, t: tf.Tensor1D, classLabels: tf.Tensor1D | null): tf.Tensor4D;
  };
  readonly variables: ReadonlyMap<string, tf.Tensor>;
}

interface EmbeddingTable {
  readonly weight: string;
  readonly numEmbeddings: number;
  readonly embeddingDim: number;
}

function isEmbeddingTable(m: unknown): m is EmbeddingTable {
  const e = m as Partial<EmbeddingTable> | null;
  return !!e && typeof e.weight === 'string' && typeof e.numEmbeddings === 'number' && typeof e.embeddingDim === 'number';
}

class UNetClassEmbeddingHook implements ClassEmbeddingDenoiser {
  readonly info: DenoiserInfo;
  readonly classEmbeddingDim: number;
  private readonly table: EmbeddingTable;

  constructor(private readonly unet: UNet2DModelLike) {
    const emb = unet.architecture?.classEmbedding;
    if (!isEmbeddingTable(emb)) {
      throw new ConfigError(
        'withClassEmbeddingHook needs a class-conditional UNet2DModel with a class-embedding table (num_class_embeds set, class_embed_type null)',
      );
    }
    this.table = emb;
    this.info = unet.info;
    this.classEmbeddingDim = emb.embeddingDim;
  }

  predict(sample: tf.Tensor4D, timestep: number | tf.Tensor1D, classLabels?: tf.Tensor1D): tf.Tensor4D {
    return this.unet.predict(sample, timestep, classLabels);
  }

  classEmbeddings(ids: tf.Tensor1D): tf.Tensor2D {
    const w = this.unet.variables.get(this.table.weight);
    if (!w) throw new ConfigError(`the model has no parameter ${this.table.weight}`);
    return tf.tidy(() => tf.gather(w, tf.cast(ids, 'int32')) as tf.Tensor2D);
  }

  predictWithClassEmbedding(sample: tf.Tensor4D, timestep: number | tf.Tensor1D, embeddings: tf.Tensor2D): tf.Tensor4D {
    const n = sample.shape[0];
    const K = this.table.numEmbeddings;
    const D = this.classEmbeddingDim;
    if (embeddings.rank !== 2 || embeddings.shape[0] !== n || embeddings.shape[1] !== D) {
      throw new ShapeError(`class embeddings must be [${n}, ${D}], got [${embeddings.shape.join(',')}]`);
    }
    const { sampleSize, inChannels } = this.info;
    if (sample.rank !== 4 || sample.dtype !== 'float32' || sample.shape[1] !== sampleSize || sample.shape[2] !== sampleSize || sample.shape[3] !== inChannels) {
      throw new ShapeError(`sample must be float32 [N,${sampleSize},${sampleSize},${inChannels}], got ${sample.dtype} [${sample.shape.join(',')}]`);
    }
    return tf.tidy(() => {
      const t = typeof timestep === 'number' ? (tf.fill([n], timestep, 'float32') as tf.Tensor1D) : (tf.cast(tf.broadcastTo(tf.reshape(timestep, [-1]), [n]), 'float32') as tf.Tensor1D);
      const parts: tf.Tensor4D[] = [];
      for (let start = 0; start < n; start += K) {
        const m = Math.min(K, n - start);
        const rows = tf.slice(embeddings, [start, 0], [m, D]);
        const table = m === K ? rows : tf.concat([rows, tf.zeros([K - m, D])], 0);
        const source = {
          get: (name: string): tf.Tensor => {
            if (name === this.table.weight) return table;
            const v = this.unet.variables.get(name);
            if (!v) throw new ConfigError(`the model has no parameter ${name}`);
            return v;
          },
        };
        parts.push(
          this.unet.architecture.forward(
            source,
            tf.slice(sample, [start, 0, 0, 0], [m, -1, -1, -1]),
            tf.slice(t, [start], [m]),
            tf.range(0, m, 1, 'int32') as tf.Tensor1D,
          ),
        );
      }
      return parts.length === 1 ? (parts[0] as tf.Tensor4D) : (tf.concat(parts, 0) as tf.Tensor4D);
    });
  }
}

/**
 * Adds the class-embedding hook to a class-conditional `UNet2DModel` (the model is shared, not
 * copied; nothing to dispose). `predictWithClassEmbedding(x, t, classEmbeddings(y))` equals
 * `predict(x, t, y)`.
 * @throws ConfigError for models without a class-embedding table.
 */
export function withClassEmbeddingHook(unet: UNet2DModelLike): ClassEmbeddingDenoiser {
  return new UNetClassEmbeddingHook(unet);
}

/**
 * The denoiser itself when it has the hook, a hooked view of it when it is a UNet2DModel-like
 * model with a class-embedding table, else null.
 */
export function asClassEmbeddingDenoiser(d: Denoiser): ClassEmbeddingDenoiser | null {
  if (hasClassEmbeddingHook(d)) return d;
  const u = d as Partial<UNet2DModelLike>;
  if (u.architecture && typeof u.architecture.forward === 'function' && u.variables instanceof Map && isEmbeddingTable(u.architecture.classEmbedding)) {
    return new UNetClassEmbeddingHook(u as UNet2DModelLike);
  }
  return null;
}
