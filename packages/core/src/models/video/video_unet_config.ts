/**
 * The configuration of {@link VideoUNetModel}, a factorised space-time ("(2+1)-D") UNet: a
 * `config.json` object in diffusers' style (snake_case, `_class_name`), made of every
 * {@link UNet2DConfig} field — the spatial network is exactly a UNet2DModel applied per frame —
 * plus the temporal fields below.
 *
 * Block types are the 3-D names of diffusers' video UNets (`UNet3DConditionModel`):
 * `DownBlock3D` / `UpBlock3D` (resnets, each followed by a temporal convolution) and
 * `AttnDownBlock3D` / `AttnUpBlock3D` (the same plus spatial self-attention per frame followed by
 * temporal self-attention per pixel); the mid block is `UNetMidBlock3D`.
 * @module
 */
import { ConfigError } from '../../errors.js';
import { smallUNetBlockTypes, smallUNetCommonFields, type SmallUNetOptions } from '../../training/train_unet.js';
import { parseUNet2DConfig, type UNet2DConfig, type UNet2DDownBlockType, type UNet2DUpBlockType } from '../unet_2d_config.js';

/** Down block types of the video UNet. */
export const VIDEO_UNET_DOWN_BLOCK_TYPES = ['DownBlock3D', 'AttnDownBlock3D'] as const;
/** Up block types of the video UNet. */
export const VIDEO_UNET_UP_BLOCK_TYPES = ['UpBlock3D', 'AttnUpBlock3D'] as const;

/** A video down block type. */
export type VideoUNetDownBlockType = (typeof VIDEO_UNET_DOWN_BLOCK_TYPES)[number];
/** A video up block type. */
export type VideoUNetUpBlockType = (typeof VIDEO_UNET_UP_BLOCK_TYPES)[number];

/** The class name written to and required in `config.json`. */
export const VIDEO_UNET_CLASS_NAME = 'VideoUNetModel';

/** The temporal fields (the rest is {@link UNet2DConfig}). */
export interface VideoUNetTemporalConfig {
  /** Frames per clip the model is trained on (sampling may use other lengths). */
  num_frames: number;
  /**
   * Convolutions per temporal conv layer (GroupNorm → SiLU → k×1×1 conv over time, repeated; the
   * last one zero-initialised), one layer after every resnet; 0 disables temporal convolutions.
   */
  temporal_conv_layers: number;
  /** Temporal kernel size k (odd; zero padding keeps the frame count). */
  temporal_kernel_size: number;
  /** Temporal self-attention after each spatial attention (Attn blocks and the mid block). */
  temporal_attention: boolean;
  /** Channels per temporal attention head; `null` → one head spanning all channels. */
  temporal_attention_head_dim: number | null;
  /** Add a fixed sinusoidal embedding of the frame index before temporal attention (it is otherwise order-blind). */
  temporal_position_embedding: boolean;
}

/** A fully resolved video UNet configuration. `down/up_block_types` hold the 3-D names. */
export interface VideoUNetConfig extends Omit<UNet2DConfig, 'down_block_types' | 'up_block_types' | '_diffusers_version'>, VideoUNetTemporalConfig {
  down_block_types: VideoUNetDownBlockType[];
  up_block_types: VideoUNetUpBlockType[];
}

/** Defaults of the temporal fields. */
export const VIDEO_UNET_TEMPORAL_DEFAULTS: Readonly<Omit<VideoUNetTemporalConfig, 'num_frames'>> = Object.freeze({
  temporal_conv_layers: 2,
  temporal_kernel_size: 3,
  temporal_attention: true,
  temporal_attention_head_dim: null,
  temporal_position_embedding: true,
});

function bad(field: string, message: string, value?: unknown): never {
  throw new ConfigError(`VideoUNetModel config: ${field} ${message}${value === undefined ? '' : `, got ${JSON.stringify(value)}`}`, {
    field,
    value,
  });
}

