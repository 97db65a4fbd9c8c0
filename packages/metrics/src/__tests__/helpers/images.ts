// Test helpers: real images from ../shared/data and the copy-detection transforms.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as tf from '@tensorflow/tfjs-core';
import jpeg from 'jpeg-js';
import { PNG } from 'pngjs';
import { Generator } from '@diffmem/core';

const here = path.dirname(fileURLToPath(import.meta.url));
const repoRoot = path.resolve(here, '../../../../..');
/** `../shared/data` next to the repository. */
export const DATA_DIR = path.resolve(repoRoot, '../shared/data');
/** True when the real test media are present. */
export const HAVE_DATA = fs.existsSync(path.join(DATA_DIR, 'fruits.jpg'));
if (!HAVE_DATA) {
  console.warn(`[metrics tests] ${DATA_DIR} is absent: tests on real images are skipped`);
}

/** Decodes a JPEG/PNG file to a display-space [1,H,W,3] tensor. */
export function readImage(file: string): tf.Tensor4D {
  const bytes = fs.readFileSync(path.join(DATA_DIR, file));
  let rgba: Uint8Array;
  let w: number;
  let h: number;
  if (file.endsWith('.png')) {
    const png = PNG.sync.read(bytes);
    rgba = png.data;
    w = png.width;
    h = png.height;
  } else {
    const img = jpeg.decode(bytes, { useTArray: true, formatAsRGBA: true });
    rgba = img.data;
    w = img.width;
    h = img.height;
  }
  return rgbaToTensor(rgba, w, h);
}

function rgbaToTensor(rgba: Uint8Array, w: number, h: number): tf.Tensor4D {
  const out = new Float32Array(w * h * 3);
  for (let i = 0; i < w * h; i++) for (let c = 0; c < 3; c++) out[3 * i + c] = (rgba[4 * i + c] as number) / 255;
  return tf.tensor4d(out, [1, h, w, 3]);
}

/** JPEG round trip at `quality` (jpeg-js, 4:2:0 like libjpeg defaults). */
export function jpegRoundTrip(x: tf.Tensor4D, quality: number): tf.Tensor4D {
  const [, h, w] = x.shape;
  const v = x.dataSync();
  const rgba = new Uint8Array(w * h * 4);
  for (let i = 0; i < w * h; i++) {
    for (let c = 0; c < 3; c++) rgba[4 * i + c] = Math.max(0, Math.min(255, Math.round((v[3 * i + c] as number) * 255)));
    rgba[4 * i + 3] = 255;
  }
  const enc = jpeg.encode({ data: rgba, width: w, height: h }, quality);
  const dec = jpeg.decode(enc.data, { useTArray: true, formatAsRGBA: true });
  return rgbaToTensor(dec.data, dec.width, dec.height);
}

/** Separable Gaussian blur with standard deviation `sigma` pixels (per channel). */
export function gaussianBlur(x: tf.Tensor4D, sigma: number): tf.Tensor4D {
  const r = Math.ceil(3 * sigma);
  const k: number[] = [];
  for (let i = -r; i <= r; i++) k.push(Math.exp(-(i * i) / (2 * sigma * sigma)));
  const s = k.reduce((a, b) => a + b, 0);
  const kn = k.map((v) => v / s);
  return tf.tidy(() => {
    const [n, h, w, c] = x.shape;
    const planes = tf.reshape(tf.transpose(x, [0, 3, 1, 2]), [n * c, h, w, 1]);
    const kx = tf.tensor4d(kn, [1, kn.length, 1, 1]);
    const ky = tf.tensor4d(kn, [kn.length, 1, 1, 1]);
    const pad = (t: tf.Tensor4D, ph: number, pw: number) => tf.mirrorPad(t, [[0, 0], [ph, ph], [pw, pw], [0, 0]], 'symmetric');
    const bx = tf.conv2d(pad(planes as tf.Tensor4D, 0, r), kx, 1, 'valid');
    const by = tf.conv2d(pad(bx, r, 0), ky, 1, 'valid');
    return tf.transpose(tf.reshape(by, [n, c, h, w]), [0, 2, 3, 1]) as tf.Tensor4D;
  });
}

/** Crop keeping `frac` of each side at a random offset. */
export function randomCrop(x: tf.Tensor4D, frac: number, g: Generator): tf.Tensor4D {
  const [, h, w] = x.shape;
  const ch = Math.round(h * frac);
  const cw = Math.round(w * frac);
  const top = g.randint(h - ch + 1);
  const left = g.randint(w - cw + 1);
  return tf.slice(x, [0, top, left, 0], [1, ch, cw, 3]);
}

/** Brightness, contrast and saturation jitter with factors in [1 − s, 1 + s]. */
export function colorJitter(x: tf.Tensor4D, strength: number, g: Generator): tf.Tensor4D {
  const f = () => 1 - strength + 2 * strength * g.random();
  const [b, c, s] = [f(), f(), f()];
  return tf.tidy(() => {
    let y = tf.mul(x, b);
    const gray = tf.sum(tf.mul(y, tf.tensor1d([0.299, 0.587, 0.114])), 3, true);
    y = tf.add(tf.mul(y, s), tf.mul(gray, 1 - s)); // saturation
    const m = tf.mean(gray);
    y = tf.add(tf.mul(tf.sub(y, m), c), m); // contrast
    return tf.clipByValue(y, 0, 1) as tf.Tensor4D;
  });
}

/** Bilinear resize by a factor (no antialias, like most image libraries' fast path). */
export function rescale(x: tf.Tensor4D, factor: number): tf.Tensor4D {
  const [, h, w] = x.shape;
  return tf.image.resizeBilinear(x, [Math.round(h * factor), Math.round(w * factor)], false, true);
}

/** The named transforms of the copy-detection evaluation. */
export const TRANSFORMS: Record<string, (x: tf.Tensor4D, g: Generator) => tf.Tensor4D> = {
  jpeg30: (x) => jpegRoundTrip(x, 30),
  resize50: (x) => rescale(x, 0.5),
  crop80: (x, g) => randomCrop(x, 0.8, g),
  jitter: (x, g) => colorJitter(x, 0.25, g),
  blur: (x) => gaussianBlur(x, Math.max(1, x.shape[2] / 200)),
  hflip: (x) => tf.reverse(x, 2),
  combo: (x, g) =>
    tf.tidy(() => {
      const a = randomCrop(x, 0.9, g);
      const b = tf.reverse(a, 2) as tf.Tensor4D;
      const c = colorJitter(b, 0.15, g);
      const d = rescale(c, 0.7);
      return jpegRoundTrip(d, 50);
    }),
};
