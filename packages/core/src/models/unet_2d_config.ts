/**
 * The configuration of {@link UNet2DModel}: diffusers' `UNet2DModel.__init__` arguments as they
 * appear in a `config.json` (snake_case, so a config round-trips to a file diffusers can load).
 *
 * {@link parseUNet2DConfig} validates a raw JSON object, fills diffusers' defaults
 * (`src/diffusers/models/unets/unet_2d.py`) and throws a {@link ConfigError} naming the field for
 * anything this port cannot build exactly.
 * @module
 */
import { ConfigError } from '../errors.js';

/** Down block types this port implements (diffusers' `get_down_block`; a `UNetRes` prefix is stripped). */
export const UNET2D_DOWN_BLOCK_TYPES = ['DownBlock2D', 'AttnDownBlock2D'] as const;
/** Up block types this port implements (diffusers' `get_up_block`). */
export const UNET2D_UP_BLOCK_TYPES = ['UpBlock2D', 'AttnUpBlock2D'] as const;
/** Activation names accepted by `act_fn` (diffusers' `get_activation`). */
export const UNET2D_ACTIVATIONS = ['silu', 'swish', 'mish', 'gelu', 'relu'] as const;

/** A supported down block type. */
export type UNet2DDownBlockType = (typeof UNET2D_DOWN_BLOCK_TYPES)[number];
/** A supported up block type. */
export type UNet2DUpBlockType = (typeof UNET2D_UP_BLOCK_TYPES)[number];
/** A supported `act_fn`. */
export type UNet2DActivation = (typeof UNET2D_ACTIVATIONS)[number];

/** A fully resolved UNet2DModel configuration (every field present, diffusers' names). */
export interface UNet2DConfig {
  /** Height = width of the sample; must be a multiple of 2^(blocks − 1). */
  sample_size: number;
  in_channels: number;
  out_channels: number;
  /** If true the input is mapped x → 2x − 1 first. */
  center_input_sample: boolean;
  /** `positional` (sinusoidal), `fourier` (Gaussian Fourier features of log σ, output divided by σ) or `learned` (an embedding table). */
  time_embedding_type: 'positional' | 'fourier' | 'learned';
  /** Width of the time embedding; `null` → 4 · block_out_channels[0]. */
  time_embedding_dim: number | null;
  /** `downscale_freq_shift` of the sinusoid: frequencies exp(−ln(10⁴)·k/(half − shift)). */
  freq_shift: number;
  /** Order the sinusoid as [cos, sin] instead of [sin, cos]. */
  flip_sin_to_cos: boolean;
  down_block_types: UNet2DDownBlockType[];
  /** `UNetMidBlock2D`, or `null` for no mid block. */
  mid_block_type: 'UNetMidBlock2D' | null;
  up_block_types: UNet2DUpBlockType[];
  block_out_channels: number[];
  layers_per_block: number;
  /** Output (and attention rescale) factor of the mid block: out = (skip + h) / factor. */
  mid_block_scale_factor: number;
  /** Padding of the stride-2 downsampling conv; 0 means pad right/bottom by one, then a valid conv. */
  downsample_padding: number;
  /** `conv` (stride-2 conv) or `resnet` (a ResnetBlock2D with 2×2 average pooling; attention blocks only). */
  downsample_type: 'conv' | 'resnet';
  /** `conv` (nearest ×2 then 3×3 conv) or `resnet` (a ResnetBlock2D with nearest ×2; attention blocks only). */
  upsample_type: 'conv' | 'resnet';
  /** Training-time dropout of the resnets; ignored at inference (kept for round trips). */
  dropout: number;
  /** Non-linearity of the resnets (the time MLP and the output head always use SiLU, as in diffusers). */
  act_fn: UNet2DActivation;
  /** Channels per attention head; `null` → one head spanning all channels. */
  attention_head_dim: number | null;
  norm_num_groups: number;
  /** Groups of the mid-block attention's GroupNorm; `null` → `norm_num_groups` if `resnet_time_scale_shift` is `default`, else no norm. */
  attn_norm_num_groups: number | null;
  norm_eps: number;
  /** `default` (add the time embedding) or `scale_shift` (GN(h)·(1 + s) + b). */
  resnet_time_scale_shift: 'default' | 'scale_shift';
  /** Whether the mid block has attention. */
  add_attention: boolean;
  /** `null` (a learned table of `num_class_embeds` rows) or `timestep` (the time MLP applied to the label's sinusoid). */
  class_embed_type: 'timestep' | null;
  /** Number of classes of a class-conditional model, or `null`. */
  num_class_embeds: number | null;
  /** Size of the `learned` time-embedding table. */
  num_train_timesteps: number | null;
  /** The diffusers version that wrote the config, kept for round trips. */
  _diffusers_version?: string;
}

