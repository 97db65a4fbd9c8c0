/**
 * Reader and writer for the safetensors format (huggingface/safetensors, README "Format" and
 * `safetensors/src/tensor.rs`), the format diffusers saves `diffusion_pytorch_model.safetensors` in.
 *
 * Layout: 8 bytes `N` (unsigned 64-bit little-endian) · `N` bytes of UTF-8 JSON header ·
 * the byte buffer. The header maps each tensor name to `{dtype, shape, data_offsets: [begin, end)}`
 * (offsets relative to the start of the byte buffer, i.e. file offset `8 + N`) and may hold a
 * `__metadata__` string → string map. Data is little-endian, row-major.
 *
 * The reader enforces every rule the Rust reader enforces (and rejects duplicate names, which
 * `JSON.parse` would silently collapse); each broken rule throws a {@link SafetensorsError} with
 * its own code. Half-precision (F16, BF16) and F64 tensors are widened to float32 on load, since
 * TF.js has no such dtypes.
 * @module
 */
import { SafetensorsError } from '../errors.js';
import {
  bfloat16ToFloat32,
  dtypeBits,
  dtypeRank,
  float16ToFloat32,
  float32ToBfloat16,
  float32ToFloat16,
  isSafetensorsDType,
  SAFETENSORS_DTYPES,
  type SafetensorsDType,
} from './dtypes.js';

/** Largest header the Rust reader accepts (`MAX_HEADER_SIZE`). */
export const SAFETENSORS_MAX_HEADER_SIZE = 100_000_000;

/** Typed arrays a tensor's data can come back as. */
export type SafetensorsData =
  | Float32Array
  | Float64Array
  | Int8Array
  | Uint8Array
  | Int16Array
  | Uint16Array
  | Int32Array
  | Uint32Array
  | BigInt64Array
  | BigUint64Array;

/** One tensor read from (or to write to) a safetensors file. */
export interface SafetensorsTensor {
  /**
   * Dtype of `data`. After reading, F16/BF16/F64 tensors are reported as `'F32'` (converted) and
   * their file dtype is in `sourceDtype`.
   */
  dtype: SafetensorsDType;
  /** Row-major shape; `[]` for a scalar. */
  shape: number[];
  /**
   * Values. Read: F32 (also converted F16/BF16/F64) → Float32Array, I8/U8/I16/U16/I32/U32/I64/U64
   * → the matching typed array, BOOL → Uint8Array (0/1), and the raw bytes (Uint8Array) for dtypes
   * with no JS element type (F4, F6_*, F8_*, C64). Write: see {@link writeSafetensors}.
   */
  data: SafetensorsData;
  /** The dtype stored in the file, when it differs from `dtype` (set by the reader only). */
  sourceDtype?: SafetensorsDType;
}

/** A parsed safetensors file. */
export interface SafetensorsContents {
  /** Tensors by name, in file (offset) order. */
  tensors: Map<string, SafetensorsTensor>;
  /** The `__metadata__` map, or `null` when the file has none. */
  metadata: Record<string, string> | null;
}

/** Header facts of one tensor, as validated by {@link readSafetensorsHeader}. */
export interface SafetensorsTensorInfo {
  dtype: SafetensorsDType;
  shape: number[];
  dataOffsets: [number, number];
}

/** The validated header of a safetensors file. */
export interface SafetensorsHeader {
  /** Header length `N` (bytes of JSON incl. padding). */
  headerSize: number;
  /** Tensor infos by name, in offset order. */
  tensors: Map<string, SafetensorsTensorInfo>;
  metadata: Record<string, string> | null;
}

/** Options of {@link readSafetensors}. */
export interface ReadSafetensorsOptions {
  /**
   * Always copy tensor bytes into fresh arrays (default `false`: an aligned F32/int tensor is a
   * view into `bytes`, so the two alias; misaligned data is always copied).
   */
  copy?: boolean;
  /** Keep F16/BF16/F64 as raw Uint16Array / Float64Array instead of widening to float32. */
  keepDtype?: boolean;
}

const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

