import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-wasm';
import { ConfigError } from '../../errors.js';
import { groupIndices, loadEmbeddedDigits, trainingIndices } from '../dataset.js';
import {
  clipsInModelSpace,
  makeClipMemorizationSplit,
  makeMovingDigits,
  resolveMovingDigitsSpec,
  type ClipDataset,
} from '../moving_digits.js';
import { SHARED_DATA_MISSING, sharedDataDir } from '../../testing/index.js';

const shared = sharedDataDir();

beforeAll(async () => {
  await tf.setBackend('wasm');
  await tf.ready();
});

describe('makeMovingDigits', () => {
  let ds: ClipDataset;
  beforeAll(() => {
    ds = makeMovingDigits({ numClips: 12, numFrames: 8, size: 16, digitsPerClip: [1, 2], seed: 7 });
  });
  afterAll(() => ds.clips.dispose());

  it('renders [N,T,S,S,1] display-space clips from real MNIST digits, one record per clip', () => {
    expect(ds.clips.shape).toEqual([12, 8, 16, 16, 1]);
    expect(ds.records).toHaveLength(12);
    const v = ds.clips.dataSync();
    expect(Math.min(...v)).toBeGreaterThanOrEqual(0);
    expect(Math.max(...v)).toBeLessThanOrEqual(1);
    expect(ds.spec).toMatchObject({ size: 16, digitSize: 8, numFrames: 8, digitsPerClip: [1, 2], speed: [1, 2] });
    const counts = new Set(ds.records.map((r) => r.digits.length));
    expect([...counts].every((c) => c === 1 || c === 2)).toBe(true);
    expect(counts.size).toBe(2);
    for (const r of ds.records) {
      expect(r.label).toBe(r.digits[0]?.label);
      expect(r.digits[0]?.sourceId).toMatch(/^mnist:\d:\d+$/);
    }
    // Every clip uses its own source images.
    const ids = ds.records.flatMap((r) => r.digits.map((d) => d.sourceId));
    expect(new Set(ids).size).toBe(ids.length);
  });

  it('places the real source digit at the recorded position (one-digit clips)', () => {
    const src = loadEmbeddedDigits({ perClass: ds.spec.perClass, size: 8, fit: 'resize', channels: 1 });
    try {
      const one = ds.records.findIndex((r) => r.digits.length === 1);
      const rec = ds.records[one];
      const dg = rec?.digits[0];
      if (!rec || !dg) throw new Error('no one-digit clip');
      const srcIndex = src.records.findIndex((r) => r.id === dg.sourceId);
      const digit = tf.tidy(() => tf.slice(src.images, [srcIndex, 0, 0, 0], [1, 8, 8, 1]).dataSync());
      for (const t of [0, 7]) {
        const patch = tf.tidy(() => tf.slice(ds.clips, [one, t, dg.y[t] as number, dg.x[t] as number, 0], [1, 1, 8, 8, 1]).dataSync());
        expect(Array.from(patch)).toEqual(Array.from(digit));
        // Nothing else is drawn: the frame's mass is the digit's.
        const mass = tf.tidy(() => tf.sum(tf.slice(ds.clips, [one, t], [1, 1])).dataSync()[0] as number);
        expect(mass).toBeCloseTo(digit.reduce((a, b) => a + b, 0), 3);
      }
    } finally {
      src.images.dispose();
    }
  });

  it('keeps digits inside the frame, moving at constant speed and bouncing at the edges', () => {
    const max = ds.spec.size - ds.spec.digitSize;
    let bounces = 0;
    for (const r of ds.records) {
      for (const d of r.digits) {
        const speed = Math.hypot(d.velocity[0], d.velocity[1]);
        expect(speed).toBeGreaterThanOrEqual(ds.spec.speed[0] - 1e-9);
        expect(speed).toBeLessThanOrEqual(ds.spec.speed[1] + 1e-9);
        for (const [pos, v] of [
          [d.x, d.velocity[0]],
          [d.y, d.velocity[1]],
        ] as const) {
          for (let t = 0; t < pos.length; t++) {
            expect(pos[t]).toBeGreaterThanOrEqual(0);
            expect(pos[t]).toBeLessThanOrEqual(max);
            // Rounding moves a step by at most 1 px from |v|.
            if (t > 0) expect(Math.abs((pos[t] as number) - (pos[t - 1] as number))).toBeLessThanOrEqual(Math.abs(v) + 1);
          }
          for (let t = 2; t < pos.length; t++) {
            const a = (pos[t - 1] as number) - (pos[t - 2] as number);
            const b = (pos[t] as number) - (pos[t - 1] as number);
            if (Math.abs(v) > 1.5 && a * b < 0) bounces++;
          }
        }
      }
    }
    expect(bounces).toBeGreaterThan(0);
  });

  it('is deterministic in its seed and leaks no tensors', () => {
    const before = tf.memory().numTensors;
    const a = makeMovingDigits({ numClips: 5, size: 16, numFrames: 4, seed: 3 });
    const b = makeMovingDigits({ ...a.spec });
    const c = makeMovingDigits({ numClips: 5, size: 16, numFrames: 4, seed: 4 });
    expect(Array.from(b.clips.dataSync())).toEqual(Array.from(a.clips.dataSync()));
    expect(b.records).toEqual(a.records);
    expect(Array.from(c.clips.dataSync())).not.toEqual(Array.from(a.clips.dataSync()));
    for (const x of [a, b, c]) x.clips.dispose();
    expect(tf.memory().numTensors).toBe(before);
  });

  it('maps clips to model space', () => {
    const m = clipsInModelSpace(ds, [0, 3]);
    expect(m.shape).toEqual([2, 8, 16, 16, 1]);
    const ref = tf.tidy(() => tf.sub(tf.mul(tf.gather(ds.clips, [0, 3]), 2), 1));
    expect(tf.tidy(() => tf.max(tf.abs(tf.sub(m, ref))).dataSync()[0])).toBe(0);
    tf.dispose([m, ref]);
    expect(() => clipsInModelSpace(ds, [12])).toThrow(ConfigError);
  });

  it('rejects bad options with a ConfigError naming them', () => {
    const bad = (o: object, re: RegExp) => expect(() => resolveMovingDigitsSpec({ numClips: 2, seed: 0, ...o })).toThrow(re);
    bad({ numClips: 0 }, /numClips/);
    bad({ size: 16, digitSize: 20 }, /digitSize/);
    bad({ digitsPerClip: [2, 1] }, /digitsPerClip/);
    bad({ digitsPerClip: 0 }, /digitsPerClip/);
    bad({ speed: [-1, 2] }, /speed/);
    bad({ classes: [1, 1] }, /classes/);
    bad({ classes: [10] }, /classes/);
    bad({ seed: 0.5 }, /seed/);
    bad({ source: { kind: 'youtube' } }, /source/);
    expect(() => resolveMovingDigitsSpec({ numClips: 1, seed: 0, numFrames: 0 })).toThrow(ConfigError);
  });
});

