/**
 * UNet2DModel folders in diffusers' layout (`ModelMixin.save_pretrained` / `from_pretrained`;
 * file names from `src/diffusers/utils/constants.py`): `config.json` +
 * `diffusion_pytorch_model.safetensors` (+ `scheduler_config.json` for a DDPM-style repo such as
 * google/ddpm-cifar10-32), flat or under a pipeline's `unet/` subfolder.
 * @module
 */
import { open, mkdir, readFile, rename, stat, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { ConfigError, InputError } from '../errors.js';
import { loadSafetensorsFile, temporarySibling } from '../safetensors/files.js';
import { writeSafetensors, type SafetensorsTensor } from '../safetensors/safetensors.js';
import { UNet2DModel } from './unet_2d.js';
import { unet2DConfigToJSON } from './unet_2d_config.js';

/** diffusers' `CONFIG_NAME`. */
export const CONFIG_NAME = 'config.json';
/** diffusers' `SAFETENSORS_WEIGHTS_NAME`. */
export const SAFETENSORS_WEIGHTS_NAME = 'diffusion_pytorch_model.safetensors';
/** diffusers' `WEIGHTS_NAME` (pickle; not readable here). */
export const PICKLE_WEIGHTS_NAME = 'diffusion_pytorch_model.bin';
/** The scheduler config file name (`SchedulerMixin.config_name`). */
export const SCHEDULER_CONFIG_NAME = 'scheduler_config.json';

/** Options of {@link loadUNet2DFromFolder}. */
export interface LoadUNet2DOptions {
  /** Subfolder holding the model (default: the folder itself, else `unet/` if only that has a config). */
  subfolder?: string;
  /** Weights variant, e.g. `"fp16"` → `diffusion_pytorch_model.fp16.safetensors`. */
  variant?: string;
}

async function isFile(path: string): Promise<boolean> {
  try {
    return (await stat(path)).isFile();
  } catch {
    return false;
  }
}

function variantName(name: string, variant?: string): string {
  if (!variant) return name;
  const dot = name.lastIndexOf('.');
  return `${name.slice(0, dot)}.${variant}${name.slice(dot)}`;
}

async function readJson(path: string): Promise<Record<string, unknown>> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (e) {
    throw new InputError('CONFIG_UNREADABLE', `cannot read ${path}: ${(e as Error).message}`, { path });
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (e) {
    throw new ConfigError(`${path} is not valid JSON: ${(e as Error).message}`, { path });
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw new ConfigError(`${path} must hold a JSON object`, { path });
  return parsed as Record<string, unknown>;
}

/** The folder that holds the UNet's `config.json` (the folder itself, or its `unet/`). */
export async function resolveUNet2DFolder(dir: string, options: LoadUNet2DOptions = {}): Promise<string> {
  const candidates = options.subfolder !== undefined ? [join(dir, options.subfolder)] : [dir, join(dir, 'unet')];
  for (const c of candidates) if (await isFile(join(c, CONFIG_NAME))) return c;
  throw new InputError('MODEL_NOT_FOUND', `no ${CONFIG_NAME} in ${candidates.join(' or ')}`, { dir, candidates });
}

/** Reads the UNet's torch-layout tensors from a model folder (single file or sharded index). */
async function readWeights(folder: string, variant?: string): Promise<Map<string, SafetensorsTensor>> {
  const single = join(folder, variantName(SAFETENSORS_WEIGHTS_NAME, variant));
  if (await isFile(single)) return (await loadSafetensorsFile(single)).tensors;
  const index = `${single}.index.json`;
  if (await isFile(index)) {
    // Sharded checkpoint: {"weight_map": {tensor name: shard file}}.
    const weightMap = (await readJson(index))['weight_map'];
    if (typeof weightMap !== 'object' || weightMap === null) throw new InputError('WEIGHTS_INDEX_INVALID', `${index} has no weight_map`, { path: index });
    const shards = [...new Set(Object.values(weightMap as Record<string, string>))];
    const all = new Map<string, SafetensorsTensor>();
    for (const shard of shards) {
      const { tensors } = await loadSafetensorsFile(join(folder, shard));
      for (const [k, v] of tensors) all.set(k, v);
    }
    return all;
  }
  if (await isFile(join(folder, variantName(PICKLE_WEIGHTS_NAME, variant)))) {
    throw new InputError(
      'WEIGHTS_PICKLE_UNSUPPORTED',
      `${folder} only has ${variantName(PICKLE_WEIGHTS_NAME, variant)} (a PyTorch pickle, which cannot be read safely in JS); convert it with ` +
        'diffusers: UNet2DModel.from_pretrained(dir).save_pretrained(dir, safe_serialization=True)',
      { folder },
    );
  }
  throw new InputError('WEIGHTS_NOT_FOUND', `no ${variantName(SAFETENSORS_WEIGHTS_NAME, variant)} in ${folder}`, { folder });
}

/**
 * Loads a diffusers UNet2DModel folder (`from_pretrained` on a local folder): validates the config,
 * reads the safetensors weights (F16/BF16 widened to float32; legacy attention names accepted)
 * and builds the model with strict name / shape checks.
 * @throws InputError (folder or files missing), ConfigError, SafetensorsError, WeightsError.
 */
export async function loadUNet2DFromFolder(dir: string, options: LoadUNet2DOptions = {}): Promise<UNet2DModel> {
  const folder = await resolveUNet2DFolder(dir, options);
  const config = await readJson(join(folder, CONFIG_NAME));
  const tensors = await readWeights(folder, options.variant);
  return UNet2DModel.fromWeights(config, tensors);
}

/**
 * Reads `scheduler_config.json` next to the model (flat repo) or in `scheduler/` (pipeline), or
 * returns null when there is none.
 */
export async function readSchedulerConfigFromFolder(dir: string): Promise<Record<string, unknown> | null> {
  for (const path of [join(dir, SCHEDULER_CONFIG_NAME), join(dir, 'scheduler', SCHEDULER_CONFIG_NAME)]) {
    if (await isFile(path)) return readJson(path);
  }
  return null;
}

/** Options of {@link saveUNet2DToFolder}. */
export interface SaveUNet2DOptions {
  /** Written as `scheduler_config.json` when given (e.g. a DDPMScheduler config). */
  schedulerConfig?: Record<string, unknown>;
  /** Weight dtype in the file (default F32; F16/BF16 halve the size, rounding to nearest even). */
  dtype?: 'F32' | 'F16' | 'BF16';
}

/** Writes several files so that each appears complete or not at all (temp files, then renames). */
async function writeFilesAtomic(files: ReadonlyArray<{ path: string; bytes: Uint8Array | string }>): Promise<void> {
  const temps: Array<{ tmp: string; path: string }> = [];
  try {
    for (const f of files) {
      const tmp = temporarySibling(f.path);
      temps.push({ tmp, path: f.path });
      const fh = await open(tmp, 'w');
      try {
        await fh.writeFile(f.bytes);
        await fh.sync();
      } finally {
        await fh.close();
      }
    }
    for (const t of temps) await rename(t.tmp, t.path);
  } catch (e) {
    for (const t of temps) await unlink(t.tmp).catch(() => undefined);
    throw e;
  }
}

/**
 * Saves `model` as a diffusers folder (`save_pretrained` layout): `config.json` with
 * `_class_name: "UNet2DModel"`, `diffusion_pytorch_model.safetensors` (torch layout,
 * `__metadata__ {format: "pt"}`), and `scheduler_config.json` if given. Loadable by
 * `UNet2DModel.from_pretrained(dir)` and by {@link loadUNet2DFromFolder}. Files are written
 * atomically; the folder is created if needed.
 */
export async function saveUNet2DToFolder(model: UNet2DModel, dir: string, options: SaveUNet2DOptions = {}): Promise<void> {
  const dtype = options.dtype ?? 'F32';
  if (!['F32', 'F16', 'BF16'].includes(dtype)) throw new ConfigError(`dtype must be F32, F16 or BF16, got ${JSON.stringify(dtype)}`, { field: 'dtype' });
  if (options.schedulerConfig !== undefined && (typeof options.schedulerConfig !== 'object' || options.schedulerConfig === null || Array.isArray(options.schedulerConfig))) {
    throw new ConfigError('schedulerConfig must be a plain object', { field: 'schedulerConfig' });
  }
  const state = model.stateDict();
  if (dtype !== 'F32') for (const t of state.values()) t.dtype = dtype; // the writer narrows Float32Array data
  const files: Array<{ path: string; bytes: Uint8Array | string }> = [
    { path: join(dir, CONFIG_NAME), bytes: `${JSON.stringify(unet2DConfigToJSON(model.config), null, 2)}\n` },
    { path: join(dir, SAFETENSORS_WEIGHTS_NAME), bytes: writeSafetensors(state, { format: 'pt' }) },
  ];
  if (options.schedulerConfig) {
    files.push({ path: join(dir, SCHEDULER_CONFIG_NAME), bytes: `${JSON.stringify(options.schedulerConfig, null, 2)}\n` });
  }
  await mkdir(dir, { recursive: true });
  await writeFilesAtomic(files);
}
