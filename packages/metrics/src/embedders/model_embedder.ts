/**
 * Copy-detection embedders backed by a user's TF.js model (e.g. SSCD `sscd_disc_mixup` converted
 * with `tensorflowjs_converter`), with a named preprocessing preset and input-shape validation.
 *
 * - {@link ModelEmbedder}: wraps anything with `predict(x)` (a `tf.GraphModel`, a
 *   `tf.LayersModel`) or a plain function of tf ops.
 * - {@link GraphModelEmbedder.load} / {@link LayersModelEmbedder.load}: load `model.json` from a
 *   local path (read with `fs`, no tfjs-node), a URL or an IOHandler, through
 *   `@tensorflow/tfjs-converter` / `@tensorflow/tfjs-layers` (same version as tfjs-core),
 *   imported only when called so that importing the package stays light.
 *
 * SSCD's models are CC-BY-NC 4.0; diffmem ships no weights.
 * @module
 */
import * as tf from '@tensorflow/tfjs-core';
import { ConfigError, InputError, ShapeError, type ImageBatch } from '@diffmem/core';
import { checkFiniteRows, checkInt, checkTensor } from '../internal/checks.js';
import { fileSystemModelHandler, withModelFormatCheck, type TfjsModelFormat } from './model_io.js';
import {
  preprocessImages,
  preprocessOutputSize,
  resolvePreprocess,
  type PreprocessConfig,
  type PreprocessPresetName,
} from './preprocess.js';
import { l2NormalizeRows, type Embedder } from './types.js';

/** A tensor's declared shape in a model's signature (`shape` uses -1 or null for free dimensions). */
export interface DeclaredTensorInfo {
  readonly shape?: ReadonlyArray<number | null> | null;
  readonly name?: string;
}

/** The parts of `tf.GraphModel` / `tf.LayersModel` an embedder uses (structural). */
export interface EmbeddingModelLike {
  /** Input signature (a graph model's Placeholder shapes, a layers model's input layers). */
  readonly inputs?: ReadonlyArray<DeclaredTensorInfo>;
  /** Output signature, when the model declares one (layers models always do). */
  readonly outputs?: ReadonlyArray<DeclaredTensorInfo>;
  /** A graph model's SavedModel signature (`{inputs, outputs}` of `{name, tensorShape}`), if any. */
  readonly modelSignature?: unknown;
  predict(x: tf.Tensor, config?: unknown): tf.Tensor | tf.Tensor[] | tf.NamedTensorMap;
  dispose?(): unknown;
}

/** A model given as a plain function of tf ops: preprocessed NHWC/NCHW batch → descriptors. */
export type EmbeddingFunction = (x: tf.Tensor4D) => tf.Tensor;

/** Options of {@link ModelEmbedder}. */
export interface ModelEmbedderOptions {
  /** Model name reported with scores (e.g. `'sscd_disc_mixup'`). */
  name: string;
  /** Preprocessing preset or recipe (see `preprocess.ts`). */
  preprocess: PreprocessPresetName | PreprocessConfig;
  /**
   * Layout the model consumes. Default `'auto'`: NCHW when the declared input shape is
   * [*,3,H,W] with W ≠ 3 (PyTorch → ONNX → TF exports), NHWC otherwise.
   */
  inputLayout?: 'NHWC' | 'NCHW' | 'auto';
  /**
   * Expected model input shape including the batch dimension, in the model's layout (null/-1 =
   * any). Default: read from `model.inputs[0].shape`, else from the graph model's signature.
   */
  inputShape?: ReadonlyArray<number | null>;
  /** Which output to use when the model returns several (index or name; default the first). */
  output?: number | string;
  /** Images per forward pass (default 16). */
  batchSize?: number;
  /** Descriptor length, if known (otherwise read from the declared output, the first call or a probe). */
  dim?: number;
  /**
   * Reject images and descriptors holding NaN/±Inf with a `NonFiniteError` (default true; reads
   * the batch back synchronously once per call).
   */
  checkFinite?: boolean;
}

function normShape(s: ReadonlyArray<number | null> | null | undefined): Array<number | null> | null {
  if (!s) return null;
  return s.map((d) => (d === null || d === undefined || d < 0 ? null : d));
}

function fmt(s: ReadonlyArray<number | null>): string {
  return `[${s.map((d) => (d === null ? '*' : String(d))).join(',')}]`;
}