/** diffusers' defaults for every optional field (`UNet2DModel.__init__`). */
export const UNET2D_DEFAULTS: Readonly<Omit<UNet2DConfig, 'sample_size' | 'block_out_channels' | 'down_block_types' | 'up_block_types'>> = {
  in_channels: 3,
  out_channels: 3,
  center_input_sample: false,
  time_embedding_type: 'positional',
  time_embedding_dim: null,
  freq_shift: 0,
  flip_sin_to_cos: true,
  mid_block_type: 'UNetMidBlock2D',
  layers_per_block: 2,
  mid_block_scale_factor: 1,
  downsample_padding: 1,
  downsample_type: 'conv',
  upsample_type: 'conv',
  dropout: 0,
  act_fn: 'silu',
  attention_head_dim: 8,
  norm_num_groups: 32,
  attn_norm_num_groups: null,
  norm_eps: 1e-5,
  resnet_time_scale_shift: 'default',
  add_attention: true,
  class_embed_type: null,
  num_class_embeds: null,
  num_train_timesteps: null,
};

/**
 * Fields without a usable default: they fix the architecture, so a config that lacks them is
 * rejected rather than silently built at diffusers' (huge) default width.
 */
export const UNET2D_REQUIRED_FIELDS = ['sample_size', 'block_out_channels', 'down_block_types', 'up_block_types'] as const;

function bad(field: string, message: string, value?: unknown): never {
  throw new ConfigError(`UNet2DModel config: ${field} ${message}${value === undefined ? '' : `, got ${JSON.stringify(value)}`}`, {
    field,
    value,
  });
}

function posInt(field: string, v: unknown): number {
  if (!Number.isInteger(v) || (v as number) <= 0) bad(field, 'must be a positive integer', v);
  return v as number;
}

function nonNegInt(field: string, v: unknown): number {
  if (!Number.isInteger(v) || (v as number) < 0) bad(field, 'must be a non-negative integer', v);
  return v as number;
}

function finite(field: string, v: unknown): number {
  if (typeof v !== 'number' || !Number.isFinite(v)) bad(field, 'must be a finite number', v);
  return v;
}

function bool(field: string, v: unknown): boolean {
  if (typeof v !== 'boolean') bad(field, 'must be true or false', v);
  return v;
}

function oneOf<T extends string>(field: string, v: unknown, allowed: readonly T[]): T {
  if (typeof v !== 'string' || !allowed.includes(v as T)) bad(field, `must be one of ${allowed.map((a) => `"${a}"`).join(', ')}`, v);
  return v as T;
}

function stripRes(name: unknown): unknown {
  return typeof name === 'string' && name.startsWith('UNetRes') ? name.slice(7) : name;
}

/**
 * Validates a diffusers UNet2DModel `config.json` object and fills defaults.
 *
 * Unknown fields are ignored (diffusers warns and ignores them too). `_class_name`, when present,
 * must be `"UNet2DModel"`.
 * @throws ConfigError naming the offending field.
 */
