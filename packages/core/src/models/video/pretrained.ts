/**
 * VideoUNetModel folders, in the layout of diffusers' `save_pretrained` (the file names of core's
 * UNet2DModel folders): `config.json` (`_class_name: "VideoUNetModel"`) and
 * `diffusion_pytorch_model.safetensors` (torch layout, written with core's safetensors writer).
 * @module
 */
import { mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ConfigError, InputError } from '../../errors.js';
import { loadSafetensorsFile, writeFileAtomic } from '../../safetensors/files.js';
import { writeSafetensors } from '../../safetensors/safetensors.js';
import { CONFIG_NAME, SAFETENSORS_WEIGHTS_NAME } from '../pretrained.js';
import { VideoUNetModel } from './video_unet.js';

/** Options of {@link saveVideoUNetToFolder}. */
export interface SaveVideoUNetOptions {
  /** Weight dtype in the file (default F32; F16/BF16 halve the size). */
  dtype?: 'F32' | 'F16' | 'BF16';
}

/**
 * Writes `config.json` and `diffusion_pytorch_model.safetensors` into `dir` (created if needed).
 * The weights file is written before the config, each atomically, so a folder with a config always
 * has complete weights.
 */
export async function saveVideoUNetToFolder(model: VideoUNetModel, dir: string, options: SaveVideoUNetOptions = {}): Promise<void> {
  const dtype = options.dtype ?? 'F32';
  if (!['F32', 'F16', 'BF16'].includes(dtype)) throw new ConfigError(`dtype must be F32, F16 or BF16, got ${JSON.stringify(dtype)}`, { field: 'dtype' });
  const state = model.stateDict();
  if (dtype !== 'F32') for (const t of state.values()) t.dtype = dtype;
  await mkdir(dir, { recursive: true });
  await writeFileAtomic(join(dir, SAFETENSORS_WEIGHTS_NAME), writeSafetensors(state, { format: 'pt' }));
  await writeFileAtomic(join(dir, CONFIG_NAME), `${JSON.stringify(model.toJSON(), null, 2)}\n`);
}

/**
 * Loads a folder written by {@link saveVideoUNetToFolder} (F16/BF16 weights are widened to
 * float32), with strict name and shape checks.
 * @throws InputError (files missing or unreadable), ConfigError, SafetensorsError, WeightsError.
 */
export async function loadVideoUNetFromFolder(dir: string): Promise<VideoUNetModel> {
  const configPath = join(dir, CONFIG_NAME);
  let text: string;
  try {
    text = await readFile(configPath, 'utf8');
  } catch (e) {
    throw new InputError('MODEL_NOT_FOUND', `cannot read ${configPath}: ${(e as Error).message}`, { dir });
  }
  let config: unknown;
  try {
    config = JSON.parse(text);
  } catch (e) {
    throw new ConfigError(`${configPath} is not valid JSON: ${(e as Error).message}`, { path: configPath });
  }
  const weightsPath = join(dir, SAFETENSORS_WEIGHTS_NAME);
  let tensors;
  try {
    tensors = (await loadSafetensorsFile(weightsPath)).tensors;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') throw new InputError('WEIGHTS_NOT_FOUND', `no ${SAFETENSORS_WEIGHTS_NAME} in ${dir}`, { dir });
    throw e;
  }
  return VideoUNetModel.fromWeights(config, tensors);
}