function fail(code: ConstructorParameters<typeof SafetensorsError>[0], message: string, details?: Record<string, unknown>): never {
  throw new SafetensorsError(code, message, details);
}

/**
 * Collects duplicate keys in any object of a syntactically valid JSON text. `JSON.parse` keeps the
 * last of duplicated keys silently; the Rust reader refuses them, and so do we.
 * Returns `[depth, key]` pairs (depth 1 = the top-level object).
 */
function findDuplicateKeys(text: string): Array<[number, string]> {
  const dups: Array<[number, string]> = [];
  // Stack of containers: a Set of keys for objects, null for arrays.
  const stack: Array<Set<string> | null> = [];
  let expectKey = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x22 /* " */) {
      let j = i + 1;
      while (j < text.length) {
        const d = text.charCodeAt(j);
        if (d === 0x5c /* \ */) j += 2;
        else if (d === 0x22) break;
        else j++;
      }
      const top = stack[stack.length - 1];
      if (expectKey && top) {
        const key = JSON.parse(text.slice(i, j + 1)) as string;
        if (top.has(key)) dups.push([stack.length, key]);
        top.add(key);
        expectKey = false;
      }
      i = j;
    } else if (c === 0x7b /* { */) {
      stack.push(new Set());
      expectKey = true;
    } else if (c === 0x5b /* [ */) {
      stack.push(null);
      expectKey = false;
    } else if (c === 0x7d /* } */ || c === 0x5d /* ] */) {
      stack.pop();
      expectKey = false;
    } else if (c === 0x2c /* , */) {
      expectKey = stack[stack.length - 1] != null;
    }
  }
  return dups;
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function elementCount(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

/**
 * Parses and validates the header of a safetensors file (no tensor data is decoded).
 * @throws SafetensorsError naming the broken rule.
 */
export function readSafetensorsHeader(bytes: Uint8Array): SafetensorsHeader {
  if (!(bytes instanceof Uint8Array)) {
    fail('SAFETENSORS_TOO_SMALL', 'safetensors input must be a Uint8Array (or Node Buffer)');
  }
  if (bytes.length < 8) {
    fail('SAFETENSORS_TOO_SMALL', `safetensors file is ${bytes.length} bytes; it needs at least the 8-byte header length`, {
      length: bytes.length,
    });
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const n64 = view.getBigUint64(0, true);
  if (n64 > BigInt(SAFETENSORS_MAX_HEADER_SIZE)) {
    fail('SAFETENSORS_HEADER_TOO_LARGE', `safetensors header length ${n64} exceeds the limit of ${SAFETENSORS_MAX_HEADER_SIZE} bytes`, {
      headerSize: n64.toString(),
    });
  }
  const n = Number(n64);
  if (8 + n > bytes.length) {
    fail('SAFETENSORS_HEADER_TRUNCATED', `safetensors header claims ${n} bytes but the file has only ${bytes.length - 8} after the length field`, {
      headerSize: n,
      length: bytes.length,
    });
  }
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(bytes.subarray(8, 8 + n));
  } catch {
    fail('SAFETENSORS_HEADER_NOT_UTF8', 'safetensors header is not valid UTF-8');
  }
  if (text.charCodeAt(0) !== 0x7b) {
    fail('SAFETENSORS_HEADER_NOT_OBJECT', `safetensors header must start with '{', got ${JSON.stringify(text.slice(0, 16))}`);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (e) {
    fail('SAFETENSORS_HEADER_NOT_JSON', `safetensors header is not valid JSON: ${(e as Error).message}`);
  }
  if (!isPlainObject(parsed)) {
    fail('SAFETENSORS_HEADER_NOT_OBJECT', 'safetensors header must be a JSON object');
  }
  const dups = findDuplicateKeys(text);
  for (const [depth, key] of dups) {
    if (depth === 1) fail('SAFETENSORS_DUPLICATE_NAME', `safetensors header names tensor "${key}" more than once`, { name: key });
  }
  if (dups.length > 0) {
    const [, key] = dups[0] as [number, string];
    fail('SAFETENSORS_BAD_ENTRY', `safetensors header has an entry with the field "${key}" given twice`, { field: key });
  }

  let metadata: Record<string, string> | null = null;
  const infos: Array<[string, SafetensorsTensorInfo]> = [];
  for (const [name, entry] of Object.entries(parsed)) {
    if (name === '__metadata__') {
      if (entry === null) continue;
      if (!isPlainObject(entry)) fail('SAFETENSORS_BAD_METADATA', '__metadata__ must be an object of string values');
      for (const [k, v] of Object.entries(entry)) {
        if (typeof v !== 'string') {
          fail('SAFETENSORS_BAD_METADATA', `__metadata__["${k}"] must be a string, got ${JSON.stringify(v)}`, { key: k });
        }
      }
      metadata = { ...(entry as Record<string, string>) };
      continue;
    }
    infos.push([name, validateEntry(name, entry)]);
  }

  // Offsets must tile [0, end) exactly once when sorted (the Rust reader's `validate`).
  infos.sort((a, b) => a[1].dataOffsets[0] - b[1].dataOffsets[0] || a[1].dataOffsets[1] - b[1].dataOffsets[1]);
  let start = 0;
  for (const [name, info] of infos) {
    const [b, e] = info.dataOffsets;
    if (b !== start) {
      fail(
        'SAFETENSORS_OFFSETS_NOT_CONTIGUOUS',
        b < start
          ? `tensor "${name}" data [${b}, ${e}) overlaps the previous tensor, which ends at ${start}`
          : `tensor "${name}" data starts at ${b}, leaving a hole after the previous tensor, which ends at ${start}`,
        { name, dataOffsets: [b, e], expectedBegin: start },
      );
    }
    start = e;
  }
  if (8 + n + start !== bytes.length) {
    fail(
      'SAFETENSORS_BUFFER_INCOMPLETE',
      `safetensors tensors cover ${start} data bytes but the file has ${bytes.length - 8 - n} after the header` +
        (8 + n + start > bytes.length ? ' (file truncated)' : ' (trailing bytes not covered by any tensor)'),
      { dataEnd: start, available: bytes.length - 8 - n },
    );
  }
  return { headerSize: n, tensors: new Map(infos), metadata };
}

function validateEntry(name: string, entry: unknown): SafetensorsTensorInfo {
  if (!isPlainObject(entry)) fail('SAFETENSORS_BAD_ENTRY', `header entry "${name}" must be an object {dtype, shape, data_offsets}`, { name });
  const { dtype, shape, data_offsets: offsets } = entry;
  if (dtype === undefined || shape === undefined || offsets === undefined) {
    const missing = ['dtype', 'shape', 'data_offsets'].filter((k) => entry[k] === undefined);
    fail('SAFETENSORS_BAD_ENTRY', `header entry "${name}" lacks ${missing.join(', ')}`, { name, missing });
  }
  if (!isSafetensorsDType(dtype)) {
    fail('SAFETENSORS_BAD_DTYPE', `tensor "${name}" has unknown dtype ${JSON.stringify(dtype)} (known: ${SAFETENSORS_DTYPES.join(', ')})`, {
      name,
      dtype,
    });
  }
  if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && (d as number) >= 0)) {
    fail('SAFETENSORS_BAD_SHAPE', `tensor "${name}" shape must be an array of non-negative integers, got ${JSON.stringify(shape)}`, {
      name,
      shape,
    });
  }
  if (
    !Array.isArray(offsets) ||
    offsets.length !== 2 ||
    !offsets.every((o) => Number.isSafeInteger(o) && (o as number) >= 0) ||
    (offsets[0] as number) > (offsets[1] as number)
  ) {
    fail('SAFETENSORS_BAD_OFFSETS', `tensor "${name}" data_offsets must be [begin, end] with 0 <= begin <= end, got ${JSON.stringify(offsets)}`, {
      name,
      dataOffsets: offsets,
    });
  }
  const numel = elementCount(shape as number[]);
  const bits = numel * dtypeBits(dtype);
  if (!Number.isSafeInteger(bits)) {
    fail('SAFETENSORS_BAD_SHAPE', `tensor "${name}" shape ${JSON.stringify(shape)} is too large`, { name, shape });
  }
  const [b, e] = offsets as [number, number];
  if (bits % 8 !== 0 || bits / 8 !== e - b) {
    fail(
      'SAFETENSORS_SIZE_MISMATCH',
      `tensor "${name}" (${dtype} ${JSON.stringify(shape)}) needs ${bits / 8} bytes but data_offsets [${b}, ${e}) span ${e - b}`,
      { name, dtype, shape, expectedBytes: bits / 8, actualBytes: e - b },
    );
  }
  return { dtype, shape: [...(shape as number[])], dataOffsets: [b, e] };
}

