/**
 * Copy-detection embedders backed by a user's TF.js model (e.g. SSCD `sscd_disc_mixup` converted
 * with `tensorflowjs_converter`), with a named preprocessing preset and input-shape validation.
 *
 * - {@link ModelEmbedder}: wraps anything with `predict(x)` (a `tf.GraphModel`, a
 *   `tf.LayersModel`) or a plain function of tf ops.
 * - {@link GraphModelEmbedder.load} / {@link LayersModelEmbedder.load}: load `model.json` from a
 *   path or URL. They need the optional packages `@tensorflow/tfjs-converter` /
 *   `@tensorflow/tfjs-layers` (same version as tfjs-core), imported only when called.
 *
 * SSCD's models are CC-BY-NC 4.0; diffmem ships no weights.
 * @module
 */
import * as fs from 'node:fs';
import * as tf from '@tensorflow/tfjs-core';
import { ConfigError, InputError, ShapeError, type ImageBatch } from '@diffmem/core';
import { checkInt, checkTensor } from '../internal/checks.js';
import { fileSystemModelHandler } from './model_io.js';
import {
  preprocessImages,
  preprocessOutputSize,
  resolvePreprocess,
  type PreprocessConfig,
  type PreprocessPresetName,
} from './preprocess.js';
import { l2NormalizeRows, type Embedder } from './types.js';

/** The parts of `tf.GraphModel` / `tf.LayersModel` an embedder uses (structural). */
export interface EmbeddingModelLike {
  /** Input signature; `shape` uses -1 or null for free dimensions. */
  readonly inputs?: ReadonlyArray<{ readonly shape?: ReadonlyArray<number | null> | null; readonly name?: string }>;
  predict(x: tf.Tensor, config?: unknown): tf.Tensor | tf.Tensor[] | tf.NamedTensorMap;
  dispose?(): void;
}

/** A model given as a plain function of tf ops: preprocessed NHWC/NCHW batch → descriptors. */
export type EmbeddingFunction = (x: tf.Tensor4D) => tf.Tensor;

/** Options of {@link ModelEmbedder}. */
export interface ModelEmbedderOptions {
  /** Model name reported with scores (e.g. `'sscd_disc_mixup'`). */
  name: string;
  /** Preprocessing preset or recipe (see `preprocess.ts`). */
  preprocess: PreprocessPresetName | PreprocessConfig;
  /** Layout the model consumes (default NHWC; PyTorch exports are usually NCHW). */
  inputLayout?: 'NHWC' | 'NCHW';
  /**
   * Expected model input shape including the batch dimension, in the model's layout (null/-1 =
   * any). Default: read from `model.inputs[0].shape`.
   */
  inputShape?: ReadonlyArray<number | null>;
  /** Which output to use when the model returns several (index or name; default the first). */
  output?: number | string;
  /** Images per forward pass (default 16). */
  batchSize?: number;
  /** Descriptor length, if known (otherwise learned from the first call or a probe). */
  dim?: number;
}

function normShape(s: ReadonlyArray<number | null> | null | undefined): Array<number | null> | null {
  if (!s) return null;
  return s.map((d) => (d === null || d === undefined || d < 0 ? null : d));
}

function fmt(s: ReadonlyArray<number | null>): string {
  return `[${s.map((d) => (d === null ? '*' : String(d))).join(',')}]`;
}

/** A copy-detection embedder over a TF.js model or a function of tf ops. */
export class ModelEmbedder implements Embedder {
  readonly name: string;
  readonly preprocess: PreprocessPresetName | 'custom';
  private readonly config: PreprocessConfig;
  private readonly layout: 'NHWC' | 'NCHW';
  private readonly expected: Array<number | null> | null;
  private readonly batchSize: number;
  private knownDim: number | null;
  private readonly run: (x: tf.Tensor4D) => tf.Tensor;
  private readonly owned: EmbeddingModelLike | null;

