// Dense optical flow (Horn–Schunck, Lucas–Kanade) validated on real frames: known synthetic motion
// on the real photographs (EPE), and OpenCV Farnebäck on real Megamind.avi frames (committed
// fixture from scripts/reference/flow_reference.py; no python needed here).
import * as fs from 'node:fs';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-wasm';
import '@tensorflow/tfjs-backend-cpu';
import { ConfigError, DTypeError, NonFiniteError, ShapeError, ValueRangeError, type ImageBatch, type Video } from '@diffmem/core';
import { expectNoTensorLeak } from '@diffmem/core/testing';
import { HornSchunckFlow, LucasKanadeFlow, clipFlow, compareFlows, warpBilinear, type FlowEstimator } from '../flow/index.js';
import { medianFilter, selectionNetwork } from '../flow/ops.js';
import { DATA, SHARED_DATA_MISSING, loadPhoto, report } from './helpers/clips.js';
import { decodeFixture, knownMotionPair, rotation, type Linear2 } from './helpers/synthetic.js';

const fixture = JSON.parse(fs.readFileSync(new URL('./fixtures/megamind_farneback.json', import.meta.url), 'utf8'));
const asFrames = (t: tf.Tensor): ImageBatch<'display'> => t as ImageBatch<'display'>;

beforeAll(async () => {
  await tf.setBackend('wasm');
});

const maybe = DATA ? describe : describe.skip;
if (!DATA) test.skip(SHARED_DATA_MISSING, () => undefined);

maybe('known synthetic motion on real photographs', () => {
  const cases: Array<[string, Linear2, [number, number], number]> = [
    // name, linear part, translation (px), HS EPE ceiling (px)
    ['integer (2,-1)', [1, 0, 0, 1], [2, -1], 0.05],
    ['sub-pixel (1.5,0.75)', [1, 0, 0, 1], [1.5, 0.75], 0.1],
    ['sub-pixel (0.25,-0.5)', [1, 0, 0, 1], [0.25, -0.5], 0.1],
    ['large (4.25,-3.5)', [1, 0, 0, 1], [4.25, -3.5], 0.1],
    ['rotation 3°', rotation(3), [0, 0], 0.1],
    ['zoom ×1.04', [1.04, 0, 0, 1.04], [0, 0], 0.1],
  ];
  const hs = new HornSchunckFlow();
  const lk = new LucasKanadeFlow();

  for (const photo of ['baboon.jpg', 'fruits.jpg']) {
    test(`${photo}: EPE of Horn–Schunck and Lucas–Kanade (96×96 grayscale crops)`, async () => {
      const img = loadPhoto(photo);
      const hi = tf.tidy(() => tf.expandDims(tf.sum(tf.mul(img, tf.tensor1d([0.299, 0.587, 0.114])), 2, true), 0) as tf.Tensor4D);
      const rows: Record<string, string> = {};
      for (const [name, m, t, ceiling] of cases) {
        const { i0, i1, flow } = knownMotionPair(hi, m, t, 4, 96);
        const epe: number[] = [];
        for (const est of [hs, lk] as FlowEstimator[]) {
          const f = await expectNoTensorLeak(() => est.estimate(asFrames(i0), asFrames(i1)), `${est.name}.estimate`);
          const r = compareFlows(f, flow, { border: 8 });
          epe.push(r.epe);
          f.dispose();
        }
        rows[name] = `HS ${epe[0]?.toFixed(3)} px, LK ${epe[1]?.toFixed(3)} px`;
        expect(epe[0]).toBeLessThan(ceiling);
        expect(epe[1]).toBeLessThan(2.5 * ceiling);
        tf.dispose([i0, i1, flow]);
      }
      report(`[flow evidence] EPE on ${photo} (interior, 8-px border excluded)`, rows);
      tf.dispose([img, hi]);
    });
  }
});

