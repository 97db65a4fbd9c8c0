/**
 * SolidMark keys written into images (Kriplani et al., arXiv 2503.00592; official code
 * `NickyDCFP/SolidMark`, `patterns.py`): a scalar grayscale key k ∈ [0, 1] painted as a solid
 * border around the image (`SolidMark`) or as a centred square (`CenterMark`), and the 0/1 masks M
 * that mark where the key lives.
 *
 * Keys are always in **display space** [0, 1]. In model space [−1, 1] the same pixel holds
 * 2k − 1, so converting a marked display image with `toModelRange` writes the key consistently and
 * reading it back with `toDisplayRange` returns k. (The official SD script mixes the two spaces,
 * reference B.8; this module never does.)
 * @module
 */
import * as tf from '@tensorflow/tfjs-core';
import { ConfigError, ShapeError, ValueRangeError, asImageBatch, type ImageBatch } from '@diffmem/core';

/**
 * Default border thickness p: the official CLI's `--pattern-thickness` default (16), used by the
 * DDPM and Stable Diffusion scripts (256 px + 2·16 = 288 px canvases). `patterns.SolidMark`'s own
 * default is 4 and `ddpm/data.get_dataset`'s is 8.
 */
export const SOLIDMARK_DEFAULT_THICKNESS = 16;

/** A SolidMark border: the image is padded by `thickness` pixels of the key on every side. */
export interface BorderMarkSpec {
  readonly kind: 'border';
  /** p: border width in pixels; the canvas is (H + 2p) × (W + 2p). */
  readonly thickness: number;
}

/**
 * A CenterMark: the image is first padded by `padding` pixels of 0 (display black; the official
 * STL-10/CelebA setup pads by 16), then a centred `side` × `side` square is overwritten with the
 * key, `x̃ = M·k + (1 − M)·x`. The official DDPM code uses side = p, its SD test script 2p.
 */
export interface CenterMarkSpec {
  readonly kind: 'center';
  readonly side: number;
  readonly padding: number;
}

/** Where the key is written. */
export type SolidMarkSpec = BorderMarkSpec | CenterMarkSpec;

/** The default mark: a 16-pixel border (official `--pattern-thickness` default). */
export const DEFAULT_SOLIDMARK_SPEC: BorderMarkSpec = Object.freeze({ kind: 'border', thickness: SOLIDMARK_DEFAULT_THICKNESS });

function isInt(v: unknown, min: number): v is number {
  return typeof v === 'number' && Number.isInteger(v) && v >= min;
}

/**
 * Validates a mark specification against the image side length (`imageSize`, before marking).
 * Throws {@link ConfigError} for a malformed spec, a border thicker than the image itself (p > H:
 * over 8/9 of the canvas would be key; the official 16 px on 32 px CIFAR is 3/4) or a centre
 * square larger than the padded image.
 */
export function checkMarkSpec(spec: SolidMarkSpec, imageSize?: number): SolidMarkSpec {
  if (spec === null || typeof spec !== 'object') throw new ConfigError('mark spec must be an object {kind: "border"|"center", …}');
  if (spec.kind === 'border') {
    if (!isInt(spec.thickness, 1)) {
      throw new ConfigError(`border thickness must be an integer ≥ 1, got ${String(spec.thickness)}`, { thickness: spec.thickness });
    }
    if (imageSize !== undefined && spec.thickness > imageSize) {
      throw new ConfigError(
        `border thickness ${spec.thickness} is thicker than the ${imageSize}px images themselves: the key would cover ` +
          `over 8/9 of the canvas and the outpainting would have almost nothing to condition on; use thickness ≤ ${imageSize}`,
        { thickness: spec.thickness, imageSize },
      );
    }
    return spec;
  }
  if (spec.kind === 'center') {
    if (!isInt(spec.side, 1)) throw new ConfigError(`center mark side must be an integer ≥ 1, got ${String(spec.side)}`, { side: spec.side });
    if (!isInt(spec.padding, 0)) {
      throw new ConfigError(`center mark padding must be an integer ≥ 0, got ${String(spec.padding)}`, { padding: spec.padding });
    }
    if (imageSize !== undefined && spec.side > imageSize + 2 * spec.padding) {
      throw new ConfigError(
        `center mark side ${spec.side} is larger than the ${imageSize + 2 * spec.padding}px canvas`,
        { side: spec.side, imageSize, padding: spec.padding },
      );
    }
    return spec;
  }
  throw new ConfigError(`mark kind must be "border" or "center", got ${JSON.stringify((spec as { kind?: unknown }).kind)}`);
}

/** Side length of the marked canvas for `imageSize`-pixel images: H + 2p (border) or H + 2·padding (center). */
export function markedCanvasSize(spec: SolidMarkSpec, imageSize: number): number {
  checkMarkSpec(spec, imageSize);
  return imageSize + 2 * (spec.kind === 'border' ? spec.thickness : spec.padding);
}

/** Side length of the unmarked image inside a `canvasSize` canvas (inverse of {@link markedCanvasSize}). */
export function unmarkedImageSize(spec: SolidMarkSpec, canvasSize: number): number {
  checkMarkSpec(spec);
  const size = canvasSize - 2 * (spec.kind === 'border' ? spec.thickness : spec.padding);
  if (size < 1) {
    throw new ConfigError(`a ${canvasSize}px canvas leaves no image inside a ${JSON.stringify(spec)} mark`, { canvasSize });
  }
  checkMarkSpec(spec, size);
  return size;
}

