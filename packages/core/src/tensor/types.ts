/**
 * The tensor contract every diffmem package shares.
 *
 * Layout, value range and meaning are part of the static type (a phantom brand), so a function
 * that wants images in model space [-1, 1] cannot silently be given display-space [0, 1] data.
 * Brands cost nothing at run time: values are plain `tf.Tensor`s. Create them through the
 * validating constructors in `./validate.ts` (`asImageBatch`, `asVideo`, …) or the conversions
 * in `./convert.ts`.
 *
 * | type | shape | dtype | values |
 * |---|---|---|---|
 * | `ImageBatch<'model'>` | [N,H,W,C] | float32 | [-1, 1] (what diffusion models consume) |
 * | `ImageBatch<'display'>` | [N,H,W,C] | float32 | [0, 1] (what metrics and files use) |
 * | `Image<R>` | [H,W,C] | float32 | as R |
 * | `Video<R>` | [T,H,W,C] | float32 | as R |
 * | `VideoBatch<R>` | [B,T,H,W,C] | float32 | as R |
 * | `FlowField` | [N,H,W,2] | float32 | (dx, dy) in pixels, x to the right, y down |
 * | `Noise` | [N,H,W,C] | float32 | unbounded (N(0, I) draws, x_t, latents) |
 * @module
 */
import type * as tf from '@tensorflow/tfjs-core';

/** `'model'`: [-1, 1], the space diffusion models are trained in. `'display'`: [0, 1]. */
export type ValueRange = 'model' | 'display';

/** Numeric bounds of each {@link ValueRange}. */
export const VALUE_RANGES: Readonly<Record<ValueRange, readonly [number, number]>> = {
  model: [-1, 1],
  display: [0, 1],
};

declare const contract: unique symbol;

/** A phantom brand: a tensor plus compile-time facts about its layout and values. */
export type Branded<T extends tf.Tensor, B> = T & { readonly [contract]: B };

/** A batch of images, NHWC float32, values in `R`. */
export type ImageBatch<R extends ValueRange = ValueRange> = Branded<
  tf.Tensor4D,
  { kind: 'image-batch'; layout: 'NHWC'; range: R }
>;
/** A batch of images in model space [-1, 1]. */
export type ModelImageBatch = ImageBatch<'model'>;
/** A batch of images in display space [0, 1]. */
export type DisplayImageBatch = ImageBatch<'display'>;

/** A single image, HWC float32, values in `R`. */
export type Image<R extends ValueRange = ValueRange> = Branded<
  tf.Tensor3D,
  { kind: 'image'; layout: 'HWC'; range: R }
>;

/** A video clip, THWC float32, values in `R`. */
export type Video<R extends ValueRange = ValueRange> = Branded<
  tf.Tensor4D,
  { kind: 'video'; layout: 'THWC'; range: R }
>;

/** A batch of video clips, BTHWC float32, values in `R`. */
export type VideoBatch<R extends ValueRange = ValueRange> = Branded<
  tf.Tensor5D,
  { kind: 'video-batch'; layout: 'BTHWC'; range: R }
>;

/** Dense optical flow between frame pairs, [N,H,W,2] float32, (dx, dy) in pixels. */
export type FlowField = Branded<tf.Tensor4D, { kind: 'flow'; layout: 'NHW2' }>;

/** Unbounded NHWC float32 samples: Gaussian noise, noisy samples x_t, latents. */
export type Noise = Branded<tf.Tensor4D, { kind: 'noise'; layout: 'NHWC' }>;

/** Class labels for class-conditional models, [N] int32. */
export type ClassLabels = Branded<tf.Tensor1D, { kind: 'class-labels' }>;

/**
 * How much of a tensor's contents to check at run time.
 * - `'shape'`: rank, shape and dtype only (no data read; free).
 * - `'full'`: also reads the data back and checks finiteness and the value range.
 */
export type ValidationLevel = 'shape' | 'full';

/** Spatial/channel size of an image batch. */
export interface ImageSize {
  height: number;
  width: number;
  channels: number;
}