describe('agreement with OpenCV Farnebäck on real Megamind.avi frames (committed fixture)', () => {
  test('EPE, angular error, cosine and photometric residual', async () => {
    const { frames0, frames1, flow } = decodeFixture(fixture);
    const photometric = (f: tf.Tensor4D): number =>
      tf.tidy(() => tf.mean(tf.abs(tf.sub(warpBilinear(frames1, f).warped, frames0))).dataSync()[0] as number) * 255;
    const zero = tf.zerosLike(flow);
    const zeroEpe = compareFlows(zero, flow, { border: 4 }).epe;
    const fbPhoto = photometric(flow);
    const rows: Record<string, unknown> = {
      pairs: JSON.stringify(fixture.pairs),
      size: `${fixture.width}x${fixture.height}`,
      'zero-flow EPE (mean Farnebäck magnitude)': zeroEpe.toFixed(3),
      'Farnebäck photometric residual (/255)': fbPhoto.toFixed(2),
    };
    for (const est of [new HornSchunckFlow(), new LucasKanadeFlow()] as FlowEstimator[]) {
      const t0 = performance.now();
      const f = est.estimate(asFrames(frames0), asFrames(frames1));
      const ms = performance.now() - t0;
      const r = compareFlows(f, flow, { border: 4 });
      const photo = photometric(f);
      rows[est.name] =
        `EPE ${r.epe.toFixed(3)} px (per pair ${r.epePerPair.map((v) => v.toFixed(2)).join(', ')}), ` +
        `AE ${r.angularErrorDeg.toFixed(1)}°, Fl ${(100 * r.fl).toFixed(1)} %, cosine ${r.cosinePerPair.map((v) => v.toFixed(2)).join(', ')}, ` +
        `photometric ${photo.toFixed(2)}/255, ${ms.toFixed(0)} ms for ${fixture.pairs.length} pairs`;
      // Ceilings: well below the zero-flow baseline, and at least as photo-consistent as Farnebäck.
      expect(r.epe).toBeLessThan(1.0);
      expect(r.epe).toBeLessThan(0.6 * zeroEpe);
      expect(Math.min(...r.cosinePerPair)).toBeGreaterThan(0.7);
      expect(photo).toBeLessThan(fbPhoto);
      f.dispose();
    }
    report('[flow evidence] vs OpenCV 4.6 Farnebäck (data-juicer parameters)', rows);
    tf.dispose([frames0, frames1, flow, zero]);
  });
});

