// GSSCD (frame-level max), the at-least-m-frames rule, image references, the VSSCD baseline and
// bad input, checked against brute-force computations.
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-wasm';
import { ConfigError, InputError, NonFiniteError, ShapeError, ValueRangeError, type ImageBatch } from '@diffmem/core';
import { expectNoTensorLeak } from '@diffmem/core/testing';
import { CopyDescriptorEmbedder } from '../../embedders/copy_descriptor.js';
import { l2NormalizeRows, type Embedder } from '../../embedders/types.js';
import { VideoReferenceIndex, contentScore, contentScoreFromEmbeddings, gsscd, vsscdScore } from '../index.js';

/** A tiny deterministic embedder: 4×4 RGB thumbnail, mean-removed (test-only). */
class ThumbnailEmbedder implements Embedder {
  readonly name = 'test-thumbnail-4x4';
  readonly dim = 48;
  readonly preprocess = null;
  embed(images: ImageBatch<'display'> | tf.Tensor4D): tf.Tensor2D {
    return tf.tidy(() => {
      let x = images as tf.Tensor4D;
      if (x.shape[3] === 1) x = tf.tile(x, [1, 1, 1, 3]);
      const t = tf.reshape(tf.image.resizeBilinear(x, [4, 4], false, true), [x.shape[0], 48]) as tf.Tensor2D;
      return l2NormalizeRows(tf.sub(t, tf.mean(t, 1, true)) as tf.Tensor2D);
    });
  }
}

const emb = new ThumbnailEmbedder();
const rand = (shape: [number, number, number, number], seed: number): tf.Tensor4D =>
  tf.randomUniform(shape, 0, 1, 'float32', seed) as tf.Tensor4D;

/** Brute-force cosine matrix between two clips' descriptors. */
function cosines(a: tf.Tensor4D, b: tf.Tensor4D): number[][] {
  return tf.tidy(() => tf.matMul(emb.embed(a), emb.embed(b), false, true).arraySync() as number[][]);
}

beforeAll(async () => {
  await tf.setBackend('wasm');
});

