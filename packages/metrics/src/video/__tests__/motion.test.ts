// OFS-k (three readings), the motion analyser (resampling, NMF, camera compensation) and the
// motion reference index; bad input: one-frame clips, frame-rate mismatches, black frames, NaN.
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-wasm';
import { ConfigError, InputError, NonFiniteError, ShapeError, ValueRangeError } from '@diffmem/core';
import { expectNoTensorLeak } from '@diffmem/core/testing';
import { HornSchunckFlow } from '../flow/index.js';
import { MotionAnalyzer, MotionReferenceIndex, ofs, ofsFromSimilarities, type MotionProfile } from '../index.js';
import { movingObjectClip, panningClip } from './helpers/clips.js';

/** A smooth seeded random texture [H,W,3] (so flow has something to track). */
function texture(h: number, w: number, seed: number): tf.Tensor3D {
  return tf.tidy(() => {
    const r = tf.randomUniform([1, h + 4, w + 4, 3], 0, 1, 'float32', seed) as tf.Tensor4D;
    return tf.squeeze(tf.avgPool(r, 5, 1, 'valid'), [0]) as tf.Tensor3D;
  });
}

const fast = (): MotionAnalyzer =>
  new MotionAnalyzer({
    size: [32, 32],
    descriptorSize: [8, 8],
    estimator: new HornSchunckFlow({ levels: 3, warps: 1, iterations: 20, medianSize: 0 }),
  });

let bg: tf.Tensor3D;
let sprite: tf.Tensor3D;
beforeAll(async () => {
  await tf.setBackend('wasm');
  bg = texture(72, 96, 1);
  sprite = texture(40, 40, 2);
});
afterAll(() => tf.dispose([bg, sprite]));

const objectClip = (seed: number, frames = 10, size: [number, number] = [48, 64], pan: [number, number] = [0, 0]): tf.Tensor4D =>
  movingObjectClip(bg, sprite, { frames, height: size[0], width: size[1], seed, speed: 2, objectSize: 16, pan });

describe('OFS-k readings on a known similarity matrix', () => {
  // c[i][j] for 5 generated and 6 reference pairs; a strong diagonal run starting at (1, 2).
  const p = 5;
  const q = 6;
  const c = new Float32Array(p * q).fill(0.1);
  for (let l = 0; l < 3; l++) c[(1 + l) * q + 2 + l] = 0.9;
  c[0 * q + 5] = 0.95; // an isolated high pair

  test("'run': the best aligned run of k consecutive flows", () => {
    expect(ofsFromSimilarities(c, p, q, 'run', 3)).toEqual({ score: expect.closeTo(0.9, 6), generatedPair: 1, referencePair: 2 });
    const r1 = ofsFromSimilarities(c, p, q, 'run', 1);
    expect(r1?.score).toBeCloseTo(0.95, 6);
    expect(ofsFromSimilarities(c, p, q, 'run', 6)).toBeNull(); // fewer than k generated pairs
  });

  test("'topk': the mean of the k largest pair similarities; 'stride': the best single pair", () => {
    expect(ofsFromSimilarities(c, p, q, 'topk', 4)?.score).toBeCloseTo((0.95 + 0.9 * 3) / 4, 6);
    expect(ofsFromSimilarities(c, 1, 2, 'topk', 4)?.score).toBeCloseTo((0.1 + 0.1) / 4, 6); // missing entries count 0
    expect(ofsFromSimilarities(c, p, q, 'stride', 1)).toEqual({ score: expect.closeTo(0.95, 6), generatedPair: 0, referencePair: 5 });
  });
});

