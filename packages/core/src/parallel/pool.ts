/**
 * Data-parallel work over Node worker threads. The wasm backend is single-threaded in Node, so
 * sampling, audits and evaluations scale across cores by running independent tasks in workers,
 * each with its own TensorFlow.js engine.
 *
 * A task is `(module URL, export name, argument)`: the worker imports the module (compiled JS)
 * and calls the export with the argument; results come back by structured clone (typed arrays
 * are transferred). Tasks must be pure functions of their argument (pass seeds, not generators)
 * so results do not depend on which worker ran them.
 * @module
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { Worker } from 'node:worker_threads';
import { ConfigError, DiffmemError } from '../errors.js';

/** One unit of work. */
export interface WorkerTask<A = unknown> {
  /** URL or absolute path of an ES module (compiled JS) exporting `fn`. */
  module: string | URL;
  /** Export to call: `(arg) => result | Promise<result>`. */
  fn: string;
  arg: A;
}

/** Options of {@link WorkerPool}. */
export interface WorkerPoolOptions {
  /** Number of workers (default: available cores, at least 1). */
  size?: number;
  /** Backend preference inside workers, as env `DIFFMEM_BACKEND` (default `wasm,cpu`). */
  backend?: string;
}

/** A task failed inside a worker, or the worker died. */
export class WorkerTaskError extends DiffmemError {
  constructor(message: string, details?: Record<string, unknown>) {
    super('WORKER_TASK', message, details);
  }
}

/**
 * The compiled JS of `file`, a module beside the caller (`fromUrl` = the caller's
 * `import.meta.url`), as a worker must import it: the file itself when the caller runs compiled,
 * else its twin under the package's `dist/` (under ts-jest/swc sources run from `src/`, where
 * only the TypeScript exists).
 * @param what names the module in the error.
 * @throws ConfigError when neither exists (the package is not built).
 */
export function compiledModuleUrl(fromUrl: string | URL, file: string, what: string): URL {
  const here = new URL(file, fromUrl);
  if (fs.existsSync(fileURLToPath(here))) return here;
  const i = here.pathname.lastIndexOf('/src/');
  const dist = i < 0 ? null : new URL(`${here.pathname.slice(0, i)}/dist/${here.pathname.slice(i + 5)}`, here);
  if (dist && fs.existsSync(fileURLToPath(dist))) return dist;
  const looked = dist ? `${fileURLToPath(here)} and ${fileURLToPath(dist)}` : fileURLToPath(here);
  throw new ConfigError(`the ${what} is not built (looked for ${looked}); run "npm run build" first`);
}

/** The compiled worker entry (see {@link compiledModuleUrl}). */
export function workerScriptUrl(): URL {
  return compiledModuleUrl(import.meta.url, './worker.js', 'worker script');
}

interface Pending {
  resolve: (v: unknown) => void;
  reject: (e: unknown) => void;
}

/** A fixed-size pool of worker threads. Call {@link WorkerPool.close} when done. */
export class WorkerPool {
  readonly size: number;
  private readonly workers: Worker[] = [];
  private readonly idle: Worker[] = [];
  private readonly queue: Array<{ task: WorkerTask; pending: Pending }> = [];
  private readonly busy = new Map<Worker, Pending>();
  private closed = false;

  constructor(opts: WorkerPoolOptions = {}) {
    const n = opts.size ?? Math.max(1, os.availableParallelism?.() ?? os.cpus().length);
    if (!Number.isInteger(n) || n < 1) throw new ConfigError(`pool size must be a positive integer, got ${opts.size}`);
    this.size = n;
    const script = workerScriptUrl();
    for (let i = 0; i < n; i++) {
      const w = new Worker(script, { env: { ...process.env, DIFFMEM_BACKEND: opts.backend ?? 'wasm,cpu' } });
      w.on('message', (msg: { ok: boolean; result?: unknown; error?: { message: string; code?: string } }) => {
        const p = this.busy.get(w);
        this.busy.delete(w);
        if (p) {
          if (msg.ok) p.resolve(msg.result);
          else p.reject(new WorkerTaskError(msg.error?.message ?? 'task failed', { code: msg.error?.code }));
        }
        this.release(w);
      });
      w.on('error', (err) => {
        const p = this.busy.get(w);
        this.busy.delete(w);
        p?.reject(new WorkerTaskError(`worker crashed: ${err.message}`));
      });
      w.unref();
      this.workers.push(w);
      this.idle.push(w);
    }
  }

  private release(w: Worker): void {
    const next = this.queue.shift();
    if (next) this.dispatch(w, next.task, next.pending);
    else {
      // An idle worker must not keep the process alive; a busy one must (its result is awaited).
      w.unref();
      this.idle.push(w);
    }
  }

  private dispatch(w: Worker, task: WorkerTask, pending: Pending): void {
    w.ref();
    this.busy.set(w, pending);
    const module = task.module instanceof URL ? task.module.href : task.module.startsWith('file:') ? task.module : pathToFileURL(task.module).href;
    w.postMessage({ module, fn: task.fn, arg: task.arg });
  }

  /** Runs one task on the next free worker. */
  run<R = unknown, A = unknown>(task: WorkerTask<A>): Promise<R> {
    if (this.closed) return Promise.reject(new WorkerTaskError('the pool is closed'));
    return new Promise<R>((resolve, reject) => {
      const pending: Pending = { resolve: resolve as (v: unknown) => void, reject };
      const w = this.idle.pop();
      if (w) this.dispatch(w, task as WorkerTask, pending);
      else this.queue.push({ task: task as WorkerTask, pending });
    });
  }

  /**
   * Runs every task, `onDone(i, result)` as each finishes (for progress), and resolves to the
   * results in task order. Rejects on the first failure (others keep running to completion).
   */
  async map<R = unknown, A = unknown>(tasks: ReadonlyArray<WorkerTask<A>>, onDone?: (index: number, result: R) => void): Promise<R[]> {
    return Promise.all(
      tasks.map((t, i) =>
        this.run<R, A>(t).then((r) => {
          onDone?.(i, r);
          return r;
        }),
      ),
    );
  }

  /** Terminates every worker; queued tasks are rejected. */
  async close(): Promise<void> {
    this.closed = true;
    for (const q of this.queue.splice(0)) q.pending.reject(new WorkerTaskError('the pool was closed before the task ran'));
    for (const p of this.busy.values()) p.reject(new WorkerTaskError('the pool was closed while the task ran'));
    this.busy.clear();
    await Promise.all(this.workers.map((w) => w.terminate()));
  }
}