  constructor(model: EmbeddingModelLike | EmbeddingFunction, options: ModelEmbedderOptions) {
    if (!options || typeof options.name !== 'string') throw new ConfigError('ModelEmbedder needs options.name');
    this.name = options.name;
    this.config = resolvePreprocess(options.preprocess);
    this.preprocess = typeof options.preprocess === 'string' ? options.preprocess : 'custom';
    this.layout = options.inputLayout ?? 'NHWC';
    if (this.layout !== 'NHWC' && this.layout !== 'NCHW') throw new ConfigError(`inputLayout must be NHWC or NCHW, got ${String(this.layout)}`);
    this.batchSize = checkInt(options.batchSize ?? 16, 'batchSize');
    this.knownDim = options.dim === undefined ? null : checkInt(options.dim, 'dim');
    if (typeof model === 'function') {
      this.run = model;
      this.owned = null;
      this.expected = normShape(options.inputShape);
    } else if (model && typeof model.predict === 'function') {
      const pick = options.output;
      this.run = (x) => {
        const out = model.predict(x);
        if (out instanceof tf.Tensor) return out;
        if (Array.isArray(out)) {
          const i = typeof pick === 'number' ? pick : 0;
          const t = out[i];
          if (!t) throw new ConfigError(`model "${this.name}" returned ${out.length} outputs; output ${String(pick)} does not exist`);
          for (const o of out) if (o !== t) o.dispose();
          return t;
        }
        const map = out as tf.NamedTensorMap;
        const key = typeof pick === 'string' ? pick : Object.keys(map)[0];
        const t = key === undefined ? undefined : map[key];
        if (!t) throw new ConfigError(`model "${this.name}" has no output named ${String(pick)}; outputs: ${Object.keys(map).join(', ')}`);
        for (const [k, o] of Object.entries(map)) if (k !== key) o.dispose();
        return t;
      };
      this.owned = model;
      this.expected = normShape(options.inputShape ?? model.inputs?.[0]?.shape ?? null);
    } else {
      throw new ConfigError('ModelEmbedder needs a model with predict() or a function of tf ops');
    }
    if (this.expected && this.expected.length !== 4) {
      throw new ShapeError(`model "${this.name}" input must be rank 4 (${this.layout}), declared ${fmt(this.expected)}`, {
        expected: this.expected,
      });
    }
  }

  /** Descriptor length (probes the model once with a blank image if not yet known). */
  get dim(): number {
    if (this.knownDim === null) {
      const h = this.expected?.[this.layout === 'NHWC' ? 1 : 2] ?? 256;
      const w = this.expected?.[this.layout === 'NHWC' ? 2 : 3] ?? 256;
      const probe = tf.fill([1, h, w, 3], 0.5) as tf.Tensor4D;
      try {
        this.embed(probe).dispose();
      } finally {
        probe.dispose();
      }
    }
    return this.knownDim as number;
  }

  /**
   * Throws a {@link ShapeError} naming the expected and actual model input when a preprocessed
   * batch of `shape` (already in the model's layout) does not fit the model.
   */
  checkInputShape(shape: readonly number[]): void {
    const e = this.expected;
    if (!e) return;
    const ok = shape.length === e.length && e.every((d, i) => d === null || d === shape[i]);
    if (!ok) {
      throw new ShapeError(
        `model "${this.name}" expects input ${fmt(e)} (${this.layout}) but preprocessing "${this.preprocess}" produced ${fmt(shape)}; ` +
          `choose the preset the model was exported for (or set inputShape)`,
        { model: this.name, expected: e, actual: [...shape], preprocess: this.preprocess },
      );
    }
  }

  /** The model input shape (in its layout) that images of size H×W become after preprocessing. */
  modelInputShape(n: number, height: number, width: number): number[] {
    const [h, w] = preprocessOutputSize(height, width, this.config);
    return this.layout === 'NHWC' ? [n, h, w, 3] : [n, 3, h, w];
  }

