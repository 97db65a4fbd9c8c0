import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { ConfigError } from '../../errors.js';
import { WorkerPool, WorkerTaskError, compiledModuleUrl, workerScriptUrl } from '../pool.js';

const task = path.join(path.dirname(fileURLToPath(import.meta.url)), 'fixtures', 'task.mjs');

describe('WorkerPool', () => {
  let pool: WorkerPool;
  beforeAll(() => {
    pool = new WorkerPool({ size: 2 });
  });
  afterAll(async () => {
    await pool.close();
  });

  test('runs tasks in parallel on wasm workers; results in task order, independent of the worker', async () => {
    const done: number[] = [];
    const results = await pool.map<{ value: number; backend: string; threadId: number; data: Float32Array }>(
      [1, 2, 3, 4].map((seed) => ({ module: task, fn: 'sumOfSquares', arg: { n: 1000, seed } })),
      (i) => done.push(i),
    );
    expect(done.sort()).toEqual([0, 1, 2, 3]);
    expect(results.every((r) => r.backend === 'wasm')).toBe(true);
    expect(Object.prototype.toString.call(results[0]?.data)).toBe('[object Float32Array]'); // transferred, other realm
    // the same seed gives the same value whichever worker runs it
    const again = await pool.run<{ value: number }>({ module: task, fn: 'sumOfSquares', arg: { n: 1000, seed: 3 } });
    expect(again.value).toBe(results[2]?.value);
    const t0 = performance.now();
    const ids = await pool.map<number>([0, 1].map(() => ({ module: task, fn: 'slow', arg: { ms: 300 } })));
    expect(new Set(ids).size).toBe(2);
    expect(performance.now() - t0).toBeLessThan(550);
  });

  test('task errors and missing exports are typed errors; the pool keeps working', async () => {
    await expect(pool.run({ module: task, fn: 'fail', arg: null })).rejects.toThrow(WorkerTaskError);
    await expect(pool.run({ module: task, fn: 'fail', arg: null })).rejects.toThrow(/n must be positive/);
    await expect(pool.run({ module: task, fn: 'nope', arg: null })).rejects.toThrow(/no exported function "nope"/);
    const r = await pool.run<{ value: number }>({ module: task, fn: 'sumOfSquares', arg: { n: 10, seed: 1 } });
    expect(r.value).toBeGreaterThan(0);
  });
});

describe('compiledModuleUrl', () => {
  it('finds the dist/ twin of a module when the caller runs from src/', () => {
    const url = workerScriptUrl();
    expect(fileURLToPath(url)).toMatch(/[\\/]dist[\\/]parallel[\\/]worker\.js$/);
  });

  it('names the module and both places looked at when it is not built', () => {
    const call = (): URL => compiledModuleUrl(import.meta.url, './no_such_task.js', 'test task');
    expect(call).toThrow(ConfigError);
    expect(call).toThrow(/the test task is not built \(looked for .*src.*no_such_task\.js and .*dist.*no_such_task\.js\)/);
  });
});