describe('flow building blocks', () => {
  test('bilinear warp: integer shifts equal a slice, sub-pixel shifts are exact on a linear ramp', () => {
    const ramp = tf.tidy(() => tf.reshape(tf.add(tf.mul(tf.range(0, 12), 1), tf.mul(tf.reshape(tf.range(0, 10), [10, 1]), 12)), [1, 10, 12, 1]) as tf.Tensor4D);
    const shift = tf.tidy(() => tf.mul(tf.ones([1, 10, 12, 2]), tf.tensor1d([2, 1])) as tf.Tensor4D);
    const { warped, valid } = warpBilinear(ramp, shift);
    const expected = tf.slice(ramp, [0, 1, 2, 0], [1, 9, 10, 1]);
    expect(tf.max(tf.abs(tf.sub(tf.slice(warped, [0, 0, 0, 0], [1, 9, 10, 1]), expected))).dataSync()[0]).toBeLessThan(1e-5);
    expect(valid.dataSync()[(9 * 12 + 11) * 1]).toBe(0); // samples from outside are marked invalid
    expect(valid.dataSync()[0]).toBe(1);
    const half = tf.tidy(() => tf.mul(tf.ones([1, 10, 12, 2]), tf.tensor1d([0.25, 0.5])) as tf.Tensor4D);
    const w2 = warpBilinear(ramp, half);
    // ramp(x + 0.25, y + 0.5) = x + 0.25 + 12 (y + 0.5)
    expect(w2.warped.dataSync()[3 * 12 + 4]).toBeCloseTo(4.25 + 12 * 3.5, 4);
    tf.dispose([ramp, shift, warped, valid, expected, half, w2.warped, w2.valid]);
  });

  test('median filter equals a brute-force median (symmetric borders); pruned networks', () => {
    expect(selectionNetwork(9, 4).length).toBeLessThan(28);
    const x = tf.randomUniform([2, 9, 7, 2], 0, 1, 'float32', 3) as tf.Tensor4D;
    const xv = x.arraySync() as number[][][][];
    for (const size of [3, 5]) {
      const m = medianFilter(x, size);
      const mv = m.arraySync() as number[][][][];
      const r = (size - 1) / 2;
      const refl = (q: number, n: number): number => (q < 0 ? -q - 1 : q >= n ? 2 * n - q - 1 : q);
      let worst = 0;
      for (let b = 0; b < 2; b++)
        for (let y = 0; y < 9; y++)
          for (let xx = 0; xx < 7; xx++)
            for (let c = 0; c < 2; c++) {
              const win: number[] = [];
              for (let dy = -r; dy <= r; dy++) for (let dx = -r; dx <= r; dx++) win.push(xv[b]![refl(y + dy, 9)]![refl(xx + dx, 7)]![c]!);
              win.sort((p, q) => p - q);
              worst = Math.max(worst, Math.abs((win[(win.length - 1) / 2] as number) - mv[b]![y]![xx]![c]!));
            }
      expect(worst).toBe(0);
      m.dispose();
    }
    x.dispose();
  });

  test('identical frames and all-black frames give exactly zero flow (never NaN)', () => {
    const textured = tf.randomUniform([2, 24, 32, 1], 0, 1, 'float32', 7);
    const black = tf.zeros([2, 24, 32, 3]);
    for (const est of [new HornSchunckFlow(), new LucasKanadeFlow()] as FlowEstimator[]) {
      for (const frames of [textured, black]) {
        const f = est.estimate(asFrames(frames), asFrames(frames));
        const v = f.dataSync();
        expect(v.every((e) => e === 0)).toBe(true);
        f.dispose();
      }
    }
    tf.dispose([textured, black]);
  });

  test('clipFlow: consecutive and strided pairs, batched', async () => {
    const clip = tf.tidy(() => {
      const base = tf.randomUniform([1, 20, 24, 1], 0, 1, 'float32', 5);
      return tf.concat([0, 1, 2, 3, 4].map((s) => tf.slice(tf.pad(base, [[0, 0], [0, 0], [0, 4], [0, 0]], 0.5), [0, 0, 4 - s, 0], [1, 20, 24, 1]))) as tf.Tensor4D;
    });
    const est = new HornSchunckFlow({ levels: 2, iterations: 10, warps: 1 });
    const f1 = await expectNoTensorLeak(() => clipFlow(clip as Video<'display'>, est), 'clipFlow');
    expect(f1.shape).toEqual([4, 20, 24, 2]);
    const f2 = await expectNoTensorLeak(() => clipFlow(clip as Video<'display'>, est, { stride: 2, batchSize: 2 }), 'clipFlow');
    expect(f2.shape).toEqual([3, 20, 24, 2]);
    // Content moves 1 px right per frame: mean dx ≈ 1 (stride 1) and ≈ 2 (stride 2) in the interior.
    const meanDx = (f: tf.Tensor4D): number => tf.tidy(() => tf.mean(tf.slice(f, [0, 4, 4, 0], [-1, 12, 12, 1])).dataSync()[0] as number);
    expect(meanDx(f1)).toBeCloseTo(1, 0);
    expect(meanDx(f2)).toBeCloseTo(2, 0);
    tf.dispose([clip, f1, f2]);
  });

  test('cpu and wasm backends agree', async () => {
    const a = tf.randomUniform([1, 24, 24, 1], 0, 1, 'float32', 11);
    const b = tf.tidy(() => tf.concat([tf.slice(a, [0, 0, 1, 0], [1, 24, 23, 1]), tf.slice(a, [0, 0, 23, 0], [1, 24, 1, 1])], 2));
    const est = new HornSchunckFlow({ levels: 2, iterations: 10, warps: 2 });
    const av = a.arraySync();
    const bv = b.arraySync();
    const onWasm = est.estimate(asFrames(a), asFrames(b)).arraySync() as number[][][][];
    await tf.setBackend('cpu');
    const ac = tf.tensor(av);
    const bc = tf.tensor(bv);
    const onCpu = est.estimate(asFrames(ac), asFrames(bc)).arraySync() as number[][][][];
    await tf.setBackend('wasm');
    let worst = 0;
    onWasm.flat(3).forEach((v, i) => (worst = Math.max(worst, Math.abs(v - (onCpu.flat(3)[i] as number)))));
    expect(worst).toBeLessThan(1e-3);
    tf.dispose([a, b]);
  });
});