type TypedArrayCtor = {
  new (buffer: ArrayBufferLike, byteOffset: number, length: number): SafetensorsData;
  new (length: number): SafetensorsData;
  BYTES_PER_ELEMENT: number;
};

const NATIVE: Partial<Record<SafetensorsDType, TypedArrayCtor>> = {
  BOOL: Uint8Array as unknown as TypedArrayCtor,
  U8: Uint8Array as unknown as TypedArrayCtor,
  I8: Int8Array as unknown as TypedArrayCtor,
  I16: Int16Array as unknown as TypedArrayCtor,
  U16: Uint16Array as unknown as TypedArrayCtor,
  F16: Uint16Array as unknown as TypedArrayCtor,
  BF16: Uint16Array as unknown as TypedArrayCtor,
  I32: Int32Array as unknown as TypedArrayCtor,
  U32: Uint32Array as unknown as TypedArrayCtor,
  F32: Float32Array as unknown as TypedArrayCtor,
  F64: Float64Array as unknown as TypedArrayCtor,
  I64: BigInt64Array as unknown as TypedArrayCtor,
  U64: BigUint64Array as unknown as TypedArrayCtor,
};

/** Views (or copies) `byteLength` little-endian bytes at `offset` as the dtype's typed array. */
function decodeRaw(bytes: Uint8Array, offset: number, byteLength: number, dtype: SafetensorsDType, copy: boolean): SafetensorsData {
  const ctor = NATIVE[dtype];
  if (!ctor) return bytes.slice(offset, offset + byteLength); // no JS element type: raw bytes
  const size = ctor.BYTES_PER_ELEMENT;
  const length = byteLength / size;
  const abs = bytes.byteOffset + offset;
  if (LITTLE_ENDIAN) {
    if (!copy && abs % size === 0) return new ctor(bytes.buffer, abs, length);
    // Misaligned (Node's pooled Buffers) or copy requested: copy into a fresh, aligned buffer.
    const buf = new ArrayBuffer(byteLength);
    new Uint8Array(buf).set(bytes.subarray(offset, offset + byteLength));
    return new ctor(buf, 0, length);
  }
  // Big-endian host: byte-swap element by element.
  const out = new ctor(length);
  const outBytes = new Uint8Array(out.buffer);
  for (let i = 0; i < length; i++) {
    for (let k = 0; k < size; k++) outBytes[i * size + k] = bytes[offset + i * size + (size - 1 - k)] as number;
  }
  return out;
}

