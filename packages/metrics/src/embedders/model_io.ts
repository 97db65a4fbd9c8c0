/**
 * Loading TF.js model files from the local file system in Node without `@tensorflow/tfjs-node`
 * (tfjs-core's `http`/`browserFiles` handlers do not read paths, and tfjs-node's `file://`
 * handler needs libtensorflow). {@link fileSystemModelHandler} reads `model.json` and the weight
 * shards its `weightsManifest` names (paths relative to model.json, as `tensorflowjs_converter`
 * and `tf.io` save handlers write them), checks them, and hands the artifacts to
 * `loadGraphModel` / `loadLayersModel`.
 *
 * Every failure is an `InputError` with one of the {@link ModelFileErrorCode} codes, naming the
 * file: a missing model.json, invalid JSON, a missing shard, shards whose byte length does not
 * match the manifest (truncated download, shard of another model), or a model of the other format
 * (a layers model given to a graph loader and vice versa).
 * @module
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as tf from '@tensorflow/tfjs-core';
import { InputError } from '@diffmem/core';

/** The two TF.js model formats (the `format` field of model.json). */
export type TfjsModelFormat = 'graph-model' | 'layers-model';

/** The `InputError` codes of model loading. */
export type ModelFileErrorCode =
  | 'MODEL_NOT_FOUND'
  | 'MODEL_JSON_INVALID'
  | 'MODEL_WEIGHTS_MISSING'
  | 'MODEL_WEIGHTS_SIZE'
  | 'MODEL_FORMAT_MISMATCH';

/** Options of {@link fileSystemModelHandler}. */
export interface FileSystemModelHandlerOptions {
  /**
   * Rejects a model.json of the other format with `MODEL_FORMAT_MISMATCH` before any shard is
   * read (`loadGraphModel` would otherwise fail on a Keras topology with a TypeError).
   */
  expectedFormat?: TfjsModelFormat;
}

function modelError(code: ModelFileErrorCode, message: string, details: Record<string, unknown>): InputError {
  return new InputError(code, message, details);
}

/**
 * The format of a parsed model.json (or of loaded `ModelArtifacts`): its `format` field when it
 * names one, else inferred from the topology — a TensorFlow `GraphDef` has `node`/`versions`,
 * a Keras topology has `class_name`/`model_config`. Null when neither applies.
 */
export function detectModelFormat(json: { format?: unknown; modelTopology?: unknown }): TfjsModelFormat | null {
  if (json.format === 'graph-model' || json.format === 'layers-model') return json.format;
  const topo = json.modelTopology;
  if (!topo || typeof topo !== 'object') return null;
  if (Array.isArray((topo as { node?: unknown }).node) || 'versions' in topo) return 'graph-model';
  if ('class_name' in topo || 'model_config' in topo) return 'layers-model';
  return null;
}

const FORMAT_HINT: Record<TfjsModelFormat, string> = {
  'graph-model': 'a TF.js graph model (tensorflowjs_converter --output_format tfjs_graph_model; load with GraphModelEmbedder.load / loadGraphModel)',
  'layers-model': 'a TF.js layers model (a Keras topology; load with LayersModelEmbedder.load / loadLayersModel)',
};

/**
 * Throws `InputError` `MODEL_FORMAT_MISMATCH` when `json` (model.json or artifacts) is of the
 * other format than `expected`; a model.json whose format cannot be determined passes (the
 * loader reports what it cannot parse).
 */
export function assertModelFormat(
  json: { format?: unknown; modelTopology?: unknown },
  expected: TfjsModelFormat,
  source: string,
): void {
  const actual = detectModelFormat(json);
  if (actual !== null && actual !== expected) {
    throw modelError(
      'MODEL_FORMAT_MISMATCH',
      `${source} is ${FORMAT_HINT[actual]}, but a ${expected === 'graph-model' ? 'graph' : 'layers'} model was expected`,
      { file: source, expected, actual },
    );
  }
}

const DTYPE_BYTES: Readonly<Record<string, number>> = { float32: 4, int32: 4, bool: 1, complex64: 8, uint8: 1, uint16: 2, float16: 2 };

/**
 * Bytes one manifest entry occupies in the weight shards: elements × the stored dtype's size
 * (the quantised dtype when `quantization` is set, as `tf.io.decodeWeights` reads it). Null for
 * `string` weights, whose encoding is variable-length.
 */
export function weightSpecByteLength(spec: tf.io.WeightsManifestEntry): number | null {
  const stored = spec.quantization?.dtype ?? spec.dtype;
  if (stored === 'string') return null;
  const bytes = DTYPE_BYTES[stored];
  if (bytes === undefined) {
    throw modelError('MODEL_JSON_INVALID', `weight "${spec.name}" has unsupported dtype "${String(stored)}"`, { weight: spec.name, dtype: stored });
  }
  const shape = Array.isArray(spec.shape) ? spec.shape : [];
  return shape.reduce((a, b) => a * b, 1) * bytes;
}

/**
 * Resolves a model location to its model.json path: a directory means `<dir>/model.json`, and a
 * `file://` URL is converted to a path.
 */
export function resolveModelJsonPath(location: string): string {
  const p = location.startsWith('file://') ? fileURLToPath(location) : location;
  try {
    if (fs.statSync(p).isDirectory()) return path.join(p, 'model.json');
  } catch {
    // missing: reported by load() with the path the user gave
  }
  return p;
}