describe('GSSCD', () => {
  test('equals the brute-force max over frame pairs, with its argmax; blocks do not change it', async () => {
    const g = rand([6, 16, 20, 3], 1);
    const refs = [rand([5, 16, 20, 3], 2), rand([7, 12, 12, 3], 3), rand([3, 24, 20, 3], 4)];
    for (const blockRows of [8192, 4]) {
      const index = new VideoReferenceIndex(emb, { blockRows, batchSize: 3 });
      refs.forEach((r, i) => index.addClip(`r${i}`, r));
      contentScore(g, index); // consolidates pending rows (owned by the index)
      const res = await expectNoTensorLeak(() => contentScore(g, index, { topK: 3 }), 'contentScore');
      let best = -2;
      let arg = { k: -1, i: -1, j: -1 };
      refs.forEach((r, k) => {
        const s = cosines(g, r);
        s.forEach((row, i) => row.forEach((v, j) => {
          if (v > best) [best, arg] = [v, { k, i, j }];
        }));
        const clip = res.topClips.find((c) => c.referenceId === `r${k}`);
        expect(clip?.gsscd).toBeCloseTo(Math.max(...s.flat()), 5);
      });
      expect(res.score).toBeCloseTo(best, 5);
      expect(res.match).toMatchObject({ referenceId: `r${arg.k}`, generatedFrame: arg.i, referenceFrame: arg.j, referenceKind: 'video' });
      expect(res.perFrame).toHaveLength(6);
      res.perFrame.forEach((m, i) => {
        const rowBest = Math.max(...refs.flatMap((r) => cosines(g, r)[i] as number[]));
        expect(m.similarity).toBeCloseTo(rowBest, 5);
      });
      index.dispose();
    }
    tf.dispose([g, ...refs]);
  });

  test('at-least-m-frames rule and the image / video replication flags', () => {
    const train = rand([8, 16, 16, 3], 10);
    const image = rand([1, 16, 16, 3], 11);
    const index = new VideoReferenceIndex(emb);
    index.addClip('clip', train);
    index.addImage('img', tf.squeeze(image, [0]) as tf.Tensor3D);
    // generated: frames 2 and 5 of the training clip, the training image twice, 4 unrelated frames
    const g = tf.tidy(() =>
      tf.concat([tf.slice(train, [2, 0, 0, 0], [1, -1, -1, -1]), tf.slice(train, [5, 0, 0, 0], [1, -1, -1, -1]), image, image, rand([4, 16, 16, 3], 12)]),
    ) as tf.Tensor4D;
    const two = contentScore(g, index, { threshold: 0.999, minFrames: 2 });
    expect(two.memorized).toBe(true);
    expect(two.videoReplicated).toBe(true);
    expect(two.imageReplicated).toBe(true);
    expect(two.bestVideo?.framesAbove).toBe(2);
    expect(two.bestImage?.framesAbove).toBe(2);
    expect(two.bestImage?.match.referenceFrame).toBe(0);
    const three = contentScore(g, index, { threshold: 0.999, minFrames: 3 });
    expect(three.memorized).toBe(false);
    expect(three.imageReplicated || three.videoReplicated).toBe(false);
    expect(three.score).toBeCloseTo(1, 5); // the max is unchanged; only the decision rule differs
    expect(() => contentScore(g, index, { minFrames: 9 })).toThrow(ConfigError);
    index.dispose();
    tf.dispose([train, image, g]);
  });

  test('gsscd() of two clips, and of a clip against a single image', () => {
    const a = rand([4, 16, 16, 3], 20);
    const b = tf.tidy(() => tf.concat([rand([2, 16, 16, 3], 21), tf.slice(a, [1, 0, 0, 0], [1, -1, -1, -1])])) as tf.Tensor4D;
    const m = gsscd(a, b, emb);
    expect(m).toMatchObject({ generatedFrame: 1, referenceFrame: 2 });
    expect(m.similarity).toBeCloseTo(1, 5);
    const img = tf.squeeze(tf.slice(a, [3, 0, 0, 0], [1, -1, -1, -1]), [0]) as tf.Tensor3D;
    expect(gsscd(a, img, emb)).toMatchObject({ generatedFrame: 3, referenceKind: 'image', referenceFrame: 0 });
    tf.dispose([a, b, img]);
  });

  test('the weight-free copy descriptor finds a re-sized copy among different clips', () => {
    const cd = new CopyDescriptorEmbedder();
    const index = new VideoReferenceIndex(cd);
    const clips = [30, 31, 32].map((s) => tf.tidy(() => tf.avgPool(rand([6, 68, 84, 3], s), 5, 1, 'valid')) as tf.Tensor4D);
    clips.forEach((c, i) => index.addClip(i, c));
    const copy = tf.image.resizeBilinear(clips[1] as tf.Tensor4D, [40, 50], false, true);
    const r = contentScore(copy, index);
    expect(r.match.referenceId).toBe(1);
    expect(r.score).toBeGreaterThan(0.9);
    index.dispose();
    tf.dispose([...clips, copy]);
  });
});

