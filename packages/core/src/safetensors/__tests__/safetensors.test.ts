import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { SafetensorsError } from '../../errors.js';
import {
  bfloat16BitsToNumber,
  float16BitsToNumber,
  loadSafetensorsFile,
  numberToBfloat16Bits,
  numberToFloat16Bits,
  readSafetensors,
  readSafetensorsHeader,
  saveSafetensorsFile,
  writeSafetensors,
  type SafetensorsTensor,
} from '../index.js';

/** Builds a file from a raw header string and a data buffer (header padded to 8 unless told). */
function build(header: string | object, data: Uint8Array = new Uint8Array(0), opts: { n?: bigint; pad?: boolean } = {}): Uint8Array {
  let text = typeof header === 'string' ? header : JSON.stringify(header);
  if (opts.pad !== false) while (text.length % 8 !== 0) text += ' ';
  const json = new TextEncoder().encode(text);
  const out = new Uint8Array(8 + json.length + data.length);
  new DataView(out.buffer).setBigUint64(0, opts.n ?? BigInt(json.length), true);
  out.set(json, 8);
  out.set(data, 8 + json.length);
  return out;
}

function expectCode(fn: () => unknown, code: string, messagePart?: string): void {
  let caught: unknown;
  try {
    fn();
  } catch (e) {
    caught = e;
  }
  expect(caught).toBeInstanceOf(SafetensorsError);
  expect((caught as SafetensorsError).code).toBe(code);
  if (messagePart) expect((caught as Error).message).toContain(messagePart);
}

const f32 = (values: number[], shape: number[]): SafetensorsTensor => ({ dtype: 'F32', shape, data: Float32Array.from(values) });