function validateManifest(json: tf.io.ModelJSON, file: string): tf.io.WeightsManifestConfig {
  const manifest: unknown = json.weightsManifest ?? [];
  const bad = (why: string): InputError => modelError('MODEL_JSON_INVALID', `${file}: weightsManifest ${why}`, { file });
  if (!Array.isArray(manifest)) throw bad('must be an array of {paths, weights} groups');
  manifest.forEach((g: unknown, i) => {
    const group = g as { paths?: unknown; weights?: unknown };
    if (!group || !Array.isArray(group.paths) || !group.paths.every((p) => typeof p === 'string')) throw bad(`group ${i} has no paths list`);
    if (!Array.isArray(group.weights)) throw bad(`group ${i} has no weights list`);
    for (const w of group.weights as Array<{ name?: unknown; shape?: unknown; dtype?: unknown }>) {
      if (!w || typeof w.name !== 'string' || !Array.isArray(w.shape) || typeof w.dtype !== 'string') {
        throw bad(`group ${i} has an entry without name/shape/dtype: ${JSON.stringify(w)}`);
      }
    }
  });
  return manifest as tf.io.WeightsManifestConfig;
}

/**
 * An `IOHandler` that loads a TF.js `model.json` (graph or layers format) and its weight shards
 * from disk with `fs`. `location` is the model.json path, its directory, or a `file://` URL.
 *
 * Shards are resolved relative to model.json's directory and concatenated group by group, in
 * manifest order — the byte layout `tf.io.decodeWeights` expects. Each group's shards must hold
 * exactly the bytes its entries need ({@link weightSpecByteLength}); a short or long shard is
 * `MODEL_WEIGHTS_SIZE` (decoding would otherwise read the wrong bytes silently or fail with a
 * RangeError).
 */
export function fileSystemModelHandler(location: string, options: FileSystemModelHandlerOptions = {}): tf.io.IOHandler {
  return {
    load: async (): Promise<tf.io.ModelArtifacts> => {
      const file = resolveModelJsonPath(location);
      let text: string;
      try {
        text = await fs.promises.readFile(file, 'utf8');
      } catch (err) {
        throw modelError('MODEL_NOT_FOUND', `cannot read model file ${file}: ${(err as Error).message}`, { file });
      }
      let json: tf.io.ModelJSON;
      try {
        json = JSON.parse(text) as tf.io.ModelJSON;
      } catch (err) {
        throw modelError('MODEL_JSON_INVALID', `${file} is not valid JSON: ${(err as Error).message}`, { file });
      }
      if (!json || typeof json !== 'object' || !json.modelTopology || typeof json.modelTopology !== 'object') {
        throw modelError('MODEL_JSON_INVALID', `${file} has no modelTopology object: not a TF.js model.json`, { file });
      }
      if (options.expectedFormat) assertModelFormat(json, options.expectedFormat, file);
      const manifest = validateManifest(json, file);
      const dir = path.dirname(file);
      return tf.io.getModelArtifactsForJSON(json, async () => {
        const specs: tf.io.WeightsManifestEntry[] = [];
        const buffers: ArrayBuffer[] = [];
        for (const [gi, group] of manifest.entries()) {
          const shards = await Promise.all(
            group.paths.map(async (p) => {
              const shard = path.resolve(dir, p);
              try {
                const buf = await fs.promises.readFile(shard);
                return { shard, data: buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength) as ArrayBuffer };
              } catch (err) {
                throw modelError('MODEL_WEIGHTS_MISSING', `weight shard ${shard} named in ${file} is unreadable: ${(err as Error).message}`, {
                  file,
                  shard,
                  group: gi,
                });
              }
            }),
          );
          const lengths = group.weights.map(weightSpecByteLength);
          if (lengths.every((l): l is number => l !== null)) {
            const expected = lengths.reduce((a, b) => a + b, 0);
            const actual = shards.reduce((a, s) => a + s.data.byteLength, 0);
            if (expected !== actual) {
              const sizes = shards.map((s) => `${path.basename(s.shard)} ${s.data.byteLength} B`).join(', ');
              throw modelError(
                'MODEL_WEIGHTS_SIZE',
                `weight group ${gi} of ${file} needs ${expected} bytes for its ${group.weights.length} weight(s) but its shards hold ${actual} (${sizes}): ` +
                  `a shard is truncated, padded or belongs to another model`,
                { file, group: gi, shards: shards.map((s) => s.shard), expectedBytes: expected, actualBytes: actual },
              );
            }
          }
          specs.push(...group.weights);
          for (const s of shards) buffers.push(s.data);
        }
        return [specs, buffers];
      });
    },
  };
}

/**
 * Wraps any `IOHandler` (an http handler, `tf.io.fromMemory`, …) so that loading artifacts of
 * the other format throws `MODEL_FORMAT_MISMATCH` instead of an opaque parse error.
 */
export function withModelFormatCheck(handler: tf.io.IOHandler, expected: TfjsModelFormat, source = 'the model'): tf.io.IOHandler {
  const load = handler.load;
  if (typeof load !== 'function') {
    throw modelError('MODEL_JSON_INVALID', `${source}: the IOHandler has no load() method`, { file: source });
  }
  return {
    ...handler,
    load: async () => {
      const artifacts = await load.call(handler);
      assertModelFormat(artifacts, expected, source);
      return artifacts;
    },
  };
}