/**
 * Reads a shape from a graph model's SavedModel signature (`tensorflowjs_converter` writes
 * `{inputs|outputs: {key: {name, tensorShape: {dim: [{size: "-1"}, …]}}}}`); `key` picks an
 * entry by key or tensor name (default the first).
 */
function signatureShape(signature: unknown, side: 'inputs' | 'outputs', key?: number | string): Array<number | null> | null {
  const entries = (signature as Record<string, unknown> | null | undefined)?.[side];
  if (!entries || typeof entries !== 'object') return null;
  type Info = { name?: string; tensorShape?: { dim?: Array<{ size?: number | string }>; unknownRank?: boolean } };
  const all = Object.entries(entries as Record<string, Info>);
  const hit =
    typeof key === 'string'
      ? all.find(([k, v]) => k === key || v?.name === key || v?.name === `${key}:0`)
      : all[typeof key === 'number' ? key : 0];
  const ts = hit?.[1]?.tensorShape;
  if (!ts || ts.unknownRank || !Array.isArray(ts.dim)) return null;
  return ts.dim.map((d) => {
    const v = typeof d?.size === 'number' ? d.size : parseInt(String(d?.size ?? '-1'), 10);
    return Number.isFinite(v) && v >= 0 ? v : null;
  });
}

/** The model input [h, w] a recipe produces whatever the image size (null: depends on it). */
function fixedPreprocessSize(c: PreprocessConfig): [number, number] | null {
  if (c.centerCrop) return [c.centerCrop[0], c.centerCrop[1]];
  if (c.resize?.kind === 'exact') return [c.resize.height, c.resize.width];
  return null;
}

/**
 * A copy-detection embedder over a TF.js model or a function of tf ops: display images →
 * preset preprocessing → model → L2-normalised rows (the descriptor convention of SSCD, used by
 * Somepalli et al. 2023's replication score and AMG Eq. 9).
 *
 * Everything checkable without running the model is checked first: the declared input shape
 * against what the preset produces (at construction for fixed-size presets, per call for the
 * short-edge `sscd` preset), the declared output rank, and NaN/±Inf in the images.
 */
export class ModelEmbedder implements Embedder {
  readonly name: string;
  readonly preprocess: PreprocessPresetName | 'custom';
  /** The layout the model consumes (resolved from `'auto'`). */
  readonly inputLayout: 'NHWC' | 'NCHW';
  /** The declared model input shape (null entries are free), or null if the model declares none. */
  readonly inputShape: ReadonlyArray<number | null> | null;
  private readonly config: PreprocessConfig;
  private readonly batchSize: number;
  private readonly checkFinite: boolean;
  private knownDim: number | null;
  private readonly run: (x: tf.Tensor4D) => tf.Tensor;
  private readonly owned: EmbeddingModelLike | null;

  constructor(model: EmbeddingModelLike | EmbeddingFunction, options: ModelEmbedderOptions) {
    if (!options || typeof options.name !== 'string') throw new ConfigError('ModelEmbedder needs options.name');
    this.name = options.name;
    this.config = resolvePreprocess(options.preprocess);
    this.preprocess = typeof options.preprocess === 'string' ? options.preprocess : 'custom';
    const layout = options.inputLayout ?? 'auto';
    if (layout !== 'NHWC' && layout !== 'NCHW' && layout !== 'auto') {
      throw new ConfigError(`inputLayout must be NHWC, NCHW or auto, got ${String(layout)}`);
    }
    this.batchSize = checkInt(options.batchSize ?? 16, 'batchSize');
    this.knownDim = options.dim === undefined ? null : checkInt(options.dim, 'dim');
    this.checkFinite = options.checkFinite ?? true;
    let declaredOut: Array<number | null> | null = null;
    if (typeof model === 'function') {
      this.run = model;
      this.owned = null;
      this.inputShape = normShape(options.inputShape);
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
      this.inputShape = normShape(options.inputShape ?? model.inputs?.[0]?.shape ?? signatureShape(model.modelSignature, 'inputs'));
      const outs = model.outputs;
      const info = typeof pick === 'string' ? outs?.find((o) => o.name === pick || o.name === `${pick}:0`) : outs?.[pick ?? 0];
      declaredOut = normShape(info?.shape ?? signatureShape(model.modelSignature, 'outputs', pick));
    } else {
      throw new ConfigError('ModelEmbedder needs a model with predict() or a function of tf ops');
    }
    const e = this.inputShape;
    if (e && e.length !== 4) {
      throw new ShapeError(`model "${this.name}" input must be rank 4 (NHWC or NCHW), declared ${fmt(e)}`, {
        model: this.name,
        expected: e,
      });
    }
    this.inputLayout = layout !== 'auto' ? layout : e && e[1] === 3 && e[3] !== 3 ? 'NCHW' : 'NHWC';
    if (declaredOut) {
      if (declaredOut.length !== 2) {
        throw new ShapeError(
          `model "${this.name}" declares output ${fmt(declaredOut)}, but an embedder needs [N, D] descriptors ` +
            `(add global pooling/flatten, or pick another output with options.output)`,
          { model: this.name, output: declaredOut },
        );
      }
      const d = declaredOut[1] ?? null;
      if (d !== null && this.knownDim !== null && d !== this.knownDim) {
        throw new ShapeError(`model "${this.name}" declares ${d}-d descriptors but options.dim is ${this.knownDim}`, {
          model: this.name,
          expected: this.knownDim,
          actual: d,
        });
      }
      if (d !== null) this.knownDim = d;
    }
    // Presets with a fixed output size (squash, centre crop) are checked now, at load time.
    const fixed = fixedPreprocessSize(this.config);
    if (fixed) {
      const [h, w] = fixed;
      this.checkInputShape(this.inputLayout === 'NHWC' ? [null, h, w, 3] : [null, 3, h, w]);
    }
  }