const DOWN_2D: Record<VideoUNetDownBlockType, UNet2DDownBlockType> = { DownBlock3D: 'DownBlock2D', AttnDownBlock3D: 'AttnDownBlock2D' };
const UP_2D: Record<VideoUNetUpBlockType, UNet2DUpBlockType> = { UpBlock3D: 'UpBlock2D', AttnUpBlock3D: 'AttnUpBlock2D' };

function blockList<T extends string>(field: string, raw: unknown, allowed: readonly T[]): T[] {
  if (!Array.isArray(raw)) bad(field, 'must be an array of block type names', raw);
  return raw.map((t, i) => {
    if (typeof t !== 'string' || !allowed.includes(t as T)) bad(`${field}[${i}]`, `must be one of ${allowed.map((a) => `"${a}"`).join(', ')}`, t);
    return t as T;
  });
}

/**
 * Validates a video UNet `config.json` object and fills defaults (the spatial fields are checked
 * by {@link parseUNet2DConfig} with the 3-D block names mapped to their 2-D counterparts).
 * Features the factorised model does not implement (`fourier`/`learned` time embeddings,
 * `timestep` class embeddings, resnet up/down-sampling) are rejected.
 * @throws ConfigError naming the offending field.
 */
export function parseVideoUNetConfig(raw: unknown): VideoUNetConfig {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw new ConfigError('VideoUNetModel config must be a JSON object');
  const r = raw as Record<string, unknown>;
  if (r['_class_name'] !== undefined && r['_class_name'] !== VIDEO_UNET_CLASS_NAME) {
    bad('_class_name', `must be "${VIDEO_UNET_CLASS_NAME}"`, r['_class_name']);
  }
  for (const f of ['down_block_types', 'up_block_types', 'num_frames'] as const) if (r[f] === undefined || r[f] === null) bad(f, 'is required');
  const down = blockList('down_block_types', r['down_block_types'], VIDEO_UNET_DOWN_BLOCK_TYPES);
  const up = blockList('up_block_types', r['up_block_types'], VIDEO_UNET_UP_BLOCK_TYPES);
  const spatialRaw: Record<string, unknown> = { ...r, down_block_types: down.map((d) => DOWN_2D[d]), up_block_types: up.map((u) => UP_2D[u]) };
  delete spatialRaw['_class_name'];
  let spatial: UNet2DConfig;
  try {
    spatial = parseUNet2DConfig(spatialRaw);
  } catch (e) {
    if (e instanceof ConfigError) throw new ConfigError(e.message.replace(/^UNet2DModel config:/, 'VideoUNetModel config:'), e.details ? { ...e.details } : undefined);
    throw e;
  }
  if (spatial.time_embedding_type !== 'positional') bad('time_embedding_type', 'must be "positional" (the only time embedding VideoUNetModel implements)', spatial.time_embedding_type);
  if (spatial.class_embed_type !== null) bad('class_embed_type', 'must be null (class labels use an embedding table of num_class_embeds rows)', spatial.class_embed_type);
  if (spatial.downsample_type !== 'conv') bad('downsample_type', 'must be "conv"', spatial.downsample_type);
  if (spatial.upsample_type !== 'conv') bad('upsample_type', 'must be "conv"', spatial.upsample_type);

  const get = <K extends keyof typeof VIDEO_UNET_TEMPORAL_DEFAULTS>(k: K): unknown => (r[k] === undefined ? VIDEO_UNET_TEMPORAL_DEFAULTS[k] : r[k]);
  const posInt = (field: string, v: unknown, min = 1): number => {
    if (!Number.isInteger(v) || (v as number) < min) bad(field, min === 0 ? 'must be a non-negative integer' : 'must be a positive integer', v);
    return v as number;
  };
  const bool = (field: string, v: unknown): boolean => {
    if (typeof v !== 'boolean') bad(field, 'must be true or false', v);
    return v;
  };
  const num_frames = posInt('num_frames', r['num_frames']);
  const temporal_conv_layers = posInt('temporal_conv_layers', get('temporal_conv_layers'), 0);
  const temporal_kernel_size = posInt('temporal_kernel_size', get('temporal_kernel_size'));
  if (temporal_kernel_size % 2 !== 1) bad('temporal_kernel_size', 'must be odd (symmetric zero padding keeps the frame count)', temporal_kernel_size);
  const temporal_attention = bool('temporal_attention', get('temporal_attention'));
  const headRaw = get('temporal_attention_head_dim');
  const temporal_attention_head_dim = headRaw === null ? null : posInt('temporal_attention_head_dim', headRaw);
  const temporal_position_embedding = bool('temporal_position_embedding', get('temporal_position_embedding'));
  const { down_block_types: _d, up_block_types: _u, _diffusers_version: _v, ...rest } = spatial;
  return {
    ...rest,
    down_block_types: down,
    up_block_types: up,
    num_frames,
    temporal_conv_layers,
    temporal_kernel_size,
    temporal_attention,
    temporal_attention_head_dim,
    temporal_position_embedding,
  };
}