export function parseUNet2DConfig(raw: unknown): UNet2DConfig {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
    throw new ConfigError('UNet2DModel config must be a JSON object');
  }
  const r: Record<string, unknown> = { ...(raw as Record<string, unknown>) };
  // diffusers drops keys it recorded as defaulted (`_use_default_values`), so defaults apply.
  const usedDefaults = r['_use_default_values'];
  if (Array.isArray(usedDefaults)) for (const k of usedDefaults) if (typeof k === 'string') delete r[k];
  if (r['_class_name'] !== undefined && r['_class_name'] !== 'UNet2DModel') {
    bad('_class_name', 'must be "UNet2DModel" (this is a config for another model class)', r['_class_name']);
  }
  for (const f of UNET2D_REQUIRED_FIELDS) {
    if (r[f] === undefined || r[f] === null) bad(f, 'is required');
  }
  const get = <K extends keyof typeof UNET2D_DEFAULTS>(k: K): unknown => (r[k] === undefined ? UNET2D_DEFAULTS[k] : r[k]);

  // sample_size: an int, or a square [h, w].
  let sampleSize = r['sample_size'];
  if (Array.isArray(sampleSize)) {
    if (sampleSize.length !== 2 || sampleSize[0] !== sampleSize[1]) bad('sample_size', 'must be an integer or a square [size, size]', sampleSize);
    sampleSize = sampleSize[0];
  }
  const sample_size = posInt('sample_size', sampleSize);

  const boc = r['block_out_channels'];
  if (!Array.isArray(boc) || boc.length === 0) bad('block_out_channels', 'must be a non-empty array of positive integers', boc);
  const block_out_channels = boc.map((c, i) => posInt(`block_out_channels[${i}]`, c));

  const downs = r['down_block_types'];
  const ups = r['up_block_types'];
  if (!Array.isArray(downs)) bad('down_block_types', 'must be an array of block type names', downs);
  if (!Array.isArray(ups)) bad('up_block_types', 'must be an array of block type names', ups);
  const down_block_types = downs.map((t, i) => oneOf(`down_block_types[${i}]`, stripRes(t), UNET2D_DOWN_BLOCK_TYPES));
  const up_block_types = ups.map((t, i) => oneOf(`up_block_types[${i}]`, stripRes(t), UNET2D_UP_BLOCK_TYPES));
  if (down_block_types.length !== up_block_types.length) {
    bad('up_block_types', `must have as many entries as down_block_types (${down_block_types.length})`, ups);
  }
  if (block_out_channels.length !== down_block_types.length) {
    bad('block_out_channels', `must have one entry per down block (${down_block_types.length})`, boc);
  }
  const factor = 2 ** (block_out_channels.length - 1);
  if (sample_size % factor !== 0) bad('sample_size', `must be a multiple of 2^(blocks − 1) = ${factor}`, sample_size);

  const time_embedding_type = oneOf('time_embedding_type', get('time_embedding_type'), ['positional', 'fourier', 'learned'] as const);
  const tedRaw = get('time_embedding_dim');
  const time_embedding_dim = tedRaw === null ? null : posInt('time_embedding_dim', tedRaw);
  const freq_shift = finite('freq_shift', get('freq_shift'));
  if (time_embedding_type === 'positional' && Math.floor((block_out_channels[0] as number) / 2) - freq_shift === 0) {
    bad('freq_shift', 'must differ from block_out_channels[0] / 2 (the sinusoid divides by their difference)', freq_shift);
  }
  const midRaw = get('mid_block_type');
  const mid_block_type = midRaw === null ? null : oneOf('mid_block_type', midRaw, ['UNetMidBlock2D'] as const);
  const headRaw = get('attention_head_dim');
  const attention_head_dim = headRaw === null ? null : posInt('attention_head_dim', headRaw);
  const normGroups = get('norm_num_groups');
  if (normGroups === null) bad('norm_num_groups', 'must be set (diffusers cannot build resnets without it)');
  const attnGroupsRaw = get('attn_norm_num_groups');
  const classTypeRaw = get('class_embed_type');
  const class_embed_type = classTypeRaw === null ? null : oneOf('class_embed_type', classTypeRaw, ['timestep'] as const);
  const nceRaw = get('num_class_embeds');
  const nttRaw = get('num_train_timesteps');
  const num_train_timesteps = nttRaw === null ? null : posInt('num_train_timesteps', nttRaw);
  if (time_embedding_type === 'learned' && num_train_timesteps === null) {
    bad('num_train_timesteps', 'is required when time_embedding_type is "learned"');
  }
  const dropout = finite('dropout', get('dropout'));
  if (dropout < 0 || dropout >= 1) bad('dropout', 'must lie in [0, 1)', dropout);
  const mid_block_scale_factor = finite('mid_block_scale_factor', get('mid_block_scale_factor'));
  if (mid_block_scale_factor === 0) bad('mid_block_scale_factor', 'must not be 0 (outputs are divided by it)', 0);
  const norm_eps = finite('norm_eps', get('norm_eps'));
  if (norm_eps <= 0) bad('norm_eps', 'must be positive', norm_eps);

  const config: UNet2DConfig = {
    sample_size,
    in_channels: posInt('in_channels', get('in_channels')),
    out_channels: posInt('out_channels', get('out_channels')),
    center_input_sample: bool('center_input_sample', get('center_input_sample')),
    time_embedding_type,
    time_embedding_dim,
    freq_shift,
    flip_sin_to_cos: bool('flip_sin_to_cos', get('flip_sin_to_cos')),
    down_block_types,
    mid_block_type,
    up_block_types,
    block_out_channels,
    layers_per_block: posInt('layers_per_block', get('layers_per_block')),
    mid_block_scale_factor,
    downsample_padding: nonNegInt('downsample_padding', get('downsample_padding')),
    downsample_type: oneOf('downsample_type', get('downsample_type'), ['conv', 'resnet'] as const),
    upsample_type: oneOf('upsample_type', get('upsample_type'), ['conv', 'resnet'] as const),
    dropout,
    act_fn: oneOf('act_fn', get('act_fn'), UNET2D_ACTIVATIONS),
    attention_head_dim,
    norm_num_groups: posInt('norm_num_groups', normGroups),
    attn_norm_num_groups: attnGroupsRaw === null ? null : posInt('attn_norm_num_groups', attnGroupsRaw),
    norm_eps,
    resnet_time_scale_shift: oneOf('resnet_time_scale_shift', get('resnet_time_scale_shift'), ['default', 'scale_shift'] as const),
    add_attention: bool('add_attention', get('add_attention')),
    class_embed_type,
    num_class_embeds: nceRaw === null ? null : posInt('num_class_embeds', nceRaw),
    num_train_timesteps,
  };
  if (typeof r['_diffusers_version'] === 'string') config._diffusers_version = r['_diffusers_version'];
  return config;
}

/** The time-embedding width: `time_embedding_dim` or 4 · block_out_channels[0] (unet_2d.py). */
export function timeEmbedDim(config: UNet2DConfig): number {
  return config.time_embedding_dim ?? 4 * (config.block_out_channels[0] as number);
}

/**
 * The config as diffusers writes it (`ConfigMixin.to_json_string`): `_class_name` first, then
 * every field. Loadable by `UNet2DModel.from_pretrained`.
 */
export function unet2DConfigToJSON(config: UNet2DConfig): Record<string, unknown> {
  const { _diffusers_version, ...fields } = config;
  return {
    _class_name: 'UNet2DModel',
    ...(_diffusers_version !== undefined ? { _diffusers_version } : {}),
    ...fields,
  };
}
