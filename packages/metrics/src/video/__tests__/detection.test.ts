// Inference-time detection: content magnitude, per-frame max and motion magnitude of the guidance
// difference δ_t, checked against closed forms; calibration (AUC, TPR@1%FPR, threshold at a target
// FPR) through the package ROC helpers.
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-wasm';
import { Generator, InputError, NonFiniteError, ShapeError } from '@diffmem/core';
import { expectNoTensorLeak } from '@diffmem/core/testing';
import { rocAuc } from '../../roc.js';
import { VideoMagnitudeTracker, calibrateDetector, stepMagnitudes, videoMagnitudes } from '../index.js';

beforeAll(async () => {
  await tf.setBackend('wasm');
});

/** δ with frame f constant c[f] over `per` elements, as [F, h, w, C]. */
function constantFrames(c: number[], h = 4, w = 5, ch = 3): tf.Tensor {
  return tf.tidy(() => tf.mul(tf.ones([c.length, h, w, ch]), tf.reshape(tf.tensor1d(c), [c.length, 1, 1, 1])));
}

describe('video magnitudes', () => {
  test('closed forms: ‖δ‖, max_f ‖δ[f]‖ and ‖δ[1:] − δ[:−1]‖', async () => {
    const per = 4 * 5 * 3;
    const c = [1, -2, 0.5];
    const d = constantFrames(c);
    const m = await expectNoTensorLeak(() => stepMagnitudes(d), 'stepMagnitudes');
    expect(m.content[0]).toBeCloseTo(Math.sqrt((1 + 4 + 0.25) * per), 4);
    expect(m.perFrame[0]).toEqual([1, 2, 0.5].map((v) => expect.closeTo(v * Math.sqrt(per), 4)));
    expect(m.motion[0]).toBeCloseTo(Math.sqrt((9 + 6.25) * per), 4);
    d.dispose();
  });

  test('averaged over steps; batched clips; from cond/uncond predictions', () => {
    const per = 60;
    const steps = [constantFrames([1, 1]), constantFrames([3, 1])];
    const r = videoMagnitudes(steps);
    expect(r.steps).toBe(2);
    expect(r.content[0]).toBeCloseTo((Math.sqrt(2 * per) + Math.sqrt(10 * per)) / 2, 4);
    expect(r.perFrameMax[0]).toBeCloseTo((Math.sqrt(per) + 3 * Math.sqrt(per)) / 2, 4);
    expect(r.motion[0]).toBeCloseTo((0 + 2 * Math.sqrt(per)) / 2, 4);
    expect(r.motionReason).toBeNull();
    // batch of two clips [B, F, …]
    const batch = tf.stack([steps[0] as tf.Tensor, steps[1] as tf.Tensor]);
    const rb = videoMagnitudes([batch], { batched: true });
    expect(rb.content[0]).toBeCloseTo(Math.sqrt(2 * per), 4);
    expect(rb.content[1]).toBeCloseTo(Math.sqrt(10 * per), 4);
    // the tracker takes the two noise predictions directly
    const tracker = new VideoMagnitudeTracker();
    const uncond = tf.randomNormal([2, 4, 5, 3], 0, 1, 'float32', 1);
    const cond = tf.add(uncond, steps[1] as tf.Tensor);
    tracker.track(cond, uncond);
    expect(tracker.result().content[0]).toBeCloseTo(Math.sqrt(10 * per), 3);
    tf.dispose([...steps, batch, uncond, cond]);
  });

  test('one-frame clips: motion is undefined (null, reason single-frame), never NaN', () => {
    const d = constantFrames([2]);
    const r = videoMagnitudes([d]);
    expect(r.motion).toEqual([null]);
    expect(r.motionReason).toBe('single-frame');
    expect(r.content[0]).toBeCloseTo(2 * Math.sqrt(60), 4);
    d.dispose();
  });

  test('typed errors', () => {
    const nan = tf.tidy(() => tf.concat([constantFrames([1]), tf.fill([1, 4, 5, 3], NaN)]));
    expect(() => stepMagnitudes(nan)).toThrow(NonFiniteError);
    const t = new VideoMagnitudeTracker();
    expect(() => t.result()).toThrow(InputError);
    const a = tf.zeros([2, 4, 4, 3]);
    const b = tf.zeros([3, 4, 4, 3]);
    expect(() => t.track(a, b)).toThrow(ShapeError);
    t.trackDelta(a);
    expect(() => t.trackDelta(b)).toThrow(ShapeError); // frame count changed between steps
    expect(() => stepMagnitudes(tf.zeros([3]))).toThrow(ShapeError);
    expect(() => stepMagnitudes(tf.zeros([2, 3]), { batched: true })).toThrow(ShapeError);
    tf.dispose([nan, a, b]);
  });
});

describe('calibration', () => {
  test('AUC and TPR@1%FPR match the ROC helpers; the threshold holds the target FPR on the negatives', () => {
    const g = new Generator(7);
    const negatives = Array.from({ length: 400 }, () => g.normal());
    const positives = Array.from({ length: 200 }, () => 2.5 + g.normal());
    const c = calibrateDetector(positives, negatives, 0.01);
    const auc = rocAuc([...positives, ...negatives], [...positives.map(() => 1), ...negatives.map(() => 0)]);
    expect(c.auc).toBeCloseTo(auc, 12);
    // Two unit Gaussians 2.5 apart: AUC = Φ(2.5/√2) ≈ 0.961.
    expect(c.auc).toBeGreaterThan(0.93);
    expect(c.auc).toBeLessThan(0.99);
    expect(c.achievedFpr).toBeLessThanOrEqual(0.01);
    expect(negatives.filter((v) => v > c.threshold).length).toBeLessThanOrEqual(4);
    expect(c.tprAtThreshold).toBeGreaterThan(0.3);
    expect(() => calibrateDetector([], negatives)).toThrow(InputError);
    expect(() => calibrateDetector(positives, negatives, 1.5)).toThrow(/targetFpr/);
  });
});
