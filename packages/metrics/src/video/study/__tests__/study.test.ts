import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-wasm';
import { ConfigError, InputError, makeMovingDigits, registerWasmGradKernels, ShapeError, type ClipDataset } from '@diffmem/core';
import { MotionAnalyzer, MotionReferenceIndex } from '../../motion.js';
import { PixelFrameEmbedder } from '../../../embedders/pixel_embedder.js';
import {
  ClipMemorizationScorer,
  evaluateVideoMemorization,
  objectMotionProfile,
  resolveVideoStudyConfig,
  runVideoMemorizationStudy,
  type TrainingClipInfo,
} from '../index.js';

beforeAll(async () => {
  await tf.setBackend('wasm');
  await tf.ready();
  registerWasmGradKernels();
});

const clipOf = (ds: ClipDataset, i: number): tf.Tensor4D => tf.tidy(() => tf.squeeze(tf.slice(ds.clips, [i], [1]), [0]) as tf.Tensor4D);

describe('PixelFrameEmbedder', () => {
  it('is the normalised cross-correlation of frames', () => {
    const e = new PixelFrameEmbedder({ size: 8 });
    const g = tf.tidy(() => tf.randomUniform([3, 16, 16, 1], 0, 1, 'float32', 1));
    const before = tf.memory().numTensors;
    const out = tf.tidy(() => {
      const a = e.embed(g);
      const brighter = e.embed(tf.add(tf.mul(g, 0.5), 0.2) as tf.Tensor4D); // affine intensity change
      const flat = e.embed(tf.fill([1, 16, 16, 1], 0.3) as tf.Tensor4D);
      return { a, cos: tf.sum(tf.mul(a, brighter), 1), norms: tf.norm(a, 2, 1), flat: tf.sum(tf.abs(flat)), cross: tf.sum(tf.mul(tf.slice(a, [0], [1]), tf.slice(a, [1], [1]))) };
    });
    expect(out.a.shape).toEqual([3, 64]);
    for (const v of out.norms.dataSync()) expect(v).toBeCloseTo(1, 5);
    for (const v of out.cos.dataSync()) expect(v).toBeCloseTo(1, 5);
    expect(out.flat.dataSync()[0]).toBe(0);
    expect(Math.abs(out.cross.dataSync()[0] as number)).toBeLessThan(0.5);
    tf.dispose(Object.values(out));
    expect(tf.memory().numTensors).toBe(before);
    expect(() => e.embed(tf.zeros([2, 4, 4]) as unknown as tf.Tensor4D)).toThrow(ShapeError);
    expect(() => new PixelFrameEmbedder({ size: 1 })).toThrow(ConfigError);
    g.dispose();
  });
});

describe('objectMotionProfile', () => {
  let ds: ClipDataset;
  beforeAll(() => {
    ds = makeMovingDigits({ numClips: 6, size: 16, numFrames: 8, digitsPerClip: 2, seed: 3 });
  });
  afterAll(() => ds.clips.dispose());

  it('keeps the object motion that camera compensation removes on untextured backgrounds', () => {
    const analyzer = new MotionAnalyzer({ size: [32, 32], descriptorSize: [8, 8] });
    const single = makeMovingDigits({ numClips: 1, size: 16, numFrames: 8, digitsPerClip: 1, seed: 4 });
    const one = clipOf(single, 0);
    const before = tf.memory().numTensors;
    // MotionAnalyzer sees a lone digit on black as camera motion (a near-affine flow field) …
    const camera = analyzer.analyze(one);
    expect(camera.undefinedReason).toBe('natural-motion');
    expect(Math.max(...camera.residualRatio)).toBeLessThan(0.3);
    // … the object profile keeps it.
    const p = objectMotionProfile(analyzer, one);
    expect(p.undefinedReason).toBeNull();
    expect(p.pairs).toBe(7);
    expect(p.descriptors).toHaveLength(7 * analyzer.dim);
    expect(tf.memory().numTensors).toBe(before);
    tf.dispose([one, single.clips]);
  });

  it('gives OFS 1 for a clip against itself and less for other clips; static clips are undefined', () => {
    const analyzer = new MotionAnalyzer({ size: [32, 32], descriptorSize: [8, 8] });
    const index = new MotionReferenceIndex(analyzer);
    for (let i = 0; i < 5; i++) {
      const c = clipOf(ds, i);
      index.add(`clip${i}`, objectMotionProfile(analyzer, c));
      c.dispose();
    }
    const c0 = clipOf(ds, 0);
    const self = index.score(objectMotionProfile(analyzer, c0), { k: 4 });
    expect(self.match?.referenceId).toBe('clip0');
    expect(self.score).toBeCloseTo(1, 5);
    const c5 = clipOf(ds, 5);
    const other = index.score(objectMotionProfile(analyzer, c5), { k: 4 });
    expect(other.score as number).toBeLessThan(0.95);
    const still = tf.tidy(() => tf.tile(tf.slice(c0, [0], [1]), [8, 1, 1, 1])) as tf.Tensor4D;
    expect(objectMotionProfile(analyzer, still).undefinedReason).toBe('static');
    const oneFrame = tf.tidy(() => tf.slice(c0, [0], [1])) as tf.Tensor4D;
    expect(objectMotionProfile(analyzer, oneFrame).undefinedReason).toBe('single-frame');
    tf.dispose([c0, c5, still, oneFrame]);
    index.dispose();
  });
});

