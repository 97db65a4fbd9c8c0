import * as tf from '@tensorflow/tfjs-core';
import { BackendError, backendOrderFromEnv, selectBackend } from '../../index.js';

describe('selectBackend', () => {
  const saved = process.env['DIFFMEM_BACKEND'];
  afterEach(() => {
    if (saved === undefined) delete process.env['DIFFMEM_BACKEND'];
    else process.env['DIFFMEM_BACKEND'] = saved;
  });

  test('falls back past absent tfjs-node packages to wasm and says why', async () => {
    delete process.env['DIFFMEM_BACKEND'];
    const sel = await selectBackend();
    // tfjs-node(-gpu) cannot install on an offline machine: they must be reported as not installed.
    const gpu = sel.attempts.find((a) => a.choice === 'node-gpu');
    if (sel.choice === 'wasm') {
      expect(gpu).toEqual({ choice: 'node-gpu', ok: false, reason: 'not installed' });
      expect(sel.reason).toMatch(/using wasm .*passed over node-gpu: not installed; node: not installed/);
    }
    expect(['tensorflow', 'wasm']).toContain(sel.backendName);
    expect(tf.getBackend()).toBe(sel.backendName);
  });

  test('an init failure is reported and the next backend is used', async () => {
    const sel = await selectBackend({
      prefer: ['node', 'cpu'],
      importModule: async (m) => {
        if (m === '@tensorflow/tfjs-node') throw new Error('libtensorflow.so.2: cannot open shared object file');
        return import(m);
      },
    });
    expect(sel.choice).toBe('cpu');
    expect(sel.attempts[0]).toEqual({ choice: 'node', ok: false, reason: 'libtensorflow.so.2: cannot open shared object file' });
  });

  test('DIFFMEM_BACKEND overrides the order; unknown names and total failure are typed errors', async () => {
    process.env['DIFFMEM_BACKEND'] = 'cpu';
    expect((await selectBackend()).backendName).toBe('cpu');
    expect(backendOrderFromEnv('wasm, cpu')).toEqual(['wasm', 'cpu']);
    expect(() => backendOrderFromEnv('cuda')).toThrow(BackendError);
    delete process.env['DIFFMEM_BACKEND'];
    await expect(
      selectBackend({ prefer: ['node-gpu'], importModule: async () => Promise.reject(new Error("Cannot find module 'x'")) }),
    ).rejects.toThrow(/no TensorFlow.js backend could be initialised: node-gpu: not installed/);
  });
});
