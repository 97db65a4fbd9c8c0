/**
 * Conversions between the tensor types of the contract. Each returns a new tensor; inputs are
 * never disposed (the caller owns them).
 * @module
 */
import * as tf from '@tensorflow/tfjs-core';
import { ShapeError } from '../errors.js';
import type { Image, ImageBatch, ValueRange, Video, VideoBatch } from './types.js';
import { asImageBatch, assertRank } from './validate.js';

/** Model space [-1, 1] → display space [0, 1]: `(x + 1) / 2`, clipped to [0, 1]. */
export function toDisplayRange<T extends ImageBatch<'model'> | Image<'model'> | Video<'model'> | VideoBatch<'model'>>(
  x: T,
): T extends ImageBatch<'model'>
  ? ImageBatch<'display'>
  : T extends Image<'model'>
    ? Image<'display'>
    : T extends Video<'model'>
      ? Video<'display'>
      : VideoBatch<'display'> {
  return tf.tidy(() => tf.clipByValue(tf.mul(tf.add(x, 1), 0.5), 0, 1)) as never;
}

/** Display space [0, 1] → model space [-1, 1]: `2x − 1`. */
export function toModelRange<
  T extends ImageBatch<'display'> | Image<'display'> | Video<'display'> | VideoBatch<'display'>,
>(
  x: T,
): T extends ImageBatch<'display'>
  ? ImageBatch<'model'>
  : T extends Image<'display'>
    ? Image<'model'>
    : T extends Video<'display'>
      ? Video<'model'>
      : VideoBatch<'model'> {
  return tf.tidy(() => tf.sub(tf.mul(x, 2), 1)) as never;
}

/** [H,W,C] → [1,H,W,C]. */
export function imageToBatch<R extends ValueRange>(image: Image<R>): ImageBatch<R> {
  assertRank(image, 3, 'image');
  return tf.expandDims(image, 0) as unknown as ImageBatch<R>;
}

/** Stacks single images of one size into a batch. */
export function stackImages<R extends ValueRange>(images: ReadonlyArray<Image<R>>): ImageBatch<R> {
  if (images.length === 0) throw new ShapeError('stackImages needs at least one image');
  const first = images[0] as Image<R>;
  images.forEach((im, i) => {
    if (im.shape.join(',') !== first.shape.join(',')) {
      throw new ShapeError(
        `image ${i} has shape [${im.shape.join(',')}] but image 0 has [${first.shape.join(',')}]: resize first`,
        { index: i },
      );
    }
  });
  return tf.stack(images as unknown as tf.Tensor3D[]) as ImageBatch<R>;
}

/** Splits a batch into single images. */
export function unstackImages<R extends ValueRange>(batch: ImageBatch<R>): Array<Image<R>> {
  assertRank(batch, 4, 'image batch');
  return tf.unstack(batch) as Array<Image<R>>;
}

/** A clip's frames as an image batch: [T,H,W,C] → [T,H,W,C] relabelled (no copy of semantics). */
export function videoToFrames<R extends ValueRange>(video: Video<R>): ImageBatch<R> {
  assertRank(video, 4, 'video');
  return tf.clone(video) as unknown as ImageBatch<R>;
}

/** Frames (an image batch in time order) as a clip. */
export function framesToVideo<R extends ValueRange>(frames: ImageBatch<R>): Video<R> {
  assertRank(frames, 4, 'frames');
  return tf.clone(frames) as unknown as Video<R>;
}

/** [B,T,H,W,C] → [B·T,H,W,C] frames (clip-major). */
export function videoBatchToFrames<R extends ValueRange>(videos: VideoBatch<R>): ImageBatch<R> {
  assertRank(videos, 5, 'video batch');
  const [b, t, h, w, c] = videos.shape;
  return tf.reshape(videos, [b * t, h, w, c]) as ImageBatch<R>;
}

/** [B·T,H,W,C] frames (clip-major) → [B,T,H,W,C]. */
export function framesToVideoBatch<R extends ValueRange>(frames: ImageBatch<R>, framesPerClip: number): VideoBatch<R> {
  assertRank(frames, 4, 'frames');
  const [n, h, w, c] = frames.shape;
  if (!Number.isInteger(framesPerClip) || framesPerClip <= 0 || n % framesPerClip !== 0) {
    throw new ShapeError(`${n} frames cannot be split into clips of ${framesPerClip} frames`, { n, framesPerClip });
  }
  return tf.reshape(frames, [n / framesPerClip, framesPerClip, h, w, c]) as VideoBatch<R>;
}

/**
 * Interleaved 8-bit pixels (e.g. decoded PNG/JPEG/ffmpeg rgb24) → a display-space image.
 * `data.length` must equal `height·width·channels`.
 */
export function imageFromUint8(data: Uint8Array | Uint8ClampedArray, height: number, width: number, channels: number): Image<'display'> {
  if (data.length !== height * width * channels) {
    throw new ShapeError(
      `pixel buffer has ${data.length} bytes, expected ${height}x${width}x${channels} = ${height * width * channels}`,
    );
  }
  const f = new Float32Array(data.length);
  for (let i = 0; i < data.length; i++) f[i] = (data[i] as number) / 255;
  return tf.tensor3d(f, [height, width, channels], 'float32') as Image<'display'>;
}

/** A display-space image or batch → 8-bit pixels (rounded, clipped), for writing files. */
export function toUint8(x: Image<'display'> | ImageBatch<'display'>): Uint8Array {
  const v = x.dataSync();
  const out = new Uint8Array(v.length);
  for (let i = 0; i < v.length; i++) {
    const p = Math.round((v[i] as number) * 255);
    out[i] = p < 0 ? 0 : p > 255 ? 255 : p;
  }
  return out;
}

/** ITU-R BT.601 luma of an RGB batch (1-channel batches are returned as a copy). */
export function toGrayscale<R extends ValueRange>(x: ImageBatch<R>): ImageBatch<R> {
  assertRank(x, 4, 'image batch');
  const c = x.shape[3];
  if (c === 1) return tf.clone(x) as ImageBatch<R>;
  if (c !== 3) throw new ShapeError(`toGrayscale needs 1 or 3 channels, got ${c}`);
  return tf.tidy(() => tf.sum(tf.mul(x, tf.tensor1d([0.299, 0.587, 0.114])), 3, true)) as ImageBatch<R>;
}

/** Repeats a 1-channel batch to 3 channels (or returns a copy of a 3-channel one). */
export function toRGB<R extends ValueRange>(x: ImageBatch<R>): ImageBatch<R> {
  assertRank(x, 4, 'image batch');
  const c = x.shape[3];
  if (c === 3) return tf.clone(x) as ImageBatch<R>;
  if (c !== 1) throw new ShapeError(`toRGB needs 1 or 3 channels, got ${c}`);
  return tf.tile(x, [1, 1, 1, 3]) as ImageBatch<R>;
}

/** Bilinear (half-pixel centres, as PIL/torchvision without antialias) resize of a batch. */
export function resizeImages<R extends ValueRange>(
  x: ImageBatch<R>,
  height: number,
  width: number,
  method: 'bilinear' | 'nearest' = 'bilinear',
): ImageBatch<R> {
  assertRank(x, 4, 'image batch');
  if (x.shape[1] === height && x.shape[2] === width) return tf.clone(x) as ImageBatch<R>;
  return tf.tidy(() =>
    asImageBatch(
      method === 'bilinear'
        ? tf.image.resizeBilinear(x, [height, width], false, true)
        : tf.image.resizeNearestNeighbor(x, [height, width], false, true),
      'display',
    ),
  ) as unknown as ImageBatch<R>;
}