  /** Descriptor length (probes the model once with a blank image if not yet known). */
  get dim(): number {
    if (this.knownDim === null) {
      const nhwc = this.inputLayout === 'NHWC';
      const h = this.inputShape?.[nhwc ? 1 : 2] ?? 256;
      const w = this.inputShape?.[nhwc ? 2 : 3] ?? 256;
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
   * batch of `shape` (in the model's layout; null = any) does not fit the model.
   */
  checkInputShape(shape: ReadonlyArray<number | null>): void {
    const e = this.inputShape;
    if (!e) return;
    const ok = shape.length === e.length && e.every((d, i) => d === null || shape[i] === null || d === shape[i]);
    if (!ok) {
      throw new ShapeError(
        `model "${this.name}" expects input ${fmt(e)} (${this.inputLayout}) but preprocessing "${this.preprocess}" produced ${fmt(shape)}; ` +
          `choose the preset the model was exported for (or set inputShape)`,
        { model: this.name, expected: [...e], actual: [...shape], preprocess: this.preprocess },
      );
    }
  }

  /** The model input shape (in its layout) that images of size H×W become after preprocessing. */
  modelInputShape(n: number, height: number, width: number): number[] {
    const [h, w] = preprocessOutputSize(height, width, this.config);
    return this.inputLayout === 'NHWC' ? [n, h, w, 3] : [n, 3, h, w];
  }

  embed(images: ImageBatch<'display'> | tf.Tensor4D): tf.Tensor2D {
    checkTensor(images, 'images');
    if (images.rank !== 4 || (images.shape[3] !== 3 && images.shape[3] !== 1)) {
      throw new ShapeError(`images must be display-space [N,H,W,3|1], got [${images.shape.join(',')}]`, { actual: images.shape });
    }
    const [n, h, w, c] = images.shape as [number, number, number, number];
    // A model exported with a fixed batch size gets exactly that many images per call (the last
    // batch is padded by repeating its final image, and the padding's outputs dropped).
    const fixedBatch = this.inputShape?.[0] ?? null;
    const step = fixedBatch ?? this.batchSize;
    // Validate before any work: the shape is known from the preset alone.
    this.checkInputShape(this.modelInputShape(fixedBatch ?? Math.min(n, step), h, w));
    if (this.checkFinite) checkFiniteRows(images.dataSync(), h * w * c, 'images');
    const parts: tf.Tensor2D[] = [];
    let result: tf.Tensor2D | null = null;
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
            if (this.inputLayout === 'NCHW') x = tf.transpose(x, [0, 3, 1, 2]);
            const out = this.run(x);
            if (!(out instanceof tf.Tensor) || out.rank !== 2 || out.shape[0] !== rows) {
              throw new ShapeError(
                `model "${this.name}" must return [${rows}, D] descriptors for a batch of ${rows}, got ` +
                  `${out instanceof tf.Tensor ? fmt(out.shape) : typeof out} (add global pooling/flatten, or pick another output)`,
                { model: this.name, actual: out instanceof tf.Tensor ? out.shape : null },
              );
            }
            const flat = out as tf.Tensor2D;
            return l2NormalizeRows(rows === b ? flat : (tf.slice(flat, [0, 0], [b, -1]) as tf.Tensor2D));
          }),
        );
        const d = (parts[parts.length - 1] as tf.Tensor2D).shape[1];
        if (this.knownDim !== null && d !== this.knownDim) {
          throw new ShapeError(`model "${this.name}" returned ${d}-d descriptors, expected ${this.knownDim}`, { expected: this.knownDim, actual: d });
        }
        this.knownDim = d;
      }
      result = parts.length === 1 ? (parts.pop() as tf.Tensor2D) : (tf.concat(parts, 0) as tf.Tensor2D);
      if (this.checkFinite) checkFiniteRows(result.dataSync(), result.shape[1], `descriptors of model "${this.name}"`);
      const out = result;
      result = null;
      return out;
    } finally {
      for (const p of parts) p.dispose();
      result?.dispose();
    }
  }

  /** Disposes the wrapped model (if it has `dispose`). */
  dispose(): void {
    this.owned?.dispose?.();
  }
}

