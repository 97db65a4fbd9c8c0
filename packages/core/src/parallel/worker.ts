/**
 * Worker-thread entry of {@link WorkerPool}: selects a backend once, then runs tasks.
 * @module
 */
import { parentPort } from 'node:worker_threads';
import { selectBackend } from '../backend/select.js';

const ready = selectBackend();
const cache = new Map<string, Record<string, unknown>>();

parentPort?.on('message', async (msg: { module: string; fn: string; arg: unknown }) => {
  try {
    await ready;
    let mod = cache.get(msg.module);
    if (!mod) {
      mod = (await import(msg.module)) as Record<string, unknown>;
      cache.set(msg.module, mod);
    }
    const f = mod[msg.fn];
    if (typeof f !== 'function') throw new Error(`${msg.module} has no exported function "${msg.fn}"`);
    const result = await (f as (a: unknown) => unknown)(msg.arg);
    const transfer = collectTransferables(result);
    parentPort?.postMessage({ ok: true, result }, transfer);
  } catch (err) {
    const e = err as { message?: string; code?: string };
    parentPort?.postMessage({ ok: false, error: { message: e?.message ?? String(err), code: e?.code } });
  }
});

function collectTransferables(v: unknown, out: ArrayBuffer[] = [], depth = 0): ArrayBuffer[] {
  if (depth > 4 || v === null || typeof v !== 'object') return out;
  if (ArrayBuffer.isView(v)) {
    const buf = v.buffer;
    // Only whole, unshared buffers can be transferred without corrupting other views.
    if (buf instanceof ArrayBuffer && v.byteOffset === 0 && v.byteLength === buf.byteLength && !out.includes(buf)) out.push(buf);
    return out;
  }
  for (const x of Array.isArray(v) ? v : Object.values(v)) collectTransferables(x, out, depth + 1);
  return out;
}