/**
 * Parses a whole safetensors file.
 *
 * @param bytes the file contents (a Node Buffer works; it may be misaligned).
 * @returns tensors by name (offset order) and the `__metadata__` map (or null).
 * @throws SafetensorsError for every violation of the format (see the `SafetensorsErrorCode`s).
 */
export function readSafetensors(bytes: Uint8Array, options: ReadSafetensorsOptions = {}): SafetensorsContents {
  const header = readSafetensorsHeader(bytes);
  const base = 8 + header.headerSize;
  const tensors = new Map<string, SafetensorsTensor>();
  for (const [name, info] of header.tensors) {
    const [b, e] = info.dataOffsets;
    const widen = !options.keepDtype && (info.dtype === 'F16' || info.dtype === 'BF16' || info.dtype === 'F64');
    const raw = decodeRaw(bytes, base + b, e - b, info.dtype, (options.copy ?? false) && !widen);
    if (widen) {
      const data =
        info.dtype === 'F16'
          ? float16ToFloat32(raw as Uint16Array)
          : info.dtype === 'BF16'
            ? bfloat16ToFloat32(raw as Uint16Array)
            : Float32Array.from(raw as Float64Array);
      tensors.set(name, { dtype: 'F32', shape: info.shape, data, sourceDtype: info.dtype });
    } else {
      tensors.set(name, { dtype: info.dtype, shape: info.shape, data: raw });
    }
  }
  return { tensors, metadata: header.metadata };
}

