/**
 * Loading TF.js model files from the local file system in Node (tfjs-core's `http`/`browserFiles`
 * handlers do not read paths; `@tensorflow/tfjs-node`'s `file://` handler needs libtensorflow).
 * The handler reads `model.json` and its weight shards (paths relative to model.json, as written
 * by `tensorflowjs_converter`) and hands them to `loadGraphModel` / `loadLayersModel`.
 * @module
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { InputError } from '@diffmem/core';

/** An `IOHandler` that loads `model.json` + weight shards from disk. */
export function fileSystemModelHandler(modelJsonPath: string): tf.io.IOHandler {
  return {
    load: async (): Promise<tf.io.ModelArtifacts> => {
      let text: string;
      try {
        text = await fs.promises.readFile(modelJsonPath, 'utf8');
      } catch (err) {
        throw new InputError('MODEL_NOT_FOUND', `cannot read model file ${modelJsonPath}: ${(err as Error).message}`, {
          file: modelJsonPath,
        });
      }
      let json: tf.io.ModelJSON;
      try {
        json = JSON.parse(text) as tf.io.ModelJSON;
      } catch (err) {
        throw new InputError('MODEL_JSON_INVALID', `${modelJsonPath} is not valid JSON: ${(err as Error).message}`, { file: modelJsonPath });
      }
      if (!json || typeof json !== 'object' || !('modelTopology' in json)) {
        throw new InputError('MODEL_JSON_INVALID', `${modelJsonPath} has no modelTopology: not a TF.js model.json`, { file: modelJsonPath });
      }
      const dir = path.dirname(modelJsonPath);
      return tf.io.getModelArtifactsForJSON(json, async (manifest) => {
        const specs: tf.io.WeightsManifestEntry[] = [];
        const buffers: ArrayBuffer[] = [];
        for (const group of manifest) {
          for (const p of group.paths) {
            const file = path.join(dir, p);
            let buf: Buffer;
            try {
              buf = await fs.promises.readFile(file);
            } catch (err) {
              throw new InputError('MODEL_WEIGHTS_MISSING', `weight shard ${file} named in ${modelJsonPath} is unreadable: ${(err as Error).message}`, {
                file,
              });
            }
            buffers.push(buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength) as ArrayBuffer);
          }
          specs.push(...group.weights);
        }
        return [specs, buffers];
      });
    },
  };
}