/**
 * The key mask M of a `canvasSize` canvas: [1, S, S, C] float32, 1 where the key lives (border of
 * width p, or the centred square) and 0 elsewhere, over all channels (reference B.1, "Mask").
 */
export function markMask(spec: SolidMarkSpec, canvasSize: number, channels: number): tf.Tensor4D {
  const S = canvasSize;
  if (!isInt(S, 1) || !isInt(channels, 1)) {
    throw new ConfigError(`canvas size and channels must be positive integers, got ${S} and ${channels}`);
  }
  unmarkedImageSize(spec, S); // validates the spec against the canvas
  const m = new Float32Array(S * S * channels);
  let lo: number;
  let hi: number;
  if (spec.kind === 'border') {
    lo = spec.thickness;
    hi = S - spec.thickness; // inside = [lo, hi)
  } else {
    lo = Math.floor((S - spec.side) / 2);
    hi = lo + spec.side;
  }
  for (let y = 0; y < S; y++) {
    for (let x = 0; x < S; x++) {
      const inside = y >= lo && y < hi && x >= lo && x < hi;
      const v = spec.kind === 'border' ? (inside ? 0 : 1) : inside ? 1 : 0;
      if (v) m.fill(1, (y * S + x) * channels, (y * S + x + 1) * channels);
    }
  }
  return tf.tensor4d(m, [1, S, S, channels]);
}

/** The border mask of diffmem's default mark, a convenience for {@link markMask} with `{kind: 'border'}`. */
export function borderMask(canvasSize: number, channels: number, thickness = SOLIDMARK_DEFAULT_THICKNESS): tf.Tensor4D {
  return markMask({ kind: 'border', thickness }, canvasSize, channels);
}

/** Throws {@link ValueRangeError} unless every key is a finite number in [0, 1] (display space). */
export function checkSolidMarkKeys(keys: ArrayLike<number>, name = 'keys'): void {
  for (let i = 0; i < keys.length; i++) {
    const k = keys[i];
    if (typeof k !== 'number' || !Number.isFinite(k) || k < 0 || k > 1) {
      throw new ValueRangeError(
        `${name}[${i}] = ${String(k)} is outside [0, 1]: SolidMark keys are grayscale values in display space ` +
          '(a model-space value v ∈ [−1, 1] is the key (v + 1)/2)',
        { index: i, value: k },
      );
    }
  }
}

/**
 * Writes one key per image: x̃ = pad(x, p, k) for a border (image content untouched, canvas grows
 * by 2p; `tf.pad` in `patterns.SolidMark`), x̃ = M·k + (1 − M)·pad(x, padding, 0) for a centre
 * mark. `images` is a display-space batch [N,H,W,C] (not disposed); `keys` has N values in
 * [0, 1]. Returns a new display-space batch [N,S,S,C].
 */
export function applyMark(images: ImageBatch<'display'>, keys: ArrayLike<number>, spec: SolidMarkSpec): ImageBatch<'display'> {
  asImageBatch(images, 'display', { name: 'images' });
  const [n, h, w, c] = images.shape;
  if (h !== w) throw new ShapeError(`SolidMark needs square images, got ${h}x${w}`, { height: h, width: w });
  if (keys.length !== n) throw new ShapeError(`got ${keys.length} keys for ${n} images`, { keys: keys.length, images: n });
  checkSolidMarkKeys(keys);
  const S = markedCanvasSize(spec, h);
  const pad = (S - h) / 2;
  return tf.tidy(() => {
    const mask = markMask(spec, S, c);
    const padded = pad > 0 ? tf.pad(images, [[0, 0], [pad, pad], [pad, pad], [0, 0]], 0) : images;
    const k = tf.tensor4d(Float32Array.from(keys), [n, 1, 1, 1]);
    // (1 − M)·x + M·k: exact in float32 (M is 0/1), so the border holds exactly fround(k).
    return tf.add(tf.mul(tf.sub(1, mask), padded), tf.mul(mask, k)) as ImageBatch<'display'>;
  });
}

/** `SolidMark`: pads every image by `thickness` pixels of its key (see {@link applyMark}). */
export function addSolidMark(
  images: ImageBatch<'display'>,
  keys: ArrayLike<number>,
  thickness = SOLIDMARK_DEFAULT_THICKNESS,
): ImageBatch<'display'> {
  return applyMark(images, keys, { kind: 'border', thickness });
}

/** `CenterMark`: overwrites a centred `side`-pixel square with the key (see {@link applyMark}). */
export function addCenterMark(
  images: ImageBatch<'display'>,
  keys: ArrayLike<number>,
  side: number,
  padding = 0,
): ImageBatch<'display'> {
  return applyMark(images, keys, { kind: 'center', side, padding });
}

/** A JSON-safe copy of a mark spec (only the fields of its kind). */
export function markSpecToJSON(spec: SolidMarkSpec): SolidMarkSpec {
  checkMarkSpec(spec);
  return spec.kind === 'border'
    ? { kind: 'border', thickness: spec.thickness }
    : { kind: 'center', side: spec.side, padding: spec.padding };
}