/** What {@link writeSafetensors} accepts: a Map or a plain object of tensors. */
export type SafetensorsInput = ReadonlyMap<string, SafetensorsTensor> | Readonly<Record<string, SafetensorsTensor>>;

/** Encodes one tensor's data as little-endian bytes for its dtype. */
function encodeData(name: string, t: SafetensorsTensor): Uint8Array {
  const { dtype, data } = t;
  const numel = elementCount(t.shape);
  const byteLength = (numel * dtypeBits(dtype)) / 8;
  let out: ArrayBufferView;
  if ((dtype === 'F16' || dtype === 'BF16') && (data instanceof Float32Array || data instanceof Float64Array)) {
    checkLength(name, t, data.length, numel);
    out = dtype === 'F16' ? float32ToFloat16(data) : float32ToBfloat16(data);
  } else if (dtype === 'F64' && data instanceof Float32Array) {
    checkLength(name, t, data.length, numel);
    out = Float64Array.from(data);
  } else if (dtype === 'F32' && data instanceof Float64Array) {
    checkLength(name, t, data.length, numel);
    out = Float32Array.from(data);
  } else {
    const ctor = NATIVE[dtype];
    if (ctor !== undefined && data.constructor === ctor) {
      checkLength(name, t, data.length, numel);
    } else if (data instanceof Uint8Array) {
      // Raw little-endian bytes (the only way to give dtypes without a JS element type).
      if (data.byteLength !== byteLength) {
        fail('SAFETENSORS_SIZE_MISMATCH', `tensor "${name}" (${dtype} ${JSON.stringify(t.shape)}) needs ${byteLength} bytes, got ${data.byteLength}`, {
          name,
        });
      }
    } else {
      fail(
        'SAFETENSORS_UNSUPPORTED_DTYPE',
        `tensor "${name}": cannot write ${data.constructor.name} data as ${dtype}` +
          (ctor ? ` (give a ${ctor.name === 'Uint16Array' && dtype !== 'U16' ? 'Float32Array or Uint16Array of bits' : ctor.name}, or raw bytes as a Uint8Array)` : ' (give its raw bytes as a Uint8Array)'),
        { name, dtype },
      );
    }
    out = data;
  }
  const bytes = new Uint8Array(out.buffer, out.byteOffset, out.byteLength);
  if (LITTLE_ENDIAN || bytes.byteLength === numel) return bytes;
  const size = bytes.byteLength / numel;
  const swapped = new Uint8Array(bytes.byteLength);
  for (let i = 0; i < numel; i++) for (let k = 0; k < size; k++) swapped[i * size + k] = bytes[i * size + size - 1 - k] as number;
  return swapped;
}

function checkLength(name: string, t: SafetensorsTensor, actual: number, expected: number): void {
  if (actual !== expected) {
    fail('SAFETENSORS_SIZE_MISMATCH', `tensor "${name}" has shape ${JSON.stringify(t.shape)} (${expected} elements) but ${actual} values`, {
      name,
      expected,
      actual,
    });
  }
}

/**
 * Serialises tensors (and optional string metadata) to safetensors bytes, byte-compatible with the
 * Rust writer's layout: tensors ordered by descending dtype (the `Dtype` enum order) then name,
 * packed contiguously; compact JSON header with `__metadata__` first, padded with spaces to a
 * multiple of 8 bytes so the data buffer starts 8-aligned.
 *
 * Data per dtype: the matching typed array (Float32Array for F32, BigInt64Array for I64, Uint8Array
 * of 0/1 for BOOL, …); for F16/BF16 a Float32Array (rounded to nearest even) or a Uint16Array of
 * bits; for F64 a Float64Array or Float32Array; any dtype also accepts its raw little-endian bytes
 * as a Uint8Array.
 * @throws SafetensorsError on a bad name, dtype, shape, data length or metadata value.
 */