describe('bad input raises typed errors', () => {
  const est = new HornSchunckFlow({ levels: 1, iterations: 2, warps: 1 });
  let ok: tf.Tensor;

  beforeAll(() => {
    ok = tf.zeros([1, 8, 8, 1]);
  });
  afterAll(() => ok.dispose());

  test('frame pairs of different sizes, ranks or dtypes', () => {
    const other = tf.zeros([1, 8, 9, 1]);
    expect(() => est.estimate(asFrames(ok), asFrames(other))).toThrow(ShapeError);
    const rank3 = tf.zeros([8, 8, 1]);
    expect(() => est.estimate(asFrames(rank3), asFrames(rank3))).toThrow(ShapeError);
    const ints = tf.zeros([1, 8, 8, 1], 'int32');
    expect(() => est.estimate(asFrames(ints), asFrames(ints))).toThrow(DTypeError);
    const twoChannels = tf.zeros([1, 8, 8, 2]);
    expect(() => est.estimate(asFrames(twoChannels), asFrames(twoChannels))).toThrow(ShapeError);
    tf.dispose([other, rank3, ints, twoChannels]);
  });

  test('NaN frames → NonFiniteError; model-space or 0..255 frames → ValueRangeError', () => {
    const nan = tf.fill([1, 8, 8, 1], NaN);
    expect(() => est.estimate(asFrames(ok), asFrames(nan))).toThrow(NonFiniteError);
    const model = tf.fill([1, 8, 8, 1], -0.5);
    expect(() => est.estimate(asFrames(model), asFrames(ok))).toThrow(/toDisplayRange/);
    const bytes = tf.fill([1, 8, 8, 1], 200);
    expect(() => est.estimate(asFrames(bytes), asFrames(ok))).toThrow(ValueRangeError);
    tf.dispose([nan, model, bytes]);
  });

  test('a one-frame clip has no flow: clipFlow throws ShapeError naming it', () => {
    const one = tf.zeros([1, 8, 8, 1]) as Video<'display'>;
    expect(() => clipFlow(one, est)).toThrow(/1 frame\(s\) has no frame pair/);
    expect(() => clipFlow(one, est)).toThrow(ShapeError);
    expect(() => clipFlow(tf.zeros([3, 8, 8, 1]) as Video<'display'>, est, { stride: 3 })).toThrow(ShapeError);
    one.dispose();
  });

  test('invalid configurations → ConfigError', () => {
    expect(() => new HornSchunckFlow({ alpha: 0 })).toThrow(ConfigError);
    expect(() => new HornSchunckFlow({ medianSize: 4 })).toThrow(ConfigError);
    expect(() => new HornSchunckFlow({ pyramidScale: 1 })).toThrow(ConfigError);
    expect(() => new LucasKanadeFlow({ windowSigma: -1 })).toThrow(ConfigError);
    expect(() => new LucasKanadeFlow({ iterations: 0 })).toThrow(ConfigError);
    expect(() => clipFlow(tf.zeros([3, 8, 8, 1]) as Video<'display'>, est, { stride: 0 })).toThrow(ConfigError);
  });

  test('compareFlows: NaN flows → NonFiniteError, mismatched shapes → ShapeError', () => {
    const a = tf.zeros([1, 8, 8, 2]);
    const nan = tf.fill([1, 8, 8, 2], NaN);
    const b = tf.zeros([1, 8, 9, 2]);
    expect(() => compareFlows(nan, a)).toThrow(NonFiniteError);
    expect(() => compareFlows(a, b)).toThrow(ShapeError);
    expect(() => compareFlows(a, a, { border: 4 })).toThrow(ConfigError);
    tf.dispose([a, nan, b]);
  });
});