describe('evaluateVideoMemorization', () => {
  it('finds planted copies of training clips, attributes them to their group, and calibrates on controls', () => {
    // 30 training clips (the first 5 "duplicated"), 20 held-out controls, 10 fresh clips.
    const ds = makeMovingDigits({ numClips: 60, size: 16, numFrames: 8, digitsPerClip: 2, seed: 9 });
    const before = tf.memory().numTensors;
    const training = tf.tidy(() => tf.slice(ds.clips, [0], [30])) as tf.Tensor5D;
    const controls = tf.tidy(() => tf.slice(ds.clips, [30], [20])) as tf.Tensor5D;
    // Generated: noisy copies of duplicated clips 0, 1, 2 and ordinary clips 10, 11, then 5 unseen clips.
    const copied = [0, 1, 2, 10, 11];
    const generated = tf.tidy(() => {
      const copies = tf.gather(ds.clips, copied);
      const noisy = tf.clipByValue(tf.add(copies, tf.mul(tf.randomNormal(copies.shape, 0, 1, 'float32', 5), 0.05)), 0, 1);
      return tf.concat([noisy, tf.slice(ds.clips, [50], [5])]);
    }) as tf.Tensor5D;
    const clipsInfo: TrainingClipInfo[] = ds.records.slice(0, 30).map((r, i) => ({ id: r.id, group: i < 5 ? 'duplicated' : 'ordinary', copies: i < 5 ? 10 : 1, label: r.label }));
    const labels = [...copied.map((i) => ds.records[i]?.label as number), ...[50, 51, 52, 53, 54].map((i) => ds.records[i]?.label as number)];
    const ev = evaluateVideoMemorization({ generated, generatedLabels: labels, training: { clips: training, clipsInfo }, controls }, { contentFpr: 0.05, motionFpr: 0.05 });
    const px = ev.rates.content['pixels'];
    expect(px?.generated).toBeCloseTo(0.5, 5);
    expect(px?.copies).toEqual({ duplicated: 3, ordinary: 2 });
    expect(px?.replicated.duplicated).toBeCloseTo(3 / 5, 5);
    expect(px?.replicated.ordinary).toBeCloseTo(2 / 25, 5);
    expect(px?.controls).toBeLessThanOrEqual(0.05);
    for (let i = 0; i < 5; i++) {
      const g = ev.generated[i];
      expect(g?.content['pixels']?.referenceId).toBe(ds.records[copied[i] as number]?.id);
      expect(g?.motion.referenceId).toBe(ds.records[copied[i] as number]?.id);
      expect(g?.motion.memorized).toBe(true);
    }
    expect(ev.rates.motion.copies.duplicated).toBe(3);
    // The copies also move like the clip whose frames they copy; unseen clips do not.
    for (let i = 0; i < 5; i++) expect(ev.generated[i]?.content['pixels']?.motionScore as number).toBeGreaterThan(ev.thresholds.motion as number);
    for (let i = 5; i < 10; i++) expect(ev.generated[i]?.content['pixels']?.memorized).toBe(false);
    expect(ev.rates.contentAndMotion['pixels']?.generated).toBeCloseTo(0.5, 5);
    expect(ev.rates.contentAndMotion['pixels']?.copies).toEqual({ duplicated: 3, ordinary: 2 });
    expect(ev.generated[0]?.label).toBe(labels[0]);
    expect(ev.thresholds.content['copy-descriptor']).toBeGreaterThan(0);
    expect(ev.motionMode).toBe('object');
    expect(tf.memory().numTensors).toBe(before + 3);
    tf.dispose([training, controls, generated, ds.clips]);
    expect(() => evaluateVideoMemorization({ generated: tf.zeros([2, 8, 16, 16]) as unknown as tf.Tensor5D, training: { clips: generated, clipsInfo }, controls })).toThrow(ShapeError);
  });
});

