/**
 * Named image preprocessing presets of copy-detection embedders, so a descriptor's thresholds
 * (0.5, 0.75, …) are only compared under the preprocessing they were calibrated for. The three
 * repositories that use SSCD each preprocess differently:
 *
 * | preset | resize | crop | normalisation | source |
 * |---|---|---|---|---|
 * | `sscd` | short edge → 288 | — | ImageNet mean/std | official SSCD README |
 * | `sscd-320` | squash to 320×320 | — | ImageNet mean/std | official SSCD README |
 * | `dcr` | short edge → 256 | centre 224×224 | mean 0.5, std 0.5 | Somepalli et al. `diff_retrieval.py`; Wen et al. eval |
 * | `amg` | squash to 224×224 | — | none ([0,1]) | AMG `txt2img.py` |
 * | `none` | — | — | none | |
 *
 * Resizing is bilinear with PIL/torchvision antialiasing (a triangle filter widened by the
 * downscale factor), implemented as two matrix products, so it is exact for any size, matches
 * torchvision's `Resize` on PIL images to float precision, and is differentiable on every backend.
 * Output sizes follow torchvision: short-edge resize gives the long edge `floor(size·long/short)`;
 * centre crops start at `round((H − h)/2)` with Python's round-half-to-even.
 * @module
 */
import * as tf from '@tensorflow/tfjs-core';
import { ConfigError, ShapeError } from '@diffmem/core';
import { checkInt, checkTensor } from '../internal/checks.js';

/** The preset names. */
export type PreprocessPresetName = 'sscd' | 'sscd-320' | 'dcr' | 'amg' | 'none';

/** A full preprocessing recipe (what a preset expands to). */
export interface PreprocessConfig {
  /** Resize step, or null to keep the size. */
  resize: { kind: 'short-edge'; size: number } | { kind: 'exact'; height: number; width: number } | null;
  /** Centre crop [height, width] after resizing, or null. */
  centerCrop: readonly [number, number] | null;
  /** Per-channel mean subtracted after scaling to [0,1] (null: none). */
  mean: readonly [number, number, number] | null;
  /** Per-channel std divided by (null: none). */
  std: readonly [number, number, number] | null;
  /** Antialiased (PIL-style) downscaling (default true). */
  antialias?: boolean;
}

/** ImageNet channel statistics (torchvision). */
export const IMAGENET_MEAN: readonly [number, number, number] = [0.485, 0.456, 0.406];
/** ImageNet channel standard deviations (torchvision). */
export const IMAGENET_STD: readonly [number, number, number] = [0.229, 0.224, 0.225];

/** The presets (see the module table). */
export const PREPROCESS_PRESETS: Readonly<Record<PreprocessPresetName, PreprocessConfig>> = Object.freeze({
  sscd: { resize: { kind: 'short-edge', size: 288 }, centerCrop: null, mean: IMAGENET_MEAN, std: IMAGENET_STD },
  'sscd-320': { resize: { kind: 'exact', height: 320, width: 320 }, centerCrop: null, mean: IMAGENET_MEAN, std: IMAGENET_STD },
  dcr: { resize: { kind: 'short-edge', size: 256 }, centerCrop: [224, 224], mean: [0.5, 0.5, 0.5], std: [0.5, 0.5, 0.5] },
  amg: { resize: { kind: 'exact', height: 224, width: 224 }, centerCrop: null, mean: null, std: null },
  none: { resize: null, centerCrop: null, mean: null, std: null },
});

/** Resolves a preset name or passes a config through (validated). */
export function resolvePreprocess(p: PreprocessPresetName | PreprocessConfig): PreprocessConfig {
  if (typeof p === 'string') {
    const c = PREPROCESS_PRESETS[p as PreprocessPresetName];
    if (!c) throw new ConfigError(`unknown preprocessing preset "${p}"; use ${Object.keys(PREPROCESS_PRESETS).join(', ')}`);
    return c;
  }
  if (!p || typeof p !== 'object') throw new ConfigError('preprocess must be a preset name or a PreprocessConfig');
  return p;
}

/** torchvision `Resize(size)` output size for an int size: the short edge becomes `size`. */
export function shortEdgeSize(height: number, width: number, size: number): [number, number] {
  if (height <= width) return [size, Math.floor((size * width) / height)];
  return [Math.floor((size * height) / width), size];
}

