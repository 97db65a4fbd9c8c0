/**
 * InvMM records on disk: one JSON file per image (float32 arrays as little-endian base64,
 * non-finite numbers kept exact), written atomically, plus the stable per-image file names and
 * seeds an audit uses.
 *
 * A not-replicated image is stored as `"score": null, "replicated": false` (JSON has no ∞); a
 * non-finite one as `"score": null, "status": "non-finite"`.
 * @module
 */
import * as fs from 'node:fs';
import { InputError, writeFileAtomicSync } from '@diffmem/core';
import type { InvMMCheck, InvMMRecord, InvMMStatus } from './invert.js';

/** `format` of a record file. */
export const INVMM_RECORD_FORMAT = 'diffmem-invmm-record';
/** Record file version. */
export const INVMM_RECORD_VERSION = 1;

interface EncodedArray {
  dtype: 'float32';
  byteOrder: 'little';
  length: number;
  base64: string;
}

function encodeF32(a: Float32Array): EncodedArray {
  const bytes = Buffer.from(a.buffer, a.byteOffset, a.byteLength);
  return { dtype: 'float32', byteOrder: 'little', length: a.length, base64: bytes.toString('base64') };
}

function decodeF32(e: EncodedArray, what: string): Float32Array {
  if (e?.dtype !== 'float32' || typeof e.base64 !== 'string' || !Number.isInteger(e.length)) {
    throw new InputError('INVMM_RECORD_INVALID', `${what} is not an encoded float32 array`);
  }
  const buf = Buffer.from(e.base64, 'base64');
  if (buf.byteLength !== e.length * 4) throw new InputError('INVMM_RECORD_INVALID', `${what} holds ${buf.byteLength} bytes, expected ${e.length * 4}`);
  const out = new Float32Array(e.length);
  new Uint8Array(out.buffer).set(buf);
  return out;
}

// Non-finite values inside checks survive as strings; the score follows the documented null rule.
const encodeNumber = (v: number): number | string => (Number.isFinite(v) ? v : String(v));
const decodeNumber = (v: unknown): number => (typeof v === 'number' ? v : v === 'Infinity' ? Infinity : v === '-Infinity' ? -Infinity : NaN);

/** The JSON object of a record (`fingerprint` ties it to the audit settings). */
export function recordToJSON(r: InvMMRecord, fingerprint: string | null = null): Record<string, unknown> {
  return {
    format: INVMM_RECORD_FORMAT,
    version: INVMM_RECORD_VERSION,
    fingerprint,
    id: r.id,
    status: r.status,
    replicated: r.replicated,
    score: Number.isFinite(r.score) ? r.score : null,
    steps: r.steps,
    seconds: r.seconds,
    seed: r.seed,
    label: r.label,
    shape: r.shape,
    mu: encodeF32(r.mu),
    logvar: encodeF32(r.logvar),
    classLogits: r.classLogits ? encodeF32(r.classLogits) : null,
    checks: r.checks.map((c) => ({
      ...c,
      similarities: c.similarities.map(encodeNumber),
      ...(c.perScale ? { perScale: c.perScale.map((p) => ({ ...p, similarities: p.similarities.map(encodeNumber) })) } : {}),
    })),
    config: r.config,
    replication: r.replication,
    ...(r.error !== undefined ? { error: r.error } : {}),
  };
}

/** Parses {@link recordToJSON} output back into a record (and its fingerprint). */
export function recordFromJSON(j: Record<string, unknown>, what = 'record'): { record: InvMMRecord; fingerprint: string | null } {
  if (j?.['format'] !== INVMM_RECORD_FORMAT || j['version'] !== INVMM_RECORD_VERSION) {
    throw new InputError('INVMM_RECORD_INVALID', `${what} is not a diffmem InvMM record (format/version)`);
  }
  const status = j['status'] as InvMMStatus;
  if (status !== 'replicated' && status !== 'not-replicated' && status !== 'non-finite') {
    throw new InputError('INVMM_RECORD_INVALID', `${what} has an unknown status ${JSON.stringify(status)}`);
  }
  const score = status === 'replicated' ? Number(j['score']) : status === 'non-finite' ? NaN : Infinity;
  const checks = (j['checks'] as InvMMCheck[]).map((c) => ({
    ...c,
    similarities: (c.similarities as unknown[]).map(decodeNumber),
    ...(c.perScale ? { perScale: c.perScale.map((p) => ({ ...p, similarities: (p.similarities as unknown[]).map(decodeNumber) })) } : {}),
  }));
  const record: InvMMRecord = {
    id: String(j['id']),
    status,
    replicated: status === 'replicated',
    score,
    shape: j['shape'] as [number, number, number],
    mu: decodeF32(j['mu'] as EncodedArray, `${what}.mu`),
    logvar: decodeF32(j['logvar'] as EncodedArray, `${what}.logvar`),
    label: (j['label'] as number | null) ?? null,
    classLogits: j['classLogits'] ? decodeF32(j['classLogits'] as EncodedArray, `${what}.classLogits`) : null,
    checks,
    steps: Number(j['steps']),
    seconds: Number(j['seconds']),
    seed: Number(j['seed']),
    config: j['config'] as InvMMRecord['config'],
    replication: j['replication'] as InvMMRecord['replication'],
    ...(typeof j['error'] === 'string' ? { error: j['error'] } : {}),
  };
  return { record, fingerprint: (j['fingerprint'] as string | null) ?? null };
}

/** Writes a record file atomically (a reader sees the old file or the new one, never a torn one). */
export function writeRecordFile(file: string, r: InvMMRecord, fingerprint: string | null = null): void {
  writeFileAtomicSync(file, `${JSON.stringify(recordToJSON(r, fingerprint))}\n`);
}

/** Reads a record file. @throws InputError when unreadable or malformed. */
export function readRecordFile(file: string): { record: InvMMRecord; fingerprint: string | null } {
  let j: Record<string, unknown>;
  try {
    j = JSON.parse(fs.readFileSync(file, 'utf8')) as Record<string, unknown>;
  } catch (err) {
    throw new InputError('INVMM_RECORD_UNREADABLE', `cannot read InvMM record ${file}: ${(err as Error).message}`, { file });
  }
  return recordFromJSON(j, file);
}

// 32-bit FNV-1a of a string (stable ids → names and seeds).
function fnv1a32(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h >>> 0;
}

/** A file-system-safe, collision-resistant file name for an image id. */
export function recordFileName(id: string): string {
  const safe = id.replace(/[^A-Za-z0-9._-]+/g, '_').slice(0, 80);
  return `${safe}-${fnv1a32(id).toString(16).padStart(8, '0')}.json`;
}

/**
 * The seed of image `id` in an audit seeded with `auditSeed`: a function of both only, so
 * results do not depend on order, resumption or which worker ran the image.
 */
export function invmmImageSeed(auditSeed: number, id: string): number {
  return fnv1a32(`${auditSeed}\u0000${id}`) >>> 1;
}
