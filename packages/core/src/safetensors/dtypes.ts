/**
 * safetensors dtypes: names, bit widths, the Rust writer's ordering, and the float16 / bfloat16
 * conversions TF.js needs (it has no 16-bit float dtype, so half-precision checkpoints are widened
 * to float32 on load and narrowed on save).
 * @module
 */

/**
 * Every dtype name the safetensors format defines, in the order of the Rust `Dtype` enum
 * (`safetensors/src/tensor.rs`), which the enum documents as increasing alignment order.
 */
export const SAFETENSORS_DTYPES = [
  'BOOL',
  'F4',
  'F6_E2M3',
  'F6_E3M2',
  'U8',
  'I8',
  'F8_E5M2',
  'F8_E4M3',
  'F8_E8M0',
  'F8_E4M3FNUZ',
  'F8_E5M2FNUZ',
  'I16',
  'U16',
  'F16',
  'BF16',
  'I32',
  'U32',
  'F32',
  'C64',
  'F64',
  'I64',
  'U64',
] as const;

/** A safetensors dtype name. */
export type SafetensorsDType = (typeof SAFETENSORS_DTYPES)[number];

const BITS: Record<SafetensorsDType, number> = {
  BOOL: 8,
  F4: 4,
  F6_E2M3: 6,
  F6_E3M2: 6,
  U8: 8,
  I8: 8,
  F8_E5M2: 8,
  F8_E4M3: 8,
  F8_E8M0: 8,
  F8_E4M3FNUZ: 8,
  F8_E5M2FNUZ: 8,
  I16: 16,
  U16: 16,
  F16: 16,
  BF16: 16,
  I32: 32,
  U32: 32,
  F32: 32,
  C64: 64,
  F64: 64,
  I64: 64,
  U64: 64,
};

const ORDER: ReadonlyMap<string, number> = new Map(SAFETENSORS_DTYPES.map((d, i) => [d, i]));

/** True when `name` is a dtype the format defines. */
export function isSafetensorsDType(name: unknown): name is SafetensorsDType {
  return typeof name === 'string' && ORDER.has(name);
}

/** Bits per element of `dtype` (`Dtype::bitsize` in the Rust crate; sub-byte for F4/F6). */
export function dtypeBits(dtype: SafetensorsDType): number {
  return BITS[dtype];
}

/** Position of `dtype` in the Rust enum; the writer sorts tensors by this, descending. */
export function dtypeRank(dtype: SafetensorsDType): number {
  return ORDER.get(dtype) as number;
}

// Shared scratch for float32 <-> bits reinterpretation.
const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** IEEE 754 binary16 bits → number (exact: every half is representable in float32). */
export function float16BitsToNumber(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >>> 10) & 0x1f;
  const frac = h & 0x3ff;
  if (exp === 0) return sign * frac * 2 ** -24; // zero / subnormal
  if (exp === 0x1f) return frac === 0 ? sign * Infinity : NaN;
  return sign * (1 + frac / 1024) * 2 ** (exp - 15);
}

/**
 * number → IEEE 754 binary16 bits, rounding the float32 value to nearest-even (as `torch.half()`
 * does); overflow gives ±Inf, NaN stays NaN.
 */
export function numberToFloat16Bits(value: number): number {
  f32[0] = value;
  const x = u32[0] as number;
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  let mant = x & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant !== 0 ? 0x200 : 0); // Inf / NaN
  // Unbiased exponent, re-biased for half.
  const e = exp - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00; // overflow → Inf
  if (e <= 0) {
    // Subnormal half (or zero): shift the implicit-1 mantissa right, round to nearest even.
    if (e < -10) return sign; // underflows to ±0
    mant |= 0x800000;
    const shift = 14 - e; // 24-bit mantissa → 10-bit subnormal field
    const half = 1 << (shift - 1);
    const rest = mant & ((1 << shift) - 1);
    let m = mant >>> shift;
    if (rest > half || (rest === half && (m & 1) === 1)) m += 1;
    return sign | m; // a carry into bit 10 correctly yields the smallest normal
  }
  const m = mant >>> 13;
  const rest = mant & 0x1fff;
  let out = sign | (e << 10) | m;
  if (rest > 0x1000 || (rest === 0x1000 && (m & 1) === 1)) out += 1; // carry may bump the exponent (to Inf)
  return out;
}

/** bfloat16 bits → number (the upper half of a float32). */
export function bfloat16BitsToNumber(b: number): number {
  u32[0] = (b & 0xffff) << 16;
  return f32[0] as number;
}

/** number → bfloat16 bits, rounding the float32 value to nearest-even (as `torch.bfloat16` does). */
export function numberToBfloat16Bits(value: number): number {
  f32[0] = value;
  const x = u32[0] as number;
  if ((x & 0x7f800000) === 0x7f800000 && (x & 0x7fffff) !== 0) return ((x >>> 16) | 0x40) & 0xffff; // quiet NaN
  const lsb = (x >>> 16) & 1;
  return ((x + 0x7fff + lsb) >>> 16) & 0xffff;
}

/** Widens packed float16 values to float32. */
export function float16ToFloat32(src: Uint16Array): Float32Array {
  const out = new Float32Array(src.length);
  for (let i = 0; i < src.length; i++) out[i] = float16BitsToNumber(src[i] as number);
  return out;
}

/** Widens packed bfloat16 values to float32 (a 16-bit shift; exact). */
export function bfloat16ToFloat32(src: Uint16Array): Float32Array {
  const bits = new Uint32Array(src.length);
  for (let i = 0; i < src.length; i++) bits[i] = (src[i] as number) << 16;
  return new Float32Array(bits.buffer);
}

/** Narrows float32 values to packed float16 (round to nearest even). */
export function float32ToFloat16(src: ArrayLike<number>): Uint16Array {
  const out = new Uint16Array(src.length);
  for (let i = 0; i < src.length; i++) out[i] = numberToFloat16Bits(src[i] as number);
  return out;
}

/** Narrows float32 values to packed bfloat16 (round to nearest even). */
export function float32ToBfloat16(src: ArrayLike<number>): Uint16Array {
  const out = new Uint16Array(src.length);
  for (let i = 0; i < src.length; i++) out[i] = numberToBfloat16Bits(src[i] as number);
  return out;
}