describe('VSSCD baseline', () => {
  test('concat pooling = cosine of concatenated descriptors; mean pooling = cosine of averaged descriptors', () => {
    const g = rand([4, 16, 16, 3], 40);
    const same = rand([4, 16, 16, 3], 41);
    const longer = rand([6, 16, 16, 3], 42);
    const index = new VideoReferenceIndex(emb);
    index.addClip('same', same);
    index.addClip('longer', longer);
    const concat = vsscdScore(g, index, { pooling: 'concat' });
    const explicit = tf.tidy(() => {
      const a = tf.reshape(emb.embed(g), [1, -1]);
      const b = tf.reshape(emb.embed(same), [1, -1]);
      return tf.sum(tf.mul(l2NormalizeRows(a as tf.Tensor2D), l2NormalizeRows(b as tf.Tensor2D))).dataSync()[0] as number;
    });
    expect(concat.score).toBeCloseTo(explicit, 5);
    expect(concat.skipped).toBe(1); // a different length cannot be concatenated-compared
    const mean = vsscdScore(g, index, { pooling: 'mean', topK: 2 });
    for (const [id, clip] of [
      ['same', same],
      ['longer', longer],
    ] as const) {
      const e = tf.tidy(() => {
        const a = tf.mean(emb.embed(g), 0, true) as tf.Tensor2D;
        const b = tf.mean(emb.embed(clip), 0, true) as tf.Tensor2D;
        return tf.sum(tf.mul(l2NormalizeRows(a), l2NormalizeRows(b))).dataSync()[0] as number;
      });
      expect(mean.topClips.find((c) => c.referenceId === id)?.vsscd).toBeCloseTo(e, 5);
    }
    expect(mean.skipped).toBe(0);
    expect(() => vsscdScore(g, index, { pooling: 'max' as never })).toThrow(ConfigError);
    index.dispose();
    tf.dispose([g, same, longer]);
  });
});

describe('VideoReferenceIndex bookkeeping and bad input', () => {
  test('owns its tensors: dispose returns the tensor count to where it was', () => {
    const before = tf.memory().numTensors;
    const index = new VideoReferenceIndex(emb, { blockRows: 5 });
    const c = rand([7, 8, 8, 3], 50);
    index.addClip('a', c);
    index.addImages(['i0', 'i1'], rand([2, 8, 8, 3], 51));
    index.addEmbeddings('e', 'video', tf.randomNormal([3, 48]));
    const r = contentScore(c, index);
    expect(r.match.referenceId).toBe('a');
    expect(index.size).toBe(4);
    expect(index.frameCount).toBe(12);
    index.dispose();
    c.dispose();
    // the two inline tensors above (addImages input, addEmbeddings input) are still alive
    expect(tf.memory().numTensors - before).toBe(2);
    expect(() => contentScore(c, index)).toThrow();
  });

  test('typed errors', () => {
    const index = new VideoReferenceIndex(emb);
    const g = rand([3, 8, 8, 3], 60);
    expect(() => contentScore(g, index)).toThrow(InputError); // EMPTY_INDEX
    index.addClip('a', g);
    expect(() => index.addClip('a', g)).toThrow(ConfigError); // duplicate id
    expect(() => contentScore(tf.fill([3, 8, 8, 3], NaN), index)).toThrow(NonFiniteError);
    expect(() => contentScore(tf.fill([3, 8, 8, 3], -0.5), index)).toThrow(ValueRangeError);
    expect(() => contentScore(tf.zeros([8, 8, 3]) as never, index)).toThrow(ShapeError);
    expect(() => contentScore(tf.zeros([3, 8, 8, 3], 'int32') as never, index)).toThrow(/float32/);
    expect(() => index.addEmbeddings('b', 'video', tf.zeros([2, 7]))).toThrow(ShapeError); // wrong dimension
    expect(() => index.addEmbeddings('c', 'video', tf.fill([2, 48], NaN))).toThrow(NonFiniteError);
    expect(() => index.addEmbeddings('d', 'image', tf.ones([2, 48]))).toThrow(ShapeError);
    expect(() => index.addImages(['x'], rand([2, 8, 8, 3], 61))).toThrow(ShapeError);
    expect(() => contentScore(g, index, { threshold: 2 })).toThrow(ConfigError);
    expect(() => contentScoreFromEmbeddings(tf.fill([2, 48], NaN) as tf.Tensor2D, index)).toThrow(NonFiniteError);
    expect(() => contentScoreFromEmbeddings(tf.ones([2, 5]) as tf.Tensor2D, index)).toThrow(ShapeError);
    expect(() => new VideoReferenceIndex({} as Embedder)).toThrow(ConfigError);
    index.dispose();
    expect(() => index.addClip('z', g)).toThrow(InputError);
    g.dispose();
  });
});