describe('MotionAnalyzer and ofs', () => {
  test('a clip matches itself, a re-timed copy and a resized copy; a different motion does not', async () => {
    const an = fast();
    const clip = objectClip(3, 12);
    const other = objectClip(8, 12);
    const p = await expectNoTensorLeak(() => an.analyze(clip), 'MotionAnalyzer.analyze');
    expect(p.pairs).toBe(11);
    expect(p.undefinedReason).toBeNull();
    const shifted = an.analyze(tf.slice(clip, [2, 0, 0, 0], [10, -1, -1, -1]));
    const resized = an.analyze(tf.image.resizeBilinear(clip, [40, 52], false, true));
    const q = an.analyze(other);
    const self = ofs(p, p, { k: 4 });
    expect(self.score).toBeCloseTo(1, 5);
    const sh = ofs(shifted, p, { k: 4 });
    expect(sh.score).toBeGreaterThan(0.9);
    expect(sh.referencePair - sh.generatedPair).toBe(2); // the alignment recovers the 2-frame offset
    expect(ofs(resized, p, { k: 4 }).score).toBeGreaterThan(0.8);
    const diff = ofs(q, p, { k: 4 }).score as number;
    expect(diff).toBeLessThan(0.5);
    for (const reading of ['run', 'topk'] as const) {
      const r = ofs(p, q, { reading, k: 3 });
      expect(Number.isFinite(r.score)).toBe(true);
    }
    tf.dispose([clip, other]);
  });

  test('a one-frame clip has no motion: null score with reason single-frame (never NaN)', () => {
    const an = fast();
    const one = tf.slice(objectClip(3, 2), [0, 0, 0, 0], [1, -1, -1, -1]);
    const p = an.analyze(one);
    expect(p.pairs).toBe(0);
    expect(p.undefinedReason).toBe('single-frame');
    const q = an.analyze(objectClip(4, 8));
    const r = ofs(p, q);
    expect(r).toMatchObject({ score: null, reason: 'single-frame', side: 'generated' });
    expect(ofs(q, p)).toMatchObject({ score: null, reason: 'single-frame', side: 'reference' });
    expect(ofs(q, an.analyze(objectClip(4, 3)), { k: 4 })).toMatchObject({ score: null, reason: 'too-short' });
    one.dispose();
  });

  test('all-black frames and a still textured clip are static (defined result, no NaN)', () => {
    const an = fast();
    const black = tf.zeros([8, 48, 64, 3]);
    const pb = an.analyze(black);
    expect(pb.undefinedReason).toBe('static');
    expect(pb.meanMagnitude.every((v) => v === 0)).toBe(true);
    expect(pb.residualRatio.every((v) => v === 0)).toBe(true);
    expect(Array.from(pb.descriptors).every((v) => v === 0)).toBe(true);
    const still = tf.tidy(() => tf.tile(tf.expandDims(tf.slice(bg, [0, 0, 0], [48, 64, 3]), 0), [8, 1, 1, 1]));
    const ps = an.analyze(still);
    expect(ps.undefinedReason).toBe('static');
    expect(ofs(ps, an.analyze(objectClip(5, 8)))).toMatchObject({ score: null, reason: 'static' });
    tf.dispose([black, still]);
  });

  test('camera-only motion (pan + zoom) is natural motion', () => {
    const an = fast();
    const pan = panningClip(bg, { frames: 8, width: 64, height: 48, seed: 1, pan: [1.5, 0.5], zoom: 1.01 });
    const p = an.analyze(pan);
    expect(p.naturalMotion?.pairStatus.every((s) => s !== 'moving')).toBe(true);
    expect(p.undefinedReason).toBe('natural-motion');
    // a moving object on top of the same pan is object motion
    const withObject = an.analyze(objectClip(6, 8, [48, 64], [1, 0]));
    expect(withObject.undefinedReason).toBeNull();
    pan.dispose();
  });

  test('frame rates: resampled to the analysis fps, refused when too low, mismatch is a typed error', () => {
    const an12 = new MotionAnalyzer({ ...fast().config, fps: 12 });
    const clip = objectClip(3, 16);
    const p24 = an12.analyze({ frames: clip, fps: 24 });
    expect(p24.frames).toBe(8);
    expect(p24.fps).toBe(12);
    const half = tf.gather(clip, tf.tensor1d([0, 2, 4, 6, 8, 10, 12, 14], 'int32'));
    const p12 = an12.analyze({ frames: half, fps: 12 });
    expect(ofs(p12, p24, { k: 4 }).score).toBeCloseTo(1, 4); // same frames after resampling
    expect(() => an12.analyze({ frames: clip, fps: 8 })).toThrow(InputError);
    try {
      an12.analyze({ frames: clip, fps: 8 });
    } catch (e) {
      expect((e as InputError).code).toBe('FRAME_RATE_TOO_LOW');
    }
    const an = fast(); // no analysis fps: rates must match
    const a = an.analyze({ frames: clip, fps: 24 });
    const b = an.analyze({ frames: half, fps: 12 });
    expect(() => ofs(a, b)).toThrow(/FRAME_RATE_MISMATCH|different frame rates/);
    expect(() => an.analyze({ frames: clip, fps: -1 })).toThrow(ConfigError);
    tf.dispose([clip, half]);
  });

  test("the 'stride' reading uses flows between frames k apart", () => {
    const an2 = new MotionAnalyzer({ ...fast().config, stride: 2 });
    const clip = objectClip(3, 10);
    const p = an2.analyze(clip);
    expect(p.pairs).toBe(8);
    expect(ofs(p, p, { reading: 'stride', k: 2 }).score).toBeCloseTo(1, 5);
    expect(() => ofs(p, p, { reading: 'stride', k: 3 })).toThrow(ConfigError);
    const p1 = fast().analyze(clip);
    expect(() => ofs(p1, p1, { reading: 'stride', k: 2 })).toThrow(ConfigError);
    expect(() => ofs(p1, p)).toThrow(ConfigError); // different strides
    clip.dispose();
  });

  test('bad input: NaN frames / flows → NonFiniteError, wrong rank → ShapeError, 0..255 → ValueRangeError', () => {
    const an = fast();
    const nan = tf.fill([4, 16, 16, 3], NaN);
    expect(() => an.analyze(nan)).toThrow(NonFiniteError);
    const rank3 = tf.zeros([16, 16, 3]);
    expect(() => an.analyze(rank3)).toThrow(ShapeError);
    const bytes = tf.fill([4, 16, 16, 3], 128);
    expect(() => an.analyze(bytes)).toThrow(ValueRangeError);
    const nanFlow = tf.tidy(() => tf.concat([tf.zeros([2, 16, 16, 2]), tf.fill([1, 16, 16, 2], NaN)]));
    expect(() => an.analyzeFlows(nanFlow)).toThrow(NonFiniteError);
    expect(() => new MotionAnalyzer({ size: [4, 4] })).toThrow(ConfigError);
    tf.dispose([nan, rank3, bytes, nanFlow]);
  });

  test('analyzeFlows: user flows at another resolution are resampled to the grid (vectors rescaled)', () => {
    const an = fast();
    // a pure object motion at 64×64: 8×8 block moving by (4, 0) px
    const flow = tf.tidy(() => tf.pad(tf.fill([3, 8, 8, 1], 4), [[0, 0], [28, 28], [28, 28], [0, 1]]));
    const p = an.analyzeFlows(flow, { fps: 8 });
    expect(p.pairs).toBe(3);
    // at 32×32 the same motion is 2 px over a 4×4 block: mean magnitude 2·16/1024
    expect(p.meanMagnitude[0]).toBeCloseTo((2 * 16) / 1024, 2);
    flow.dispose();
  });
});

