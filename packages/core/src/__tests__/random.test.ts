import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { Generator, randn } from '../index.js';

describe('Generator', () => {
  test('same seed, same stream; state restores the exact position', () => {
    const a = new Generator(42);
    const b = new Generator(42);
    expect(a.normalArray(5)).toEqual(b.normalArray(5));
    a.normal(); // leaves a spare Box–Muller value cached
    const state = JSON.parse(JSON.stringify(a.getState()));
    const next = a.normalArray(7);
    const c = Generator.fromState(state);
    expect(c.normalArray(7)).toEqual(next);
    expect(new Generator(1).random()).not.toEqual(new Generator(2).random());
  });

  test('draws have the right moments', () => {
    const g = new Generator(7);
    const x = g.normalArray(200_000);
    let m = 0;
    let v = 0;
    for (const xi of x) m += xi;
    m /= x.length;
    for (const xi of x) v += (xi - m) ** 2;
    v /= x.length;
    expect(Math.abs(m)).toBeLessThan(0.01);
    expect(Math.abs(v - 1)).toBeLessThan(0.01);
    const u = g.uniformArray(100_000);
    expect(Math.min(...u)).toBeGreaterThanOrEqual(0);
    expect(Math.max(...u)).toBeLessThan(1);
    const p = g.permutation(50);
    expect([...p].sort((q, r) => q - r)).toEqual(Array.from({ length: 50 }, (_, i) => i));
  });

  test('randn is backend independent and seeded', async () => {
    await tf.setBackend('cpu');
    const a = randn([1, 2, 2, 3], 3);
    const b = randn([1, 2, 2, 3], 3);
    expect(Array.from(a.dataSync())).toEqual(Array.from(b.dataSync()));
    tf.dispose([a, b]);
    expect(() => new Generator(NaN)).toThrow(/finite/);
    expect(() => Generator.fromState({} as never)).toThrow(/not a diffmem Generator state/);
  });
});