describe('makeClipMemorizationSplit', () => {
  it('records which clips are duplicated and how often, in disjoint class-balanced groups', () => {
    const ds = makeMovingDigits({ numClips: 40, size: 16, numFrames: 2, digitsPerClip: 1, seed: 11 });
    try {
      const m = makeClipMemorizationSplit(ds, { duplicated: 5, copies: 20, ordinary: 20, heldOut: 10, seed: 2 });
      expect(m.format).toBe('diffmem-membership');
      expect(m.dataset).toBe(ds.name);
      const dup = groupIndices(m, 'duplicated');
      const ord = groupIndices(m, 'ordinary');
      const held = groupIndices(m, 'held-out');
      expect([dup.length, ord.length, held.length]).toEqual([5, 20, 10]);
      expect(new Set([...dup, ...ord, ...held]).size).toBe(35);
      for (const e of m.entries) {
        expect(e.id).toBe(ds.records[e.index]?.id);
        expect(e.label).toBe(ds.records[e.index]?.label);
        expect(e.copies).toBe(e.group === 'duplicated' ? 20 : e.group === 'ordinary' ? 1 : 0);
      }
      const train = trainingIndices(m);
      expect(train).toHaveLength(5 * 20 + 20);
      expect(train.filter((i) => i === dup[0])).toHaveLength(20);
      // Round-robin over classes: the 5 duplicated clips have 5 different labels.
      expect(new Set(dup.map((i) => ds.records[i]?.label)).size).toBe(5);
      expect(() => makeClipMemorizationSplit(ds, { duplicated: 30, copies: 2, ordinary: 20, heldOut: 0, seed: 0 })).toThrow(ConfigError);
    } finally {
      ds.clips.dispose();
    }
  });
});

describe('OpenCV digits sheet source', () => {
  (shared ? it : it.skip)(`renders clips from the real 20×20 sheet digits ${shared ? '' : SHARED_DATA_MISSING}`, () => {
    const sheet = path.join(shared as string, 'digits.png');
    const ds = makeMovingDigits({ numClips: 3, size: 24, digitSize: 12, numFrames: 3, digitsPerClip: 1, source: { kind: 'opencv-digits', path: sheet }, seed: 5 });
    try {
      expect(ds.clips.shape).toEqual([3, 3, 24, 24, 1]);
      expect(ds.records[0]?.digits[0]?.sourceId).toMatch(/^opencv-digits:\d:\d+$/);
      expect(tf.tidy(() => tf.sum(ds.clips).dataSync()[0] as number)).toBeGreaterThan(10);
    } finally {
      ds.clips.dispose();
    }
  });
});
