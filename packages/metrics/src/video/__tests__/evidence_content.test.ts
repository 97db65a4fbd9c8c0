// Evidence for the content-memorization score (GSSCD, frame-level max) on real clips, with the
// weight-free CopyDescriptorEmbedder: transformed copies (H.264 re-encode, resize, crop,
// frame-rate change) of real clips against different real clips; partial copies (a few copied
// frames) where the clip-level VSSCD baseline is diluted; a memorized training image; and the time
// of one 16-frame clip against 1,000 reference clips.
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-wasm';
import { expectNoTensorLeak } from '@diffmem/core/testing';
import { CopyDescriptorEmbedder } from '../../embedders/copy_descriptor.js';
import { rocAuc, thresholdAtFpr, tprAtFpr } from '../../roc.js';
import {
  VideoReferenceIndex,
  calibrateDetector,
  contentScore,
  contentScoreFromEmbeddings,
  embedClip,
  vsscdFromEmbeddings,
  vsscdScore,
} from '../index.js';
import {
  DATA,
  SHARED_DATA_MISSING,
  cleanupTemp,
  cropClip,
  dropFrames,
  loadMegamind,
  loadPhoto,
  movingObjectClip,
  panningClip,
  reencode,
  report,
  resizeClip,
  segment,
  shotOf,
} from './helpers/clips.js';

const maybe = DATA ? describe : describe.skip;
if (!DATA) test.skip(SHARED_DATA_MISSING, () => undefined);

interface Original {
  name: string;
  clip: tf.Tensor4D;
  /** Scene group: clips of one group share content by construction (same Megamind shot). */
  group: string;
}

const mean = (v: number[]): number => v.reduce((a, b) => a + b, 0) / Math.max(1, v.length);

