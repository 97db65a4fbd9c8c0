/**
 * File helpers for safetensors: read a file into {@link readSafetensors}, and write one
 * atomically (temporary file in the same folder + rename, so a crash never leaves a half-written
 * checkpoint under the final name — the same approach as huggingface/safetensors' `serialize_to_file`).
 * @module
 */
import { randomBytes } from 'node:crypto';
import { open, readFile, rename, unlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import {
  readSafetensors,
  writeSafetensors,
  type ReadSafetensorsOptions,
  type SafetensorsContents,
  type SafetensorsInput,
} from './safetensors.js';

/** Reads and parses a `.safetensors` file (see {@link readSafetensors} for the checks made). */
export async function loadSafetensorsFile(path: string, options: ReadSafetensorsOptions = {}): Promise<SafetensorsContents> {
  const bytes = await readFile(path);
  return readSafetensors(new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength), options);
}

/**
 * Writes `bytes` to `path` atomically: to a temporary sibling file, flushed to disk, then renamed
 * over `path`. The temporary file is removed if anything fails.
 */
export async function writeFileAtomic(path: string, bytes: Uint8Array | string): Promise<void> {
  const tmp = temporarySibling(path);
  try {
    const fh = await open(tmp, 'w');
    try {
      await fh.writeFile(bytes);
      await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(tmp, path);
  } catch (e) {
    await unlink(tmp).catch(() => undefined);
    throw e;
  }
}

/** A unique temporary file name next to `path` (same folder, so `rename` stays atomic). */
export function temporarySibling(path: string): string {
  return join(dirname(path), `.${basename(path)}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`);
}

/**
 * Serialises tensors with {@link writeSafetensors} and writes them to `path` atomically.
 * @param metadata optional `__metadata__` (diffusers / transformers write `{format: "pt"}`).
 */
export async function saveSafetensorsFile(
  path: string,
  tensors: SafetensorsInput,
  metadata?: Readonly<Record<string, string>> | null,
): Promise<void> {
  await writeFileAtomic(path, writeSafetensors(tensors, metadata));
}