describe('MotionReferenceIndex', () => {
  test('finds the source of a copy with its alignment; skips static references; no leaks', async () => {
    const an = fast();
    const index = new MotionReferenceIndex(an);
    const clips = [3, 8, 13].map((s) => objectClip(s, 12));
    clips.forEach((c, i) => index.add(`clip${i}`, c));
    const black = tf.zeros([6, 48, 64, 3]);
    index.add('black', black);
    expect(() => index.add('clip0', clips[0] as tf.Tensor4D)).toThrow(ConfigError);
    const query = an.analyze(tf.slice(clips[1] as tf.Tensor4D, [3, 0, 0, 0], [8, -1, -1, -1]));
    index.score(query); // builds the descriptor matrix (owned by the index)
    const r = await expectNoTensorLeak(() => index.score(query, { k: 4 }), 'MotionReferenceIndex.score');
    expect(r.match?.referenceId).toBe('clip1');
    expect((r.match?.referencePair ?? 0) - (r.match?.generatedPair ?? 0)).toBe(3);
    expect(r.comparedReferences).toBe(3);
    expect(r.skippedReferences).toBe(1);
    expect(r.memorized).toBe(true);
    const staticQuery = index.score(black);
    expect(staticQuery).toMatchObject({ score: null, reason: 'static', memorized: false });
    const otherGrid = new MotionAnalyzer({ size: [40, 40], descriptorSize: [8, 8] }).analyze(tf.zeros([3, 40, 40, 1]));
    expect(() => index.add('x', otherGrid)).toThrow(ConfigError);
    const before = tf.memory().numTensors;
    index.dispose();
    expect(tf.memory().numTensors).toBeLessThan(before);
    expect(() => index.score(query)).toThrow(InputError);
    tf.dispose([...clips, black]);
  });

  test('an index of only static references answers no-motion-references', () => {
    const an = fast();
    const index = new MotionReferenceIndex(an);
    index.add('black', tf.zeros([6, 32, 32, 1]));
    const r = index.score(objectClip(3, 8));
    expect(r).toMatchObject({ score: null, reason: 'no-motion-references' });
    index.dispose();
  });
});

export type { MotionProfile };
