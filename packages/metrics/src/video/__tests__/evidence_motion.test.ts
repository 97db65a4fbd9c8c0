// Evidence for the motion-memorization score (OFS-k with natural-motion filtering) on real clips:
// transformed copies (H.264 re-encode, resize, crop, frame-rate change) of real clips — segments
// of Megamind.avi and moving-object clips built from the real photographs — against different
// real clips; a static clip and a camera-only clip drop out of motion memorization.
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-wasm';
import { expectNoTensorLeak } from '@diffmem/core/testing';
import { rocAuc, tprAtFpr } from '../../roc.js';
import { MotionAnalyzer, MotionReferenceIndex, ofs, type MotionProfile } from '../index.js';
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
} from './helpers/clips.js';

const maybe = DATA ? describe : describe.skip;
/** Source frames per clip (24 fps); the analyser works at 12 fps, so 8 frames and 7 flows. */
const FRAMES = 16;
if (!DATA) test.skip(SHARED_DATA_MISSING, () => undefined);

interface Source {
  name: string;
  clip: tf.Tensor4D;
}

maybe('motion memorization evidence on real clips', () => {
  const analyzer = new MotionAnalyzer({ fps: 12 });
  const originals: Source[] = [];
  const profiles = new Map<string, MotionProfile>();
  const copies: Array<{ of: number; transform: string; profile: MotionProfile }> = [];
  let analyseMs = 0;
  let analysed = 0;

  beforeAll(async () => {
    await tf.setBackend('wasm');
    const mm = await loadMegamind(128, 96);
    for (const s of [62, 104, 128, 165, 222, 246]) originals.push({ name: `megamind@${s}`, clip: segment(mm.video, s, FRAMES) });
    mm.video.dispose();
    const photos = Object.fromEntries(['home.jpg', 'fruits.jpg', 'butterfly.jpg', 'baboon.jpg'].map((n) => [n, loadPhoto(n)]));
    const objectClips: Array<[string, string, number, [number, number]]> = [
      ['home.jpg', 'baboon.jpg', 1, [0, 0]],
      ['fruits.jpg', 'butterfly.jpg', 2, [1, 0]],
      ['butterfly.jpg', 'fruits.jpg', 3, [0, 0.5]],
      ['baboon.jpg', 'home.jpg', 4, [0, 0]],
    ];
    for (const [bg, sp, seed, pan] of objectClips) {
      originals.push({
        name: `object(${bg}+${sp},seed ${seed})`,
        clip: movingObjectClip(photos[bg] as tf.Tensor3D, photos[sp] as tf.Tensor3D, { frames: FRAMES, width: 128, height: 96, seed, pan }),
      });
    }
    Object.values(photos).forEach((p) => p.dispose());
    const t0 = performance.now();
    for (const o of originals) profiles.set(o.name, analyzer.analyze({ frames: o.clip, fps: 24 }));
    for (const [i, o] of originals.entries()) {
      const variants: Array<[string, tf.Tensor4D, number]> = [
        ['reencode', await reencode(o.clip, 24, 30), 24],
        ['resize', resizeClip(o.clip, 72, 96), 24],
        ['crop', cropClip(o.clip, 0.8), 24],
        ['fps', dropFrames(o.clip, 2, 1), 12],
      ];
      for (const [transform, clip, fps] of variants) {
        copies.push({ of: i, transform, profile: analyzer.analyze({ frames: clip, fps }) });
        clip.dispose();
      }
    }
    analyseMs = performance.now() - t0;
    analysed = originals.length * 5;
  });

  test('time: one clip against 1,000 reference clips', () => {
    // 1,000 references from the real profiles (each real profile repeated under new ids): the
    // query cost is one [pairs, 512] × [512, rows] product plus the per-reference run search.
    const index = new MotionReferenceIndex(analyzer);
    const real = [...profiles.values()].filter((p) => p.undefinedReason === null);
    for (let i = 0; i < 1000; i++) index.add(`ref${i}`, real[i % real.length] as MotionProfile);
    const query = copies.find((c) => c.profile.undefinedReason === null) as { profile: MotionProfile };
    const t0 = performance.now();
    const r = index.score(query.profile, { k: 4 });
    const queryMs = performance.now() - t0;
    report('[video evidence] motion query time', {
      references: index.size,
      referenceFlowPairs: index.references.reduce((a, x) => a + x.profile.pairs, 0),
      queryMs,
      analyseOneClipMs: analyseMs / analysed,
      totalWithAnalysisMs: queryMs + analyseMs / analysed,
    });
    expect(r.comparedReferences).toBe(1000);
    expect(queryMs + analyseMs / analysed).toBeLessThan(10_000);
    index.dispose();
  });

  afterAll(() => {
    originals.forEach((o) => o.clip.dispose());
    cleanupTemp();
  });

  test('OFS-k separates transformed copies from different real clips', () => {
    const readings = [
      ['run', 4],
      ['topk', 4],
    ] as const;
    for (const [reading, k] of readings) {
      const pos: number[] = [];
      const neg: number[] = [];
      const perTransform = new Map<string, number[]>();
      let undefinedPairs = 0;
      for (const c of copies) {
        originals.forEach((o, j) => {
          const r = ofs(c.profile, profiles.get(o.name) as MotionProfile, { reading, k });
          if (r.score === null) {
            undefinedPairs++;
            return;
          }
          expect(Number.isFinite(r.score)).toBe(true);
          if (j === c.of) {
            pos.push(r.score);
            perTransform.set(c.transform, [...(perTransform.get(c.transform) ?? []), r.score]);
          } else neg.push(r.score);
        });
      }
      const labels = [...pos.map(() => 1), ...neg.map(() => 0)];
      const scores = [...pos, ...neg];
      const auc = rocAuc(scores, labels);
      const mean = (v: number[]): number => v.reduce((a, b) => a + b, 0) / Math.max(1, v.length);
      report(`[video evidence] motion OFS (${reading}, k=${k}), ${originals.length} real clips × 4 transforms`, {
        positives: pos.length,
        negatives: neg.length,
        undefinedPairs,
        auc,
        tprAt1pctFpr: tprAtFpr(scores, labels, 0.01),
        meanPositive: mean(pos),
        meanNegative: mean(neg),
        ...Object.fromEntries([...perTransform].map(([t, v]) => [`mean ${t}`, mean(v)])),
        analyseMsPerClip: analyseMs / analysed,
      });
      expect(pos.length).toBeGreaterThanOrEqual(20);
      expect(auc).toBeGreaterThan(0.9);
    }
    const undefinedOriginals = originals.filter((o) => profiles.get(o.name)?.undefinedReason !== null);
    report('[video evidence] originals without motion (NMF)', {
      clips: undefinedOriginals.map((o) => `${o.name}: ${profiles.get(o.name)?.undefinedReason}`),
    });
  });

  test('a static clip and a camera-only clip drop out of motion memorization', async () => {
    const photo = loadPhoto('fruits.jpg');
    const still = tf.tidy(() => tf.tile(tf.expandDims(tf.image.resizeBilinear(photo, [96, 128], false, true), 0), [FRAMES, 1, 1, 1]) as tf.Tensor4D);
    const stillCopy = await reencode(still, 24, 30);
    const pan = panningClip(photo, { frames: FRAMES, width: 128, height: 96, seed: 9, pan: [2, 1], zoom: 1.01 });
    const index = new MotionReferenceIndex(analyzer);
    for (const o of originals) index.add(o.name, profiles.get(o.name) as MotionProfile);
    index.add('still', { frames: still, fps: 24 });
    const stillProfile = analyzer.analyze({ frames: stillCopy, fps: 24 });
    const staticResult = await expectNoTensorLeak(() => index.score(stillProfile), 'MotionReferenceIndex.score');
    const panResult = index.score({ frames: pan, fps: 24 });
    report('[video evidence] natural-motion filtering', {
      staticScore: staticResult.score,
      staticReason: staticResult.reason,
      staticMeanMagnitudePx: staticResult.generated.naturalMotion?.meanMagnitude ?? null,
      staticGatePx: staticResult.generated.naturalMotion?.magnitudeGate ?? null,
      staticBy: staticResult.generated.naturalMotion?.staticBy ?? null,
      panScore: panResult.score,
      panReason: panResult.reason,
      panResidualRatios: panResult.generated.residualRatio.map((v) => Number(v.toFixed(2))),
      skippedReferences: staticResult.skippedReferences,
    });
    expect(staticResult.score).toBeNull();
    expect(staticResult.reason).toBe('static');
    expect(staticResult.memorized).toBe(false);
    expect(panResult.score).toBeNull();
    expect(['natural-motion', 'static']).toContain(panResult.reason);
    // The still reference itself is skipped as a motion candidate.
    expect(index.references.find((r) => r.id === 'still')?.profile.undefinedReason).toBe('static');
    // A transformed copy of a moving clip is found in the index with its alignment.
    const moving = copies.find((c) => c.transform === 'reencode' && c.profile.undefinedReason === null);
    expect(moving).toBeDefined();
    index.score(moving!.profile); // the first query builds the index's descriptor matrix (owned by the index)
    const r = await expectNoTensorLeak(() => index.score(moving!.profile, { k: 4 }), 'MotionReferenceIndex.score');
    expect(r.match?.referenceId).toBe(originals[moving!.of]?.name);
    expect(r.memorized).toBe(true);
    index.dispose();
    tf.dispose([photo, still, stillCopy, pan]);
  });
});