describe('ClipMemorizationScorer', () => {
  it('scores a clip against every training clip, with the motion score against its content match', () => {
    const ds = makeMovingDigits({ numClips: 6, size: 16, numFrames: 8, digitsPerClip: 2, seed: 11 });
    const training = tf.tidy(() => tf.slice(ds.clips, [0], [5])) as tf.Tensor5D;
    const clipsInfo: TrainingClipInfo[] = ds.records.slice(0, 5).map((r, i) => ({ id: r.id, group: i < 2 ? 'duplicated' : 'ordinary', copies: i < 2 ? 5 : 1, label: r.label }));
    const before = tf.memory().numTensors;
    const scorer = new ClipMemorizationScorer({ clips: training, clipsInfo }, { embedders: { pixels: new PixelFrameEmbedder() } });
    expect(scorer.size).toBe(5);
    expect(scorer.embedderNames).toEqual(['pixels']);
    const c3 = clipOf(ds, 3);
    const reversed = tf.reverse(c3, 0) as tf.Tensor4D;
    const self = scorer.score(c3, 7, 2);
    expect(self.index).toBe(2);
    expect(self.label).toBe(7);
    expect(self.content['pixels']?.referenceId).toBe(ds.records[3]?.id);
    expect(self.content['pixels']?.score).toBeCloseTo(1, 4);
    expect(self.content['pixels']?.motionScore).toBeCloseTo(1, 4);
    expect(self.motion.referenceId).toBe(ds.records[3]?.id);
    // Played backwards: the same frames (content 1) but the opposite motion.
    const back = scorer.score(reversed);
    expect(back.content['pixels']?.score).toBeCloseTo(1, 4);
    expect(back.content['pixels']?.motionScore as number).toBeLessThan(0.6);
    tf.dispose([c3, reversed]);
    scorer.dispose();
    expect(tf.memory().numTensors).toBe(before);
    const one = clipOf(ds, 5);
    expect(() => scorer.score(one)).toThrow(InputError);
    one.dispose();
    // Bad input.
    expect(() => new ClipMemorizationScorer({ clips: training, clipsInfo: clipsInfo.slice(1) })).toThrow(ShapeError);
    expect(() => new ClipMemorizationScorer({ clips: training, clipsInfo: clipsInfo.map((c) => ({ ...c, id: 'same' })) })).toThrow(ConfigError);
    expect(() => new ClipMemorizationScorer({ clips: training, clipsInfo }, { embedders: {} })).toThrow(ConfigError);
    expect(() => new ClipMemorizationScorer({ clips: training, clipsInfo }, { motion: { mode: 'camera' as never } })).toThrow(ConfigError);
    const empty = tf.zeros([0, 8, 16, 16, 1]) as tf.Tensor5D;
    expect(() => new ClipMemorizationScorer({ clips: empty, clipsInfo: [] })).toThrow(ShapeError);
    empty.dispose();
    expect(tf.memory().numTensors).toBe(before);
    tf.dispose([training, ds.clips]);
  });
});