export function writeSafetensors(tensors: SafetensorsInput, metadata?: Readonly<Record<string, string>> | null): Uint8Array {
  const entries: Array<[string, SafetensorsTensor]> =
    tensors instanceof Map ? [...tensors.entries()] : Object.entries(tensors as Record<string, SafetensorsTensor>);
  if (metadata != null) {
    if (!isPlainObject(metadata)) fail('SAFETENSORS_BAD_METADATA', 'metadata must be an object of string values');
    for (const [k, v] of Object.entries(metadata)) {
      if (typeof v !== 'string') fail('SAFETENSORS_BAD_METADATA', `metadata["${k}"] must be a string, got ${JSON.stringify(v)}`, { key: k });
    }
  }
  const prepared: Array<{ name: string; dtype: SafetensorsDType; shape: number[]; bytes: Uint8Array }> = [];
  for (const [name, t] of entries) {
    if (name === '__metadata__') fail('SAFETENSORS_BAD_ENTRY', 'a tensor cannot be named "__metadata__"');
    if (!t || typeof t !== 'object') fail('SAFETENSORS_BAD_ENTRY', `tensor "${name}" must be {dtype, shape, data}`, { name });
    if (!isSafetensorsDType(t.dtype)) fail('SAFETENSORS_BAD_DTYPE', `tensor "${name}" has unknown dtype ${JSON.stringify(t.dtype)}`, { name });
    if (!Array.isArray(t.shape) || !t.shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
      fail('SAFETENSORS_BAD_SHAPE', `tensor "${name}" shape must be non-negative integers, got ${JSON.stringify(t.shape)}`, { name });
    }
    if (!ArrayBuffer.isView(t.data)) fail('SAFETENSORS_BAD_ENTRY', `tensor "${name}" data must be a typed array`, { name });
    if ((elementCount(t.shape) * dtypeBits(t.dtype)) % 8 !== 0) {
      fail('SAFETENSORS_SIZE_MISMATCH', `tensor "${name}" (${t.dtype} ${JSON.stringify(t.shape)}) is not a whole number of bytes`, { name });
    }
    prepared.push({ name, dtype: t.dtype, shape: [...t.shape], bytes: encodeData(name, t) });
  }
  // Descending dtype order, then name (byte-wise, like Rust's `String` ordering for ASCII names).
  prepared.sort((a, b) => dtypeRank(b.dtype) - dtypeRank(a.dtype) || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));

  // Built by hand so the key order is exactly ours (JS objects move integer-like keys first).
  const parts: string[] = [];
  if (metadata != null) parts.push(`"__metadata__":${JSON.stringify({ ...metadata })}`);
  let offset = 0;
  for (const p of prepared) {
    const info = { dtype: p.dtype, shape: p.shape, data_offsets: [offset, offset + p.bytes.byteLength] };
    parts.push(`${JSON.stringify(p.name)}:${JSON.stringify(info)}`);
    offset += p.bytes.byteLength;
  }
  const json = new TextEncoder().encode(`{${parts.join(',')}}`);
  const n = Math.ceil(json.length / 8) * 8;
  if (n > SAFETENSORS_MAX_HEADER_SIZE) {
    fail('SAFETENSORS_HEADER_TOO_LARGE', `safetensors header would be ${n} bytes (limit ${SAFETENSORS_MAX_HEADER_SIZE})`);
  }
  const out = new Uint8Array(8 + n + offset);
  new DataView(out.buffer).setBigUint64(0, BigInt(n), true);
  out.set(json, 8);
  out.fill(0x20, 8 + json.length, 8 + n);
  let pos = 8 + n;
  for (const p of prepared) {
    out.set(p.bytes, pos);
    pos += p.bytes.byteLength;
  }
  return out;
}
