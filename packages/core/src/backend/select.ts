/**
 * Backend selection: the fastest TensorFlow.js backend that initialises here, with the reason.
 *
 * Order (default): `tensorflow` from `@tensorflow/tfjs-node-gpu`, then from `@tensorflow/tfjs-node`
 * (optional peers: they download libtensorflow at install, so they are often absent; imported
 * dynamically, never at module top level), then `wasm` (`@tensorflow/tfjs-backend-wasm`, the
 * embedded default: its .wasm binaries ship inside the npm package), then `cpu` (pure JS, slow).
 *
 * GPU needs: `@tensorflow/tfjs-node-gpu` 4.x loads libtensorflow 2.9.1 built for CUDA 11.2 and
 * cuDNN 8.1 (`libcudart.so.11.0`, `libcudnn.so.8`); on hosts with other CUDA versions it falls back
 * to its CPU kernels without saying so.
 * @module
 */
import * as tf from '@tensorflow/tfjs-core';
import { BackendError } from '../errors.js';
import { registerCpuGradKernelFixes, registerWasmGradKernels } from './kernels/index.js';

/** Names diffmem can select. `node-gpu` and `node` both register tfjs' `tensorflow` backend. */
export type BackendChoice = 'node-gpu' | 'node' | 'wasm' | 'cpu';

/** The default preference order. */
export const DEFAULT_BACKEND_ORDER: readonly BackendChoice[] = ['node-gpu', 'node', 'wasm', 'cpu'];

/** One attempt made by {@link selectBackend}. */
export interface BackendAttempt {
  choice: BackendChoice;
  ok: boolean;
  /** Why it failed (module not installed, init error), or why it was chosen. */
  reason: string;
}

/** What {@link selectBackend} got. */
export interface BackendSelection {
  /** The choice that succeeded. */
  choice: BackendChoice;
  /** The tfjs backend name now active (`tensorflow`, `wasm` or `cpu`). */
  backendName: string;
  /** One sentence: which backend and why. */
  reason: string;
  /** Every attempt, in order. */
  attempts: BackendAttempt[];
}

/** Options of {@link selectBackend}. */
export interface SelectBackendOptions {
  /** Try these, in order (default {@link DEFAULT_BACKEND_ORDER}); env `DIFFMEM_BACKEND` overrides. */
  prefer?: readonly BackendChoice[];
  /**
   * Module loader, for tests; defaults to dynamic `import()`. Returns the module or throws.
   * @internal
   */
  importModule?: (specifier: string) => Promise<unknown>;
}

const MODULES: Record<BackendChoice, string> = {
  'node-gpu': '@tensorflow/tfjs-node-gpu',
  node: '@tensorflow/tfjs-node',
  wasm: '@tensorflow/tfjs-backend-wasm',
  cpu: '@tensorflow/tfjs-backend-cpu',
};

const TF_NAMES: Record<BackendChoice, string> = {
  'node-gpu': 'tensorflow',
  node: 'tensorflow',
  wasm: 'wasm',
  cpu: 'cpu',
};

// A variable specifier keeps bundlers and tsc from resolving optional peers at build time.
const dynamicImport = (specifier: string): Promise<unknown> => import(specifier);

function describe(err: unknown): string {
  const msg = err instanceof Error ? err.message : String(err);
  if (/Cannot find (module|package)|ERR_MODULE_NOT_FOUND/.test(msg)) return 'not installed';
  return msg.split('\n')[0] ?? msg;
}

/** Parses `DIFFMEM_BACKEND` (comma-separated choices) or returns undefined. */
export function backendOrderFromEnv(value = process.env['DIFFMEM_BACKEND']): BackendChoice[] | undefined {
  if (!value) return undefined;
  const parts = value.split(',').map((s) => s.trim()).filter(Boolean);
  for (const p of parts) {
    if (!(p in MODULES)) {
      throw new BackendError(`DIFFMEM_BACKEND names unknown backend "${p}"; use ${Object.keys(MODULES).join(', ')}`);
    }
  }
  return parts as BackendChoice[];
}

/**
 * Activates the first backend in the preference order that loads and initialises, and reports
 * which one it got and why the others were passed over. Throws {@link BackendError} when none works.
 */
export async function selectBackend(options: SelectBackendOptions = {}): Promise<BackendSelection> {
  const order = backendOrderFromEnv() ?? options.prefer ?? DEFAULT_BACKEND_ORDER;
  const load = options.importModule ?? dynamicImport;
  const attempts: BackendAttempt[] = [];
  for (const choice of order) {
    try {
      await load(MODULES[choice]);
      const name = TF_NAMES[choice];
      if (tf.findBackendFactory(name) === null && tf.findBackend(name) === null) {
        throw new Error(`module loaded but registered no "${name}" backend`);
      }
      const ok = await tf.setBackend(name);
      if (!ok) throw new Error(`tf.setBackend('${name}') failed to initialise`);
      await tf.ready();
      // Training and guidance need gradient kernels wasm lacks (and a cpu kernel fix).
      if (name === 'wasm') registerWasmGradKernels();
      if (name === 'cpu') registerCpuGradKernelFixes();
      const passed = attempts.map((a) => `${a.choice}: ${a.reason}`).join('; ');
      const reason =
        `using ${choice} (${MODULES[choice]})` + (passed ? `; passed over ${passed}` : '; first preference');
      attempts.push({ choice, ok: true, reason: 'initialised' });
      return { choice, backendName: tf.getBackend(), reason, attempts };
    } catch (err) {
      attempts.push({ choice, ok: false, reason: describe(err) });
    }
  }
  throw new BackendError(
    `no TensorFlow.js backend could be initialised: ${attempts.map((a) => `${a.choice}: ${a.reason}`).join('; ')}`,
    { attempts },
  );
}

/** The backends that can be initialised in this process (for conformance tests and `diffmem bench`). */
export async function availableBackends(
  candidates: readonly BackendChoice[] = ['wasm', 'cpu', 'node'],
  importModule: (specifier: string) => Promise<unknown> = dynamicImport,
): Promise<BackendChoice[]> {
  const out: BackendChoice[] = [];
  const before = tf.getBackend();
  for (const c of candidates) {
    try {
      await importModule(MODULES[c]);
      if (await tf.setBackend(TF_NAMES[c])) out.push(c);
    } catch {
      // not installed or failed to initialise: simply not available
    }
  }
  if (before) await tf.setBackend(before);
  return out;
}
