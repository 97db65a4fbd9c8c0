/**
 * Image files ↔ display-space tensors: PNG (pngjs) and JPEG (jpeg-js), both pure JS so they
 * work on every machine without native builds. Writes are atomic (temp file + rename).
 * @module
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import jpeg from 'jpeg-js';
import { PNG } from 'pngjs';
import { InputError, ShapeError } from '../errors.js';
import type { Image, ImageBatch } from '../tensor/types.js';
import { imageFromUint8, toUint8 } from '../tensor/convert.js';
import { assertRank } from '../tensor/validate.js';

/** Decoded 8-bit pixels, interleaved, row-major. */
export interface DecodedPixels {
  width: number;
  height: number;
  channels: 1 | 3;
  data: Uint8Array;
}

/** Extensions {@link readImageFile} understands. */
export const IMAGE_EXTENSIONS = ['.png', '.jpg', '.jpeg'] as const;

function rgbaTo(data: Uint8Array | Buffer, width: number, height: number, channels: 1 | 3): Uint8Array {
  const n = width * height;
  const out = new Uint8Array(n * channels);
  for (let i = 0; i < n; i++) {
    const r = data[4 * i] as number;
    const g = data[4 * i + 1] as number;
    const b = data[4 * i + 2] as number;
    if (channels === 3) {
      out[3 * i] = r;
      out[3 * i + 1] = g;
      out[3 * i + 2] = b;
    } else {
      out[i] = Math.round(0.299 * r + 0.587 * g + 0.114 * b);
    }
  }
  return out;
}

function sniff(bytes: Uint8Array): 'png' | 'jpeg' | null {
  if (bytes.length >= 8 && bytes[0] === 0x89 && bytes[1] === 0x50 && bytes[2] === 0x4e && bytes[3] === 0x47) return 'png';
  if (bytes.length >= 3 && bytes[0] === 0xff && bytes[1] === 0xd8 && bytes[2] === 0xff) return 'jpeg';
  return null;
}

/**
 * Decodes PNG or JPEG bytes (format sniffed from the magic number, not the file name) to
 * 8-bit pixels with `channels` channels (RGB or BT.601 luma). Alpha is dropped.
 */
export function decodeImageBytes(bytes: Uint8Array, channels: 1 | 3 = 3, name = 'image'): DecodedPixels {
  const kind = sniff(bytes);
  try {
    if (kind === 'png') {
      const png = PNG.sync.read(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength));
      return { width: png.width, height: png.height, channels, data: rgbaTo(png.data, png.width, png.height, channels) };
    }
    if (kind === 'jpeg') {
      const img = jpeg.decode(bytes, { useTArray: true, formatAsRGBA: true, maxMemoryUsageInMB: 1024 });
      return { width: img.width, height: img.height, channels, data: rgbaTo(img.data, img.width, img.height, channels) };
    }
  } catch (err) {
    throw new InputError('IMAGE_CORRUPT', `${name} could not be decoded as ${kind}: ${(err as Error).message}`, {
      name,
    });
  }
  throw new InputError('IMAGE_UNSUPPORTED', `${name} is not a PNG or JPEG file (unrecognised magic bytes)`, { name });
}

/** Reads a PNG/JPEG file as a display-space [H,W,C] image. */
export function readImageFile(file: string, channels: 1 | 3 = 3): Image<'display'> {
  let bytes: Buffer;
  try {
    bytes = fs.readFileSync(file);
  } catch (err) {
    throw new InputError('IMAGE_UNREADABLE', `cannot read image ${file}: ${(err as Error).message}`, { file });
  }
  if (bytes.length === 0) throw new InputError('IMAGE_CORRUPT', `${file} is empty (0 bytes)`, { file });
  const px = decodeImageBytes(bytes, channels, file);
  return imageFromUint8(px.data, px.height, px.width, px.channels);
}

/**
 * Synchronous twin of `writeFileAtomic`: writes to a temporary sibling, flushes it to disk and
 * renames it over `file` (creating parent folders); the temporary file is removed on failure, so
 * readers see the old file or the new one, never a torn one.
 */
export function writeFileAtomicSync(file: string, bytes: Uint8Array | string): void {
  fs.mkdirSync(path.dirname(path.resolve(file)), { recursive: true });
  const tmp = path.join(path.dirname(file), `.${path.basename(file)}.${process.pid}.${Math.random().toString(36).slice(2, 10)}.tmp`);
  try {
    const fd = fs.openSync(tmp, 'w');
    try {
      fs.writeFileSync(fd, bytes);
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
    fs.renameSync(tmp, file);
  } catch (err) {
    fs.rmSync(tmp, { force: true });
    throw err;
  }
}

/** Encodes 8-bit interleaved pixels (1, 3 or 4 channels) as PNG bytes. */
export function encodePng(data: Uint8Array, width: number, height: number, channels: number): Uint8Array {
  const png = new PNG({ width, height });
  for (let i = 0; i < width * height; i++) {
    const o = 4 * i;
    if (channels === 1) {
      const v = data[i] as number;
      png.data[o] = v;
      png.data[o + 1] = v;
      png.data[o + 2] = v;
    } else {
      png.data[o] = data[channels * i] as number;
      png.data[o + 1] = data[channels * i + 1] as number;
      png.data[o + 2] = data[channels * i + 2] as number;
    }
    png.data[o + 3] = channels === 4 ? (data[4 * i + 3] as number) : 255;
  }
  return PNG.sync.write(png);
}

/** Writes a display-space [H,W,C] image as PNG (atomic). */
export function writePng(file: string, image: Image<'display'>): void {
  assertRank(image, 3, 'image');
  const [h, w, c] = image.shape;
  writeFileAtomicSync(file, encodePng(toUint8(image), w, h, c));
}

/**
 * Tiles a display-space batch into one grid image (row-major, `cols` per row, `pad` pixels of
 * `padValue` between tiles) and returns PNG bytes — for sample grids in reports.
 */
export function imageGridPng(batch: ImageBatch<'display'>, cols?: number, pad = 2, padValue = 1): Uint8Array {
  assertRank(batch, 4, 'image batch');
  const [n, h, w, c] = batch.shape;
  if (c !== 1 && c !== 3) throw new ShapeError(`imageGridPng needs 1 or 3 channels, got ${c}`);
  const nc = Math.max(1, Math.min(n, cols ?? Math.ceil(Math.sqrt(n))));
  const nr = Math.ceil(n / nc);
  const W = nc * w + (nc + 1) * pad;
  const H = nr * h + (nr + 1) * pad;
  const out = new Uint8Array(W * H * c).fill(Math.round(padValue * 255));
  const px = toUint8(batch);
  for (let k = 0; k < n; k++) {
    const oy = pad + Math.floor(k / nc) * (h + pad);
    const ox = pad + (k % nc) * (w + pad);
    for (let y = 0; y < h; y++) {
      const src = ((k * h + y) * w) * c;
      out.set(px.subarray(src, src + w * c), ((oy + y) * W + ox) * c);
    }
  }
  return encodePng(out, W, H, c);
}
