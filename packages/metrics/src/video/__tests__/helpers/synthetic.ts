// Synthetic motion with known ground truth on real photographs, for the flow tests.
import * as tf from '@tensorflow/tfjs-core';

/** A 2×2 linear map [a, b, c, d] (x' = a x + b y, y' = c x + d y) about the image centre. */
export type Linear2 = [number, number, number, number];

/**
 * A frame pair with known flow: at `factor`× resolution the content moves by p → c + M(p − c) + t·factor
 * (bilinear `tf.image.transform`), then both frames are `factor`×`factor` average-pooled and centre-
 * cropped to `crop`×`crop`. Pooling an exactly shifted high-resolution image gives an exact
 * sub-pixel shift at low resolution without interpolation blur. The flow is in low-res pixels.
 */
export function knownMotionPair(
  hi: tf.Tensor4D,
  m: Linear2,
  t: [number, number],
  factor: number,
  crop: number,
): { i0: tf.Tensor4D; i1: tf.Tensor4D; flow: tf.Tensor4D } {
  return tf.tidy(() => {
    const [, h, w] = hi.shape;
    const cx = (w - 1) / 2;
    const cy = (h - 1) / 2;
    const tx = t[0] * factor;
    const ty = t[1] * factor;
    const [a, b, c, d] = m;
    const det = a * d - b * c;
    const [ia, ib, ic, id] = [d / det, -b / det, -c / det, a / det];
    // output q samples the input at c + M⁻¹(q − c − t)
    const a2 = cx - ia * (cx + tx) - ib * (cy + ty);
    const b2 = cy - ic * (cx + tx) - id * (cy + ty);
    const moved = tf.image.transform(hi, tf.tensor2d([[ia, ib, a2, ic, id, b2, 0, 0]]), 'bilinear', 'nearest');
    const lo0 = tf.avgPool(hi, factor, factor, 'valid') as tf.Tensor4D;
    const lo1 = tf.avgPool(moved, factor, factor, 'valid') as tf.Tensor4D;
    const off = Math.floor((lo0.shape[1] - crop) / 2);
    const offX = Math.floor((lo0.shape[2] - crop) / 2);
    const i0 = tf.slice(lo0, [0, off, offX, 0], [1, crop, crop, -1]);
    const i1 = tf.slice(lo1, [0, off, offX, 0], [1, crop, crop, -1]);
    const gt = new Float32Array(crop * crop * 2);
    for (let y = 0; y < crop; y++) {
      for (let x = 0; x < crop; x++) {
        // low-res pixel centre (x + off) sits at high-res coordinate factor·(x + off) + (factor − 1)/2
        const px = factor * (x + offX) + (factor - 1) / 2 - cx;
        const py = factor * (y + off) + (factor - 1) / 2 - cy;
        gt[(y * crop + x) * 2] = (a * px + b * py + tx - px) / factor;
        gt[(y * crop + x) * 2 + 1] = (c * px + d * py + ty - py) / factor;
      }
    }
    return { i0, i1, flow: tf.tensor4d(gt, [1, crop, crop, 2]) };
  });
}

/** Rotation by `degrees` as a {@link Linear2}. */
export function rotation(degrees: number): Linear2 {
  const r = (degrees * Math.PI) / 180;
  return [Math.cos(r), -Math.sin(r), Math.sin(r), Math.cos(r)];
}

/** Reads the Farnebäck fixture written by scripts/reference/flow_reference.py. */
export function decodeFixture(fx: {
  width: number;
  height: number;
  pairs: number[][];
  frames_uint8_b64: string;
  flow_float32le_b64: string;
}): { frames0: tf.Tensor4D; frames1: tf.Tensor4D; flow: tf.Tensor4D } {
  const { width: w, height: h } = fx;
  const p = fx.pairs.length;
  const fr = Buffer.from(fx.frames_uint8_b64, 'base64');
  const fl = Buffer.from(fx.flow_float32le_b64, 'base64');
  const flow = new Float32Array(p * h * w * 2);
  for (let i = 0; i < flow.length; i++) flow[i] = fl.readFloatLE(4 * i);
  const f0 = new Float32Array(p * h * w);
  const f1 = new Float32Array(p * h * w);
  for (let k = 0; k < p; k++) {
    for (let i = 0; i < h * w; i++) {
      f0[k * h * w + i] = (fr[2 * k * h * w + i] as number) / 255;
      f1[k * h * w + i] = (fr[(2 * k + 1) * h * w + i] as number) / 255;
    }
  }
  return {
    frames0: tf.tensor4d(f0, [p, h, w, 1]),
    frames1: tf.tensor4d(f1, [p, h, w, 1]),
    flow: tf.tensor4d(flow, [p, h, w, 2]),
  };
}