maybe('content memorization evidence on real clips', () => {
  const embedder = new CopyDescriptorEmbedder();
  const originals: Original[] = [];
  const copies: Array<{ of: number; transform: string; clip: tf.Tensor4D }> = [];
  let megamind: tf.Tensor4D;
  let photos: Record<string, tf.Tensor3D>;
  let index: VideoReferenceIndex;
  /** GSSCD of copies against different real clips (the calibration negatives). */
  const negatives: number[] = [];

  beforeAll(async () => {
    await tf.setBackend('wasm');
    megamind = (await loadMegamind(128, 96)).video;
    for (const s of [5, 30, 55, 78, 102, 130, 160, 182, 205, 230, 250]) {
      originals.push({ name: `megamind@${s}`, clip: segment(megamind, s, 16), group: `shot${shotOf(s)}` });
    }
    photos = Object.fromEntries(['home.jpg', 'fruits.jpg', 'butterfly.jpg', 'baboon.jpg'].map((n) => [n, loadPhoto(n)]));
    const p = photos as Record<string, tf.Tensor3D>;
    originals.push(
      { name: 'object(home+baboon)', group: 'home', clip: movingObjectClip(p['home.jpg']!, p['baboon.jpg']!, { frames: 16, width: 128, height: 96, seed: 1 }) },
      { name: 'object(fruits+butterfly)', group: 'fruits', clip: movingObjectClip(p['fruits.jpg']!, p['butterfly.jpg']!, { frames: 16, width: 128, height: 96, seed: 2, pan: [1, 0] }) },
      { name: 'pan(butterfly)', group: 'butterfly', clip: panningClip(p['butterfly.jpg']!, { frames: 16, width: 128, height: 96, seed: 3, pan: [3, 1] }) },
      { name: 'pan(baboon)', group: 'baboon', clip: panningClip(p['baboon.jpg']!, { frames: 16, width: 128, height: 96, seed: 4, pan: [-2, 2], zoom: 1.01 }) },
    );
    for (const [i, o] of originals.entries()) {
      copies.push(
        { of: i, transform: 'reencode', clip: await reencode(o.clip, 24, 30) },
        { of: i, transform: 'resize', clip: resizeClip(o.clip, 60, 80) },
        { of: i, transform: 'crop', clip: cropClip(o.clip, 0.8) },
        { of: i, transform: 'fps', clip: dropFrames(o.clip, 2, 1) },
      );
    }
    index = new VideoReferenceIndex(embedder);
    for (const o of originals) index.addClip(o.name, o.clip);
  });

  afterAll(() => {
    index?.dispose();
    originals.forEach((o) => o.clip.dispose());
    copies.forEach((c) => c.clip.dispose());
    megamind?.dispose();
    Object.values(photos ?? {}).forEach((p) => p.dispose());
    cleanupTemp();
  });

  test('GSSCD separates transformed copies from different real clips (VSSCD baseline alongside)', () => {
    const pos: number[] = [];
    const neg: number[] = [];
    const sameShot: number[] = [];
    const vPos: number[] = [];
    const vNeg: number[] = [];
    const perTransform = new Map<string, number[]>();
    let top1 = 0;
    let top1Scene = 0;
    for (const c of copies) {
      const e = embedClip(index, c.clip); // embedded once, scored twice
      const r = contentScoreFromEmbeddings(e, index, { topK: index.size });
      const v = vsscdFromEmbeddings(e, index, { pooling: 'mean', topK: index.size });
      e.dispose();
      if (r.match.referenceId === originals[c.of]?.name) top1++;
      if (originals.find((o) => o.name === r.match.referenceId)?.group === originals[c.of]?.group) top1Scene++;
      for (const [j, o] of originals.entries()) {
        const g = r.topClips.find((t) => t.referenceId === o.name)?.gsscd as number;
        const vs = v.topClips.find((t) => t.referenceId === o.name)?.vsscd as number;
        expect(Number.isFinite(g) && Number.isFinite(vs)).toBe(true);
        if (j === c.of) {
          pos.push(g);
          vPos.push(vs);
          perTransform.set(c.transform, [...(perTransform.get(c.transform) ?? []), g]);
        } else if (o.group === originals[c.of]?.group) {
          sameShot.push(g); // a different segment of the same shot: near-duplicate content by construction
        } else {
          neg.push(g);
          vNeg.push(vs);
        }
      }
    }
    const labels = [...pos.map(() => 1), ...neg.map(() => 0)];
    const auc = rocAuc([...pos, ...neg], labels);
    const cal = calibrateDetector(pos, neg, 0.01);
    report(`[video evidence] content GSSCD (${embedder.name}), ${originals.length} real clips × 4 transforms`, {
      positives: pos.length,
      negatives: neg.length,
      auc,
      tprAt1pctFpr: tprAtFpr([...pos, ...neg], labels, 0.01),
      thresholdAt1pctFpr: cal.threshold,
      tprAtThatThreshold: cal.tprAtThreshold,
      top1Retrieval: top1 / copies.length,
      top1SameScene: top1Scene / copies.length,
      meanPositive: mean(pos),
      meanNegative: mean(neg),
      maxNegative: Math.max(...neg),
      meanSameShotOtherSegment: mean(sameShot),
      ...Object.fromEntries([...perTransform].map(([t, v]) => [`min ${t}`, Math.min(...v)])),
      vsscdMeanPoolingAuc: rocAuc([...vPos, ...vNeg], [...vPos.map(() => 1), ...vNeg.map(() => 0)]),
    });
    negatives.push(...neg);
    expect(auc).toBeGreaterThan(0.97);
    expect(top1Scene / copies.length).toBeGreaterThan(0.95);
    expect(top1 / copies.length).toBeGreaterThan(0.8);
  });

  test('partial copies: GSSCD finds a few copied frames that clip-level VSSCD dilutes', async () => {
    // Generated clip = 3 re-encoded frames of a Megamind original + 13 frames of a photo clip.
    const filler = panningClip(photos['fruits.jpg'] as tf.Tensor3D, { frames: 13, width: 128, height: 96, seed: 11, pan: [2, -1] });
    const g: number[][] = [[], []];
    const v: number[][] = [[], []];
    const mm = originals.filter((o) => o.name.startsWith('megamind'));
    for (const o of mm) {
      const copied = tf.slice(o.clip, [6, 0, 0, 0], [3, -1, -1, -1]);
      const partial = await reencode(tf.concat([filler.slice([0, 0, 0, 0], [7, -1, -1, -1]), copied, filler.slice([7, 0, 0, 0], [6, -1, -1, -1])]) as tf.Tensor4D, 24, 30);
      const r = contentScore(partial, index, { topK: index.size });
      const vs = vsscdScore(partial, index, { pooling: 'concat', topK: index.size });
      for (const other of mm) {
        const row = other === o ? 0 : other.group === o.group ? -1 : 1;
        if (row < 0) continue;
        (g[row] as number[]).push(r.topClips.find((t) => t.referenceId === other.name)?.gsscd as number);
        (v[row] as number[]).push(vs.topClips.find((t) => t.referenceId === other.name)?.vsscd as number);
      }
      tf.dispose([copied, partial]);
    }
    filler.dispose();
    const lab = [...(g[0] as number[]).map(() => 1), ...(g[1] as number[]).map(() => 0)];
    const gAuc = rocAuc([...(g[0] as number[]), ...(g[1] as number[])], lab);
    const vAuc = rocAuc([...(v[0] as number[]), ...(v[1] as number[])], lab);
    report('[video evidence] partial copies (3 of 16 frames copied)', {
      gsscdAuc: gAuc,
      vsscdConcatAuc: vAuc,
      gsscdMeanPositive: mean(g[0] as number[]),
      vsscdMeanPositive: mean(v[0] as number[]),
      vsscdMeanNegative: mean(v[1] as number[]),
    });
    expect(gAuc).toBeGreaterThan(0.95);
    expect(gAuc).toBeGreaterThan(vAuc);
  });

  test('a memorized training image: static clip flagged as image replication', async () => {
    const images = new VideoReferenceIndex(embedder);
    for (const o of originals) images.addEmbeddings(o.name, 'video', embedClip(index, o.clip));
    const names = ['home.jpg', 'fruits.jpg', 'butterfly.jpg', 'baboon.jpg'];
    const stack = tf.stack(names.map((n) => tf.image.resizeBilinear(photos[n] as tf.Tensor3D, [96, 128], false, true))) as tf.Tensor4D;
    images.addImages(names, stack);
    const still = tf.tidy(() => tf.tile(tf.slice(stack, [1, 0, 0, 0], [1, -1, -1, -1]), [16, 1, 1, 1]) as tf.Tensor4D);
    const generated = await reencode(still, 24, 32);
    // τ_c calibrated at 1 % FPR on the real-clip negatives of the first test.
    expect(negatives.length).toBeGreaterThan(0);
    const calibration = thresholdAtFpr(negatives, 0.01);
    contentScore(generated, images); // first query consolidates the index's pending rows (owned by the index)
    const r = await expectNoTensorLeak(() => contentScore(generated, images, { threshold: calibration.threshold, minFrames: 8 }), 'contentScore');
    report('[video evidence] image replication', {
      threshold: calibration.threshold,
      score: r.score,
      match: r.match,
      imageReplicated: r.imageReplicated,
      videoReplicated: r.videoReplicated,
      bestImageFramesAbove: r.bestImage?.framesAbove ?? null,
    });
    expect(r.match.referenceKind).toBe('image');
    expect(r.match.referenceId).toBe('fruits.jpg');
    expect(r.imageReplicated).toBe(true);
    expect(r.bestImage?.framesAbove).toBe(16);
    images.dispose();
    tf.dispose([stack, still, generated]);
  });

  test('time: one 16-frame clip against 1,000 reference clips (16,000 frames)', () => {
    // Real descriptors: every frame of Megamind.avi (270) and 16-frame windows over them as clips.
    const t0 = performance.now();
    const pool = tf.tidy(() => {
      const parts: tf.Tensor2D[] = [];
      for (let s = 0; s < megamind.shape[0]; s += 64) {
        const n = Math.min(64, megamind.shape[0] - s);
        parts.push(embedder.embed(tf.slice(megamind, [s, 0, 0, 0], [n, -1, -1, -1])));
      }
      return tf.concat(parts) as tf.Tensor2D;
    });
    const embedMsPerFrame = (performance.now() - t0) / megamind.shape[0];
    const big = new VideoReferenceIndex(embedder);
    const t1 = performance.now();
    for (let c = 0; c < 1000; c++) {
      const start = (c * 37) % (pool.shape[0] - 16);
      const rows = tf.slice(pool, [start, 0], [16, -1]);
      big.addEmbeddings(`clip${c}`, 'video', rows);
      rows.dispose();
    }
    const addMs = performance.now() - t1;
    const query = copies[0]?.clip as tf.Tensor4D;
    contentScore(query, big); // warm-up: kernels compiled, pending rows consolidated into blocks
    const t2 = performance.now();
    const r = contentScore(query, big, { topK: 3 });
    const queryMs = performance.now() - t2;
    report('[video evidence] content query time', {
      references: big.size,
      referenceFrames: big.frameCount,
      queryMsIncludingEmbedding16Frames: queryMs,
      embedMsPerFrame,
      extrapolatedIndexBuildSeconds: (embedMsPerFrame * big.frameCount) / 1000,
      addEmbeddingsMs: addMs,
    });
    expect(r.score).toBeGreaterThan(0);
    expect(queryMs).toBeLessThan(10_000);
    big.dispose();
    pool.dispose();
  });
});