  embed(images: ImageBatch<'display'> | tf.Tensor4D): tf.Tensor2D {
    checkTensor(images, 'images');
    if (images.rank !== 4 || (images.shape[3] !== 3 && images.shape[3] !== 1)) {
      throw new ShapeError(`images must be display-space [N,H,W,3|1], got [${images.shape.join(',')}]`, { actual: images.shape });
    }
    const [n, h, w] = images.shape as [number, number, number, number];
    // A model exported with a fixed batch size gets exactly that many images per call (the last
    // batch is padded by repeating its final image, and the padding's outputs dropped).
    const fixedBatch = this.expected?.[0] ?? null;
    const step = fixedBatch ?? this.batchSize;
    // Validate before any work: the shape is known from the preset alone.
    this.checkInputShape(this.modelInputShape(fixedBatch ?? Math.min(n, step), h, w));
    const parts: tf.Tensor2D[] = [];
    try {
      for (let s = 0; s < n; s += step) {
        const b = Math.min(step, n - s);
        parts.push(
          tf.tidy(() => {
            let slice = b === n ? images : tf.slice(images, [s, 0, 0, 0], [b, -1, -1, -1]);
            if (fixedBatch !== null && b < fixedBatch) {
              const last = tf.slice(slice, [b - 1, 0, 0, 0], [1, -1, -1, -1]);
              slice = tf.concat([slice, tf.tile(last, [fixedBatch - b, 1, 1, 1])], 0);
            }
            const rows = slice.shape[0];
            let x = preprocessImages(slice, this.config);
            if (this.layout === 'NCHW') x = tf.transpose(x, [0, 3, 1, 2]);
            const out = this.run(x);
            if (!(out instanceof tf.Tensor) || out.shape[0] !== rows) {
              throw new ShapeError(`model "${this.name}" must return [${rows}, D] descriptors, got ${out instanceof tf.Tensor ? fmt(out.shape) : typeof out}`);
            }
            const flat = tf.reshape(out, [rows, -1]) as tf.Tensor2D;
            return l2NormalizeRows(rows === b ? flat : (tf.slice(flat, [0, 0], [b, -1]) as tf.Tensor2D));
          }),
        );
        const d = (parts[parts.length - 1] as tf.Tensor2D).shape[1];
        if (this.knownDim !== null && d !== this.knownDim) {
          throw new ShapeError(`model "${this.name}" returned ${d}-d descriptors, expected ${this.knownDim}`, { expected: this.knownDim, actual: d });
        }
        this.knownDim = d;
      }
      return parts.length === 1 ? (parts.pop() as tf.Tensor2D) : (tf.concat(parts, 0) as tf.Tensor2D);
    } finally {
      for (const p of parts) p.dispose();
    }
  }

  /** Disposes the wrapped model (if it has `dispose`). */
  dispose(): void {
    this.owned?.dispose?.();
  }
}

// A variable specifier keeps tsc and bundlers from resolving optional packages at build time.
const optionalImport = (specifier: string): Promise<unknown> => import(specifier);

async function importOptional<T>(pkg: string, caller: string): Promise<T> {
  try {
    return (await optionalImport(pkg)) as T;
  } catch (err) {
    const msg = err instanceof Error ? err.message : String(err);
    if (/Cannot find (module|package)|ERR_MODULE_NOT_FOUND/.test(msg)) {
      throw new InputError(
        'MISSING_DEPENDENCY',
        `${caller} needs the optional package ${pkg}, which is not installed: npm install ${pkg}@${tf.version_core}`,
        { package: pkg },
      );
    }
    throw err;
  }
}

function handlerFor(pathOrUrl: string | tf.io.IOHandler): string | tf.io.IOHandler {
  if (typeof pathOrUrl !== 'string') return pathOrUrl;
  if (/^https?:\/\//.test(pathOrUrl)) return pathOrUrl;
  const p = pathOrUrl.startsWith('file://') ? new URL(pathOrUrl).pathname : pathOrUrl;
  const file = fs.existsSync(p) && fs.statSync(p).isDirectory() ? `${p.replace(/\/$/, '')}/model.json` : p;
  return fileSystemModelHandler(file);
}

/** An embedder over a TF.js graph model (`tensorflowjs_converter --output_format tfjs_graph_model`). */
export class GraphModelEmbedder extends ModelEmbedder {
  /**
   * Loads `model.json` from a local path (file or directory), an http(s) URL or an IOHandler.
   * Needs `@tensorflow/tfjs-converter`.
   */
  static async load(pathOrUrl: string | tf.io.IOHandler, options: ModelEmbedderOptions): Promise<GraphModelEmbedder> {
    const mod = await importOptional<{ loadGraphModel(h: string | tf.io.IOHandler): Promise<EmbeddingModelLike> }>(
      '@tensorflow/tfjs-converter',
      'GraphModelEmbedder.load',
    );
    return new GraphModelEmbedder(await mod.loadGraphModel(handlerFor(pathOrUrl)), options);
  }
}

/** An embedder over a TF.js layers model (Keras export). */
export class LayersModelEmbedder extends ModelEmbedder {
  /** Loads a layers `model.json` (path, URL or IOHandler). Needs `@tensorflow/tfjs-layers`. */
  static async load(pathOrUrl: string | tf.io.IOHandler, options: ModelEmbedderOptions): Promise<LayersModelEmbedder> {
    const mod = await importOptional<{ loadLayersModel(h: string | tf.io.IOHandler): Promise<EmbeddingModelLike> }>(
      '@tensorflow/tfjs-layers',
      'LayersModelEmbedder.load',
    );
    return new LayersModelEmbedder(await mod.loadLayersModel(handlerFor(pathOrUrl)), options);
  }
}