/** Python's round() (half to even). */
function roundHalfEven(x: number): number {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/** The [N,H,W,C] shape `preprocessImages` produces for an input of size H×W. */
export function preprocessOutputSize(height: number, width: number, p: PreprocessPresetName | PreprocessConfig): [number, number] {
  const c = resolvePreprocess(p);
  let h = height;
  let w = width;
  if (c.resize?.kind === 'short-edge') [h, w] = shortEdgeSize(h, w, c.resize.size);
  else if (c.resize?.kind === 'exact') [h, w] = [c.resize.height, c.resize.width];
  if (c.centerCrop) [h, w] = [c.centerCrop[0], c.centerCrop[1]];
  return [h, w];
}

/**
 * The [outSize, inSize] resampling matrix of PIL's antialiased bilinear resize (triangle filter
 * with support max(1, in/out), pixel centres at +0.5). Without antialias the support stays 1
 * (plain bilinear, half-pixel centres, edge-clamped).
 */
export function resizeMatrix(inSize: number, outSize: number, antialias = true): Float32Array {
  checkInt(inSize, 'inSize');
  checkInt(outSize, 'outSize');
  const m = new Float32Array(outSize * inSize);
  const scale = inSize / outSize;
  const filterScale = antialias ? Math.max(scale, 1) : 1;
  const support = filterScale;
  for (let i = 0; i < outSize; i++) {
    const center = (i + 0.5) * scale;
    if (!antialias || scale <= 1) {
      // Plain bilinear with edge clamping (identical to the triangle filter when upsampling).
      const x = Math.min(Math.max(center - 0.5, 0), inSize - 1);
      const x0 = Math.floor(x);
      const x1 = Math.min(x0 + 1, inSize - 1);
      const f = x - x0;
      m[i * inSize + x0] = (m[i * inSize + x0] as number) + (1 - f);
      m[i * inSize + x1] = (m[i * inSize + x1] as number) + f;
      continue;
    }
    const xmin = Math.max(Math.floor(center - support + 0.5), 0);
    const xmax = Math.min(Math.floor(center + support + 0.5), inSize);
    let total = 0;
    for (let j = xmin; j < xmax; j++) {
      const t = (j - center + 0.5) / filterScale;
      const w = Math.max(0, 1 - Math.abs(t));
      m[i * inSize + j] = w;
      total += w;
    }
    if (total > 0) for (let j = xmin; j < xmax; j++) m[i * inSize + j] = (m[i * inSize + j] as number) / total;
  }
  return m;
}

/**
 * Resizes an NHWC batch with {@link resizeMatrix} along each axis (two matrix products).
 * Differentiable; inputs are not disposed.
 */
export function resizeAntialiased(images: tf.Tensor4D, height: number, width: number, antialias = true): tf.Tensor4D {
  const [n, h, w, c] = images.shape;
  if (h === height && w === width) return tf.clone(images);
  return tf.tidy(() => {
    const mh = tf.tensor2d(resizeMatrix(h, height, antialias), [height, h]);
    const mw = tf.tensor2d(resizeMatrix(w, width, antialias), [width, w]);
    // rows: [H, N·W·C] → [height, N, W, C]
    const xr = tf.reshape(tf.transpose(images, [1, 0, 2, 3]), [h, n * w * c]);
    const y = tf.reshape(tf.matMul(mh, xr), [height, n, w, c]);
    // cols: [W, height·N·C] → [width, height, N, C]
    const yc = tf.reshape(tf.transpose(y, [2, 0, 1, 3]), [w, height * n * c]);
    const z = tf.reshape(tf.matMul(mw, yc), [width, height, n, c]);
    return tf.transpose(z, [2, 1, 0, 3]) as tf.Tensor4D;
  });
}

/**
 * Applies a preset to display-space images [N,H,W,C] (C = 1 is repeated to RGB): resize, centre
 * crop, normalise. Returns a new NHWC float32 tensor; differentiable; inputs are not disposed.
 */
export function preprocessImages(images: tf.Tensor, preset: PreprocessPresetName | PreprocessConfig): tf.Tensor4D {
  checkTensor(images, 'images');
  if (images.rank !== 4 || (images.shape[3] !== 3 && images.shape[3] !== 1)) {
    throw new ShapeError(`images must be an RGB (or grayscale) batch [N,H,W,3|1], got [${images.shape.join(',')}]`, {
      actual: images.shape,
    });
  }
  const c = resolvePreprocess(preset);
  return tf.tidy(() => {
    let x = images as tf.Tensor4D;
    if (x.shape[3] === 1) x = tf.tile(x, [1, 1, 1, 3]);
    const [, h, w] = x.shape;
    if (c.resize) {
      const [oh, ow] = c.resize.kind === 'short-edge' ? shortEdgeSize(h, w, c.resize.size) : [c.resize.height, c.resize.width];
      x = resizeAntialiased(x, oh, ow, c.antialias ?? true);
    }
    if (c.centerCrop) {
      const [ch, cw] = c.centerCrop;
      const [, hh, ww] = x.shape;
      if (ch > hh || cw > ww) {
        throw new ShapeError(`centre crop ${ch}x${cw} is larger than the resized image ${hh}x${ww}`, { crop: [ch, cw], size: [hh, ww] });
      }
      const top = roundHalfEven((hh - ch) / 2);
      const left = roundHalfEven((ww - cw) / 2);
      x = tf.slice(x, [0, top, left, 0], [-1, ch, cw, 3]);
    }
    if (c.mean) x = tf.sub(x, tf.tensor1d([...c.mean]));
    if (c.std) x = tf.div(x, tf.tensor1d([...c.std]));
    return x;
  });
}