function isMissingModule(err: unknown): boolean {
  const msg = err instanceof Error ? err.message : String(err);
  return /Cannot find (module|package)|ERR_MODULE_NOT_FOUND/.test(msg);
}

function missingDependency(pkg: string, caller: string): InputError {
  return new InputError('MISSING_DEPENDENCY', `${caller} needs ${pkg}, which is not installed: npm install ${pkg}@${tf.version_core}`, {
    package: pkg,
  });
}

/** The IOHandler for a location: local path / directory / `file://` URL, http(s) URL or handler, format-checked. */
function modelHandler(location: string | tf.io.IOHandler, format: TfjsModelFormat): tf.io.IOHandler {
  if (typeof location !== 'string') return withModelFormatCheck(location, format, 'the IOHandler');
  if (/^https?:\/\//i.test(location)) return withModelFormatCheck(tf.io.http(location), format, location);
  return fileSystemModelHandler(location, { expectedFormat: format });
}

/** Builds the embedder, disposing the loaded model's weights if its signature is rejected. */
function wrapLoaded<T>(model: EmbeddingModelLike, make: () => T): T {
  try {
    return make();
  } catch (err) {
    model.dispose?.();
    throw err;
  }
}

/**
 * An embedder over a TF.js graph model (`tensorflowjs_converter --output_format
 * tfjs_graph_model`, e.g. SSCD converted via ONNX and a TF SavedModel; see docs/metrics.md).
 */
export class GraphModelEmbedder extends ModelEmbedder {
  /**
   * Loads a graph-model `model.json` from a local path (file, directory or `file://` URL, read
   * with {@link fileSystemModelHandler} — no tfjs-node needed), an http(s) URL or an IOHandler,
   * with `@tensorflow/tfjs-converter`'s `loadGraphModel`. A layers model is rejected with
   * `InputError` `MODEL_FORMAT_MISMATCH`; a declared input that the preset cannot produce with a
   * `ShapeError`, before anything runs.
   */
  static async load(location: string | tf.io.IOHandler, options: ModelEmbedderOptions): Promise<GraphModelEmbedder> {
    let converter: typeof import('@tensorflow/tfjs-converter');
    try {
      converter = await import('@tensorflow/tfjs-converter');
    } catch (err) {
      throw isMissingModule(err) ? missingDependency('@tensorflow/tfjs-converter', 'GraphModelEmbedder.load') : err;
    }
    const model = await converter.loadGraphModel(modelHandler(location, 'graph-model'));
    return wrapLoaded(model, () => new GraphModelEmbedder(model, options));
  }
}

/** An embedder over a TF.js layers model (a Keras export, or a model saved with `model.save`). */
export class LayersModelEmbedder extends ModelEmbedder {
  /**
   * Loads a layers-model `model.json` (path, directory, `file://` or http(s) URL, or IOHandler)
   * with `@tensorflow/tfjs-layers`' `loadLayersModel`. A graph model is rejected with
   * `InputError` `MODEL_FORMAT_MISMATCH`.
   */
  static async load(location: string | tf.io.IOHandler, options: ModelEmbedderOptions): Promise<LayersModelEmbedder> {
    let layers: typeof import('@tensorflow/tfjs-layers');
    try {
      layers = await import('@tensorflow/tfjs-layers');
    } catch (err) {
      throw isMissingModule(err) ? missingDependency('@tensorflow/tfjs-layers', 'LayersModelEmbedder.load') : err;
    }
    const model = await layers.loadLayersModel(modelHandler(location, 'layers-model'));
    return wrapLoaded(model, () => new LayersModelEmbedder(model, options));
  }
}
