import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import '@tensorflow/tfjs-backend-wasm';
import {
  asClassLabels,
  asFlowField,
  asImageBatch,
  asVideo,
  asVideoBatch,
  assertShape,
  DTypeError,
  framesToVideoBatch,
  imageFromUint8,
  NonFiniteError,
  ShapeError,
  stackImages,
  toDisplayRange,
  toGrayscale,
  toModelRange,
  toUint8,
  ValueRangeError,
  videoBatchToFrames,
} from '../../index.js';
import { describeOnBackends, expectNoTensorLeak, testBackends } from '../../testing/index.js';

const backends = await testBackends();

describeOnBackends('tensor contract', backends, () => {
  test('model <-> display round trip is exact on representable values', async () => {
    const x = asImageBatch(tf.tensor4d([-1, -0.5, 0, 0.5, 1, 0.25], [1, 1, 2, 3]), 'model', { level: 'full' });
    const d = await expectNoTensorLeak(() => toDisplayRange(x));
    expect(Array.from(d.dataSync())).toEqual([0, 0.25, 0.5, 0.75, 1, 0.625]);
    const m = toModelRange(d);
    expect(Array.from(m.dataSync())).toEqual(Array.from(x.dataSync()));
    tf.dispose([x, d, m]);
  });

  test('validation names the problem', () => {
    const bad = tf.tensor4d([0, 2], [1, 1, 1, 2]);
    expect(() => asImageBatch(bad, 'display', { level: 'full', name: 'generated' })).toThrow(ValueRangeError);
    expect(() => asImageBatch(bad, 'display', { level: 'full', name: 'generated' })).toThrow(/generated must lie in display/);
    const nan = tf.tensor4d([0, NaN], [1, 1, 1, 2]);
    expect(() => asImageBatch(nan, 'model', { level: 'full' })).toThrow(NonFiniteError);
    expect(() => asImageBatch(tf.zeros([2, 2, 3]), 'model')).toThrow(ShapeError);
    expect(() => asImageBatch(tf.zeros([1, 2, 2, 3], 'int32'), 'model')).toThrow(DTypeError);
    expect(() => asImageBatch(tf.zeros([0, 2, 2, 3]), 'model')).toThrow(/must not be empty/);
    expect(() => asFlowField(tf.zeros([1, 4, 4, 3]))).toThrow(/2 channels/);
    expect(() => assertShape(tf.zeros([1, 4, 4, 3]), [null, 8, 8, 3], 'x')).toThrow(/x must have shape \[\*,8,8,3\]/);
    expect(() => asClassLabels(tf.tensor1d([0, 10], 'int32'), 10)).toThrow(/outside \[0, 10\)/);
    // 0..255 data handed over as model space gets a hint
    expect(() => asImageBatch(tf.fill([1, 1, 1, 1], 200), 'model', { level: 'full' })).toThrow(/divide by 255/);
  });

  test('videos and frames convert without changing values', () => {
    const v = asVideoBatch(tf.randomUniform([2, 3, 4, 4, 1], 0, 1, 'float32', 1), 'display');
    const frames = videoBatchToFrames(v);
    expect(frames.shape).toEqual([6, 4, 4, 1]);
    const back = framesToVideoBatch(frames, 3);
    expect(tf.max(tf.abs(tf.sub(back, v))).dataSync()[0]).toBe(0);
    expect(() => framesToVideoBatch(frames, 4)).toThrow(ShapeError);
    expect(asVideo(tf.zeros([3, 4, 4, 3]), 'display').shape).toEqual([3, 4, 4, 3]);
    tf.dispose([v, frames, back]);
  });

  test('uint8 conversions and grayscale', () => {
    const px = new Uint8Array([0, 128, 255, 255, 255, 255]);
    const im = imageFromUint8(px, 1, 2, 3);
    expect(Array.from(toUint8(im))).toEqual(Array.from(px));
    const batch = stackImages([im, im]);
    const g = toGrayscale(batch);
    expect(g.shape).toEqual([2, 1, 2, 1]);
    expect(g.dataSync()[1]).toBeCloseTo(1, 5);
    expect(() => imageFromUint8(px, 2, 2, 3)).toThrow(/expected 2x2x3/);
    tf.dispose([im, batch, g]);
  });
});