/**
 * The UNet2DModel config of the spatial network: the image model the video model equals, frame by
 * frame, while its temporal layers are at their zero initialisation (and whose weights
 * {@link VideoUNetModel.fromImageModel} inflates).
 */
export function spatialUNet2DConfig(config: VideoUNetConfig): UNet2DConfig {
  const {
    num_frames: _f,
    temporal_conv_layers: _c,
    temporal_kernel_size: _k,
    temporal_attention: _a,
    temporal_attention_head_dim: _h,
    temporal_position_embedding: _p,
    ...spatial
  } = config;
  return {
    ...spatial,
    down_block_types: config.down_block_types.map((d) => DOWN_2D[d]),
    up_block_types: config.up_block_types.map((u) => UP_2D[u]),
  };
}

/** The config as written to `config.json` (`_class_name` first). */
export function videoUNetConfigToJSON(config: VideoUNetConfig): Record<string, unknown> {
  return { _class_name: VIDEO_UNET_CLASS_NAME, ...config };
}

/**
 * Options of {@link smallVideoUNetConfig}: those of core's image `smallUNetConfig` (sample size,
 * channels, layers per block, class rows, GroupNorm groups) plus the frame count and temporal depth.
 */
export interface SmallVideoUNetOptions extends Omit<SmallUNetOptions, 'blockOutChannels' | 'attention'> {
  numFrames: number;
  /** Widths per resolution level (default [16, 32]). */
  blockOutChannels?: number[];
  /** Spatial + temporal attention at the lowest resolution level (default true). */
  attention?: boolean;
  temporalConvLayers?: number;
}

/**
 * A small factorised video UNet config that trains in minutes on 2 CPU cores: `widths.length`
 * levels, attention (spatial, then temporal) at the last level and in the mid block, temporal
 * convolutions after every resnet.
 */
export function smallVideoUNetConfig(o: SmallVideoUNetOptions): Record<string, unknown> {
  const widths = o.blockOutChannels ?? [16, 32];
  const attn = o.attention ?? true;
  const { down, up } = smallUNetBlockTypes(widths.length, attn ? [widths.length - 1] : [], '3D');
  const { numFrames, temporalConvLayers, attention: _a, blockOutChannels: _w, ...rest } = o;
  return {
    _class_name: VIDEO_UNET_CLASS_NAME,
    ...smallUNetCommonFields({ ...rest, blockOutChannels: widths }),
    num_frames: numFrames,
    down_block_types: down,
    up_block_types: up,
    add_attention: attn,
    temporal_conv_layers: temporalConvLayers ?? 2,
    temporal_kernel_size: 3,
    temporal_attention: attn,
    temporal_attention_head_dim: null,
    temporal_position_embedding: true,
  };
}