describe('writeSafetensors / readSafetensors round trip', () => {
  it('round-trips every element type and the metadata', () => {
    const tensors = new Map<string, SafetensorsTensor>([
      ['w', f32([1, -2.5, 3.25, 4, 5, 6], [2, 3])],
      ['scalar', f32([7], [])],
      ['empty', f32([], [0, 4])],
      ['ids', { dtype: 'I32', shape: [3], data: Int32Array.from([1, -2, 2147483647]) }],
      ['big', { dtype: 'I64', shape: [2], data: BigInt64Array.from([-5n, 1n << 40n]) }],
      ['u64', { dtype: 'U64', shape: [1], data: BigUint64Array.from([(1n << 64n) - 1n]) }],
      ['bytes', { dtype: 'U8', shape: [2, 2], data: Uint8Array.from([0, 1, 254, 255]) }],
      ['i8', { dtype: 'I8', shape: [2], data: Int8Array.from([-128, 127]) }],
      ['i16', { dtype: 'I16', shape: [2], data: Int16Array.from([-300, 300]) }],
      ['u16', { dtype: 'U16', shape: [1], data: Uint16Array.from([65535]) }],
      ['u32', { dtype: 'U32', shape: [1], data: Uint32Array.from([4294967295]) }],
      ['mask', { dtype: 'BOOL', shape: [3], data: Uint8Array.from([1, 0, 1]) }],
      ['d', { dtype: 'F64', shape: [2], data: Float64Array.from([0.1, 1e300]) }],
    ]);
    const bytes = writeSafetensors(tensors, { format: 'pt', note: 'héllo' });
    const back = readSafetensors(bytes, { keepDtype: true });
    expect(back.metadata).toEqual({ format: 'pt', note: 'héllo' });
    expect(new Set(back.tensors.keys())).toEqual(new Set(tensors.keys()));
    for (const [name, t] of tensors) {
      const r = back.tensors.get(name) as SafetensorsTensor;
      expect(r.dtype).toBe(t.dtype);
      expect(r.shape).toEqual(t.shape);
      expect(r.data.constructor).toBe(t.data.constructor);
      expect(Array.from(r.data as ArrayLike<number>)).toEqual(Array.from(t.data as ArrayLike<number>));
    }
    // F64 widens to float32 by default.
    const d = readSafetensors(bytes).tensors.get('d') as SafetensorsTensor;
    expect(d.dtype).toBe('F32');
    expect(d.sourceDtype).toBe('F64');
    expect(d.data[0]).toBe(Math.fround(0.1));
    expect(d.data[1]).toBe(Infinity);
  });

  it('lays the file out like the Rust writer: 8-aligned header padded with spaces, dtype-descending then name order', () => {
    const bytes = writeSafetensors({
      b: f32([1], [1]),
      a: f32([2, 3], [2]),
      h: { dtype: 'F16', shape: [1], data: Float32Array.from([1]) },
      l: { dtype: 'I64', shape: [1], data: BigInt64Array.from([3n]) },
      10: f32([4], [1]),
    });
    const n = Number(new DataView(bytes.buffer).getBigUint64(0, true));
    expect(n % 8).toBe(0);
    const text = new TextDecoder().decode(bytes.subarray(8, 8 + n));
    expect(text.trimEnd().endsWith('}')).toBe(true);
    expect(/^ *$/.test(text.slice(text.trimEnd().length))).toBe(true);
    // I64 > F32 > F16 in the enum; names sorted byte-wise inside a dtype.
    const order = Object.keys(JSON.parse(text) as object);
    expect(text.indexOf('"l"')).toBeLessThan(text.indexOf('"10"'));
    expect(text.indexOf('"10"')).toBeLessThan(text.indexOf('"a"'));
    expect(text.indexOf('"a"')).toBeLessThan(text.indexOf('"b"'));
    expect(text.indexOf('"b"')).toBeLessThan(text.indexOf('"h"'));
    expect(order).toHaveLength(5);
    const header = readSafetensorsHeader(bytes);
    expect(header.tensors.get('l')?.dataOffsets).toEqual([0, 8]);
    expect(header.tensors.get('h')?.dataOffsets).toEqual([24, 26]);
  });

  it('reads a known byte-exact file (the Rust crate doc example)', () => {
    const header = '{"test":{"dtype":"I32","shape":[2,2],"data_offsets":[0,16]}}';
    const bytes = build(header, new Uint8Array(16), { pad: false });
    const r = readSafetensors(bytes);
    expect(r.metadata).toBeNull();
    expect(r.tensors.get('test')).toEqual({ dtype: 'I32', shape: [2, 2], data: new Int32Array(4) });
  });

  it('reads misaligned Node Buffers by copying, and aligned ones without copying unless asked', () => {
    const bytes = writeSafetensors({ x: f32([1, 2, 3], [3]) });
    const big = new Uint8Array(bytes.length + 1);
    big.set(bytes, 1);
    const misaligned = big.subarray(1);
    const x = readSafetensors(misaligned).tensors.get('x') as SafetensorsTensor;
    expect(Array.from(x.data as Float32Array)).toEqual([1, 2, 3]);
    expect(x.data.buffer).not.toBe(big.buffer);

    const aligned = readSafetensors(bytes).tensors.get('x') as SafetensorsTensor;
    expect(aligned.data.buffer).toBe(bytes.buffer);
    const copied = readSafetensors(bytes, { copy: true }).tensors.get('x') as SafetensorsTensor;
    expect(copied.data.buffer).not.toBe(bytes.buffer);
    const buf = Buffer.from(bytes);
    expect(Array.from(readSafetensors(buf).tensors.get('x')?.data as Float32Array)).toEqual([1, 2, 3]);
  });

  it('converts F16 and BF16 to float32 on load, and rounds to nearest even on save', () => {
    const values = [0, -0, 1, -2, 0.1, 65504, 1e-7, 6e-8, 70000, 1 / 3, Infinity, -Infinity];
    const bytes = writeSafetensors({
      h: { dtype: 'F16', shape: [values.length], data: Float32Array.from(values) },
      b: { dtype: 'BF16', shape: [values.length], data: Float32Array.from(values) },
    });
    const r = readSafetensors(bytes);
    const h = r.tensors.get('h') as SafetensorsTensor;
    const b = r.tensors.get('b') as SafetensorsTensor;
    expect(h.dtype).toBe('F32');
    expect(h.sourceDtype).toBe('F16');
    expect(b.sourceDtype).toBe('BF16');
    expect(Array.from(h.data as Float32Array)).toEqual([
      0, -0, 1, -2, 0.0999755859375, 65504, 1.1920928955078125e-7, 5.960464477539063e-8, Infinity, 0.333251953125, Infinity, -Infinity,
    ]);
    expect(Array.from(b.data as Float32Array).slice(0, 6)).toEqual([0, -0, 1, -2, 0.10009765625, 65536]);
    // Keep the raw bits when asked.
    const raw = readSafetensors(bytes, { keepDtype: true }).tensors.get('h') as SafetensorsTensor;
    expect(raw.dtype).toBe('F16');
    expect(raw.data).toBeInstanceOf(Uint16Array);
  });

  it('float16 conversion is exact for every finite half and ties round to even', () => {
    const mismatches: number[] = [];
    for (let bits = 0; bits < 0x10000; bits++) {
      const v = float16BitsToNumber(bits);
      const back = numberToFloat16Bits(v);
      if (Number.isNaN(v) ? !Number.isNaN(float16BitsToNumber(back)) : back !== bits) mismatches.push(bits);
    }
    expect(mismatches).toEqual([]);
    expect(numberToFloat16Bits(1 + 2 ** -11)).toBe(0x3c00); // tie → even (down)
    expect(numberToFloat16Bits(1 + 3 * 2 ** -11)).toBe(0x3c02); // tie → even (up)
    expect(numberToFloat16Bits(2 ** -25)).toBe(0); // half of the smallest subnormal → 0
    expect(numberToFloat16Bits(1.5 * 2 ** -25)).toBe(1);
    expect(numberToBfloat16Bits(1 + 2 ** -8)).toBe(0x3f80);
    expect(numberToBfloat16Bits(1 + 3 * 2 ** -8)).toBe(0x3f82);
    expect(Number.isNaN(bfloat16BitsToNumber(numberToBfloat16Bits(NaN)))).toBe(true);
  });

  it('keeps raw bytes for dtypes without a JS element type (F8, F4, C64)', () => {
    const bytes = writeSafetensors({
      f8: { dtype: 'F8_E4M3', shape: [3], data: Uint8Array.from([1, 2, 3]) },
      f4: { dtype: 'F4', shape: [2, 3], data: Uint8Array.from([0x12, 0x34, 0x56]) },
    });
    const r = readSafetensors(bytes);
    expect(r.tensors.get('f8')).toEqual({ dtype: 'F8_E4M3', shape: [3], data: Uint8Array.from([1, 2, 3]) });
    expect(Array.from(r.tensors.get('f4')?.data as Uint8Array)).toEqual([0x12, 0x34, 0x56]);
  });

  it('writes and reads files atomically', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'diffmem-st-'));
    try {
      const path = join(dir, 'model.safetensors');
      await saveSafetensorsFile(path, { w: f32([1, 2], [2]) }, { format: 'pt' });
      await saveSafetensorsFile(path, { w: f32([3, 4, 5], [3]) }, { format: 'pt' });
      expect(await readdir(dir)).toEqual(['model.safetensors']); // no temp files left behind
      const back = await loadSafetensorsFile(path);
      expect(Array.from(back.tensors.get('w')?.data as Float32Array)).toEqual([3, 4, 5]);
      expect(back.metadata).toEqual({ format: 'pt' });
      // A failed write leaves the previous file intact and no temp file.
      await expect(saveSafetensorsFile(path, { w: { dtype: 'F32', shape: [2], data: new Float32Array(3) } })).rejects.toThrow(SafetensorsError);
      expect(await readdir(dir)).toEqual(['model.safetensors']);
      expect((await readFile(path)).length).toBeGreaterThan(0);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('readSafetensors rejects every violation of the format', () => {
  const entry = (dtype: string, shape: number[], b: number, e: number) => ({ dtype, shape, data_offsets: [b, e] });

  it('too small: fewer than 8 bytes', () => {
    expectCode(() => readSafetensors(new Uint8Array(5)), 'SAFETENSORS_TOO_SMALL');
  });

  it('header length over the 100,000,000-byte limit', () => {
    expectCode(() => readSafetensors(build('{}', undefined, { n: 100_000_001n })), 'SAFETENSORS_HEADER_TOO_LARGE');
    expectCode(() => readSafetensors(build('{}', undefined, { n: 2n ** 63n })), 'SAFETENSORS_HEADER_TOO_LARGE');
  });

  it('header longer than the file (truncated file)', () => {
    const good = writeSafetensors({ w: f32([1, 2], [2]) });
    expectCode(() => readSafetensors(good.subarray(0, 20)), 'SAFETENSORS_HEADER_TRUNCATED');
    expectCode(() => readSafetensors(good.subarray(0, good.length - 1)), 'SAFETENSORS_BUFFER_INCOMPLETE', 'truncated');
  });

  it('header that is not UTF-8', () => {
    const bytes = build('{"a":1}  ');
    bytes[10] = 0xff;
    expectCode(() => readSafetensors(bytes), 'SAFETENSORS_HEADER_NOT_UTF8');
  });

  it('garbled header: not JSON, or not a JSON object', () => {
    expectCode(() => readSafetensors(build('{"w": {"dtype": "F32",')), 'SAFETENSORS_HEADER_NOT_JSON');
    expectCode(() => readSafetensors(build('[1,2,3]')), 'SAFETENSORS_HEADER_NOT_OBJECT');
    expectCode(() => readSafetensors(build('  {}')), 'SAFETENSORS_HEADER_NOT_OBJECT', "start with '{'");
    expectCode(() => readSafetensors(build('{}\0\0\0\0\0\0', undefined, { pad: false })), 'SAFETENSORS_HEADER_NOT_JSON');
  });

  it('entries that are not {dtype, shape, data_offsets}', () => {
    expectCode(() => readSafetensors(build({ w: 5 })), 'SAFETENSORS_BAD_ENTRY', '"w"');
    expectCode(() => readSafetensors(build({ w: { dtype: 'F32', shape: [1] } })), 'SAFETENSORS_BAD_ENTRY', 'data_offsets');
    expectCode(
      () => readSafetensors(build('{"w":{"dtype":"F32","dtype":"F32","shape":[1],"data_offsets":[0,4]}}', new Uint8Array(4))),
      'SAFETENSORS_BAD_ENTRY',
      'twice',
    );
  });

  it('unknown dtype names', () => {
    expectCode(() => readSafetensors(build({ w: entry('float32', [1], 0, 4) }, new Uint8Array(4))), 'SAFETENSORS_BAD_DTYPE', 'float32');
    expectCode(() => readSafetensors(build({ w: entry('f32', [1], 0, 4) }, new Uint8Array(4))), 'SAFETENSORS_BAD_DTYPE');
  });

  it('shapes that are not non-negative integers', () => {
    for (const shape of [[-1], [1.5], ['2'], 3, [2 ** 60, 2 ** 60]]) {
      expectCode(
        () => readSafetensors(build({ w: { dtype: 'F32', shape, data_offsets: [0, 4] } }, new Uint8Array(4))),
        'SAFETENSORS_BAD_SHAPE',
      );
    }
  });

  it('malformed data_offsets', () => {
    for (const offsets of [[0], [4, 0], [-4, 0], [0, 4.5], 'x']) {
      expectCode(
        () => readSafetensors(build({ w: { dtype: 'F32', shape: [1], data_offsets: offsets } }, new Uint8Array(4))),
        'SAFETENSORS_BAD_OFFSETS',
      );
    }
  });

  it('wrong sizes: offsets that do not span numel · itemsize', () => {
    expectCode(() => readSafetensors(build({ w: entry('F32', [2], 0, 4) }, new Uint8Array(4))), 'SAFETENSORS_SIZE_MISMATCH', 'needs 8 bytes');
    expectCode(() => readSafetensors(build({ w: entry('F16', [3], 0, 4) }, new Uint8Array(4))), 'SAFETENSORS_SIZE_MISMATCH');
    // F4 with an odd element count is not a whole number of bytes.
    expectCode(() => readSafetensors(build({ w: entry('F4', [3], 0, 1) }, new Uint8Array(1))), 'SAFETENSORS_SIZE_MISMATCH');
  });

  it('overlapping or holey offsets', () => {
    const overlap = { a: entry('F32', [2], 0, 8), b: entry('F32', [2], 4, 12) };
    expectCode(() => readSafetensors(build(overlap, new Uint8Array(12))), 'SAFETENSORS_OFFSETS_NOT_CONTIGUOUS', 'overlaps');
    const hole = { a: entry('F32', [1], 0, 4), b: entry('F32', [1], 8, 12) };
    expectCode(() => readSafetensors(build(hole, new Uint8Array(12))), 'SAFETENSORS_OFFSETS_NOT_CONTIGUOUS', 'hole');
    const notFromZero = { a: entry('F32', [1], 4, 8) };
    expectCode(() => readSafetensors(build(notFromZero, new Uint8Array(8))), 'SAFETENSORS_OFFSETS_NOT_CONTIGUOUS');
    // Offsets need not be in header order, only tile the buffer once sorted.
    const unordered = { b: entry('F32', [1], 4, 8), a: entry('F32', [1], 0, 4) };
    expect(readSafetensors(build(unordered, new Uint8Array(8))).tensors.size).toBe(2);
  });

  it('buffer not fully covered (trailing bytes) or shorter than the offsets', () => {
    expectCode(() => readSafetensors(build({ a: entry('F32', [1], 0, 4) }, new Uint8Array(5))), 'SAFETENSORS_BUFFER_INCOMPLETE', 'trailing');
    expectCode(() => readSafetensors(build({ a: entry('F32', [2], 0, 8) }, new Uint8Array(4))), 'SAFETENSORS_BUFFER_INCOMPLETE', 'truncated');
  });

  it('duplicate tensor names, which JSON.parse would silently collapse', () => {
    const text = '{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"w":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}';
    expectCode(() => readSafetensors(build(text, new Uint8Array(8))), 'SAFETENSORS_DUPLICATE_NAME', '"w"');
    // Escaped spellings of the same name are the same name.
    const escaped = '{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"\\u0077":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}';
    expectCode(() => readSafetensors(build(escaped, new Uint8Array(8))), 'SAFETENSORS_DUPLICATE_NAME');
    // A name that only looks like a key inside a string value is not a duplicate.
    const tricky = '{"__metadata__":{"k":"\\"w\\":"},"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}';
    expect(readSafetensors(build(tricky, new Uint8Array(4))).metadata).toEqual({ k: '"w":' });
  });

  it('__metadata__ that is not a string → string map', () => {
    expectCode(() => readSafetensors(build({ __metadata__: { a: 1 } })), 'SAFETENSORS_BAD_METADATA', '"a"');
    expectCode(() => readSafetensors(build({ __metadata__: ['a'] })), 'SAFETENSORS_BAD_METADATA');
    expect(readSafetensors(build({ __metadata__: null })).metadata).toBeNull();
  });

  it('an empty file with only "{}" is valid', () => {
    const r = readSafetensors(build('{}'));
    expect(r.tensors.size).toBe(0);
  });
});

describe('writeSafetensors rejects bad input', () => {
  it('names the offending tensor', () => {
    expectCode(() => writeSafetensors({ w: { dtype: 'F99' as 'F32', shape: [1], data: new Float32Array(1) } }), 'SAFETENSORS_BAD_DTYPE', '"w"');
    expectCode(() => writeSafetensors({ w: { dtype: 'F32', shape: [-1], data: new Float32Array(1) } }), 'SAFETENSORS_BAD_SHAPE');
    expectCode(() => writeSafetensors({ w: { dtype: 'F32', shape: [2], data: new Float32Array(3) } }), 'SAFETENSORS_SIZE_MISMATCH', '"w"');
    expectCode(() => writeSafetensors({ w: { dtype: 'I32', shape: [2], data: new Float32Array(2) } }), 'SAFETENSORS_UNSUPPORTED_DTYPE');
    expectCode(() => writeSafetensors({ w: { dtype: 'F8_E5M2', shape: [2], data: new Uint8Array(3) } }), 'SAFETENSORS_SIZE_MISMATCH');
    expectCode(() => writeSafetensors({ __metadata__: { dtype: 'F32', shape: [1], data: new Float32Array(1) } }), 'SAFETENSORS_BAD_ENTRY');
    expectCode(() => writeSafetensors({}, { a: 1 as unknown as string }), 'SAFETENSORS_BAD_METADATA');
  });
});

describe('interoperability with files written from PyTorch (scripts/reference/st_io.py)', () => {
  const file = join(dirname(fileURLToPath(import.meta.url)), 'fixtures', 'dtypes.safetensors');

  it('widens F16 / BF16 / F64 exactly as torch .float() does, and reads the integer dtypes', async () => {
    const { tensors, metadata } = await loadSafetensorsFile(file);
    expect(metadata).toEqual({ written_by: 'scripts/reference/make_unet_fixtures.py' });
    const get = (k: string) => tensors.get(k) as SafetensorsTensor;
    expect(Array.from(get('f16').data as Float32Array)).toEqual(Array.from(get('f16_as_f32').data as Float32Array));
    expect(Array.from(get('bf16').data as Float32Array)).toEqual(Array.from(get('bf16_as_f32').data as Float32Array));
    expect(Array.from(get('f64').data as Float32Array)).toEqual(Array.from(get('f32').data as Float32Array));
    expect(get('f16').sourceDtype).toBe('F16');
    expect(Array.from(get('i64').data as BigInt64Array)).toEqual([-(2n ** 40n), 0n, 7n]);
    expect(Array.from(get('i32').data as Int32Array)).toEqual([-5, 2147483647]);
    expect(Array.from(get('u8').data as Uint8Array)).toEqual([0, 255]);
    expect(get('bool')).toEqual({ dtype: 'BOOL', shape: [3], data: Uint8Array.from([1, 0, 1]) });
    expect(get('scalar')).toEqual({ dtype: 'F32', shape: [], data: Float32Array.from([2.5]) });
    expect(get('empty').shape).toEqual([0, 3]);
  });

  it('narrows float32 to the same F16 / BF16 bits as torch', async () => {
    const raw = (await loadSafetensorsFile(file, { keepDtype: true })).tensors;
    const f32 = raw.get('f32')?.data as Float32Array;
    const ours = readSafetensors(
      writeSafetensors({ h: { dtype: 'F16', shape: [f32.length], data: f32 }, b: { dtype: 'BF16', shape: [f32.length], data: f32 } }),
      { keepDtype: true },
    ).tensors;
    expect(Array.from(ours.get('h')?.data as Uint16Array)).toEqual(Array.from(raw.get('f16')?.data as Uint16Array));
    expect(Array.from(ours.get('b')?.data as Uint16Array)).toEqual(Array.from(raw.get('bf16')?.data as Uint16Array));
  });

  it('writes byte-identical files to the reference writer (same order, padding and offsets)', async () => {
    const bytes = await readFile(file);
    const { tensors, metadata } = readSafetensors(new Uint8Array(bytes), { keepDtype: true });
    expect(Buffer.from(writeSafetensors(tensors, metadata)).equals(bytes)).toBe(true);
  });
});