describe('runVideoMemorizationStudy', () => {
  it('validates its configuration', () => {
    expect(resolveVideoStudyConfig().data.size).toBe(16);
    expect(() => resolveVideoStudyConfig({ split: { copies: 0 } })).toThrow(/split.copies/);
    expect(() => resolveVideoStudyConfig({ train: { classDropout: 1 } })).toThrow(ConfigError);
    expect(() => resolveVideoStudyConfig({ sampling: { detectionSteps: 30 } })).toThrow(/detectionSteps/);
    expect(() => resolveVideoStudyConfig({ split: { duplicated: 0, ordinary: 0 } })).toThrow(/empty/);
    expect(() => resolveVideoStudyConfig({ evaluation: { ofsK: 9 } })).toThrow(/ofsK/);
  });

  it('runs end to end on a tiny configuration: report, files, no leaked tensors; re-runs from the saved model', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'diffmem-vstudy-'));
    const dir2 = fs.mkdtempSync(path.join(os.tmpdir(), 'diffmem-vstudy-re-'));
    const before = tf.memory().numTensors;
    const logs: string[] = [];
    const tiny = {
      seed: 1,
      data: { size: 8, numFrames: 6, digitsPerClip: 1 },
      split: { duplicated: 2, copies: 3, ordinary: 6, heldOut: 4 },
      model: { blockOutChannels: [8, 16], normNumGroups: 4 },
      train: { steps: 2, batchSize: 2, warmupSteps: 0 },
      sampling: { clipsPerClass: 1, numInferenceSteps: 2, detectionSteps: 1, batchSize: 10 },
    };
    try {
      const report = await runVideoMemorizationStudy(tiny, { outDir: dir, log: (m) => logs.push(m) });
      expect(tf.memory().numTensors).toBe(before);
      expect(report.training.steps).toBe(2);
      expect(report.membership.duplicated).toHaveLength(2);
      expect(report.membership.trainingSetSize).toBe(2 * 3 + 6);
      expect(report.evaluation.generated).toHaveLength(10);
      expect(report.evaluation.controls).toHaveLength(4);
      expect(Object.keys(report.evaluation.rates.content).sort()).toEqual(['copy-descriptor', 'pixels']);
      expect(report.detection?.scores).toHaveLength(10);
      expect(report.detection?.promptLevel.positives).toBe(2);
      expect(report.detection?.promptLevel.content?.auc).toBeGreaterThanOrEqual(0);
      const within = report.detection?.motionCopiesWithinDuplicatedClasses;
      expect((within?.positives ?? 0) + (within?.negatives ?? 0)).toBe(2);
      expect(report.timings.train.cpuSeconds).toBeGreaterThan(0);
      for (const f of ['model/config.json', 'model/diffusion_pytorch_model.safetensors', 'membership.json', 'dataset.json', 'samples.png', 'report.json']) {
        expect(fs.existsSync(path.join(dir, f))).toBe(true);
      }
      const membership = JSON.parse(fs.readFileSync(path.join(dir, 'membership.json'), 'utf8')) as { entries: Array<{ group: string; copies: number }> };
      expect(membership.entries.filter((e) => e.group === 'duplicated').every((e) => e.copies === 3)).toBe(true);
      expect(logs.some((l) => l.startsWith('train: step 2/2'))).toBe(true);
      expect(report.training.loadedFrom).toBeNull();

      // Re-run sampling + evaluation from the saved model, with another guidance scale.
      const again = await runVideoMemorizationStudy({ ...tiny, sampling: { ...tiny.sampling, guidanceScale: 2 } }, { outDir: dir2, modelDir: path.join(dir, 'model') });
      expect(tf.memory().numTensors).toBe(before);
      expect(again.training.steps).toBe(0);
      expect(again.training.loadedFrom).toBe(path.join(dir, 'model'));
      expect(again.membership).toEqual(report.membership);
      expect(again.config.sampling.guidanceScale).toBe(2);
      expect(again.evaluation.generated).toHaveLength(10);
      expect(fs.existsSync(path.join(dir2, 'report.json'))).toBe(true);
      expect(fs.existsSync(path.join(dir2, 'model'))).toBe(false);
      // A config that builds another split, another clip shape, or overwriting the training run: refused.
      await expect(runVideoMemorizationStudy({ ...tiny, seed: 2 }, { modelDir: path.join(dir, 'model') })).rejects.toThrow(/membership.json/);
      await expect(runVideoMemorizationStudy({ ...tiny, split: { ...tiny.split, copies: 4 } }, { modelDir: path.join(dir, 'model') })).rejects.toThrow(/membership.json/);
      await expect(runVideoMemorizationStudy({ ...tiny, data: { ...tiny.data, numFrames: 7 } }, { modelDir: path.join(dir, 'model') })).rejects.toThrow(ConfigError);
      await expect(runVideoMemorizationStudy(tiny, { outDir: dir, modelDir: path.join(dir, 'model') })).rejects.toThrow(/overwritten/);
      expect(tf.memory().numTensors).toBe(before);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
      fs.rmSync(dir2, { recursive: true, force: true });
    }
  });
});
