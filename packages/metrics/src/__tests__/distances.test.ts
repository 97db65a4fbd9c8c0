import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-wasm';
import { ConfigError, Generator, ShapeError } from '@diffmem/core';
import {
  NL2_DEFAULTS,
  ReferenceIndex,
  nearestCosine,
  nearestCosineDifferentiable,
  nl2,
  nl2Differentiable,
  nl2FromNeighbors,
  pairwiseRmsL2,
  pairwiseTiledL2,
  rmsL2,
  tileRmsL2,
  tiledL2,
} from '../index.js';

beforeAll(async () => {
  await tf.setBackend('wasm');
  await tf.ready();
});

const H = 8;
const W = 8;
const C = 3;
const D = H * W * C;

function uniform(n: number, seed: number): Float32Array {
  return new Generator(seed).uniformArray(n * D);
}

function rms64(a: ArrayLike<number>, b: ArrayLike<number>, ao = 0, bo = 0, len = D): number {
  let s = 0;
  for (let i = 0; i < len; i++) s += ((a[ao + i] as number) - (b[bo + i] as number)) ** 2;
  return Math.sqrt(s / len);
}

describe('RMS ℓ2 and tiled ℓ2', () => {
  it('rmsL2 is sqrt(mean((a−b)²)) per item, with batch-1 broadcast', () => {
    const a = uniform(3, 1);
    const b = uniform(1, 2);
    const ta = tf.tensor4d(a, [3, H, W, C]);
    const tb = tf.tensor4d(b, [1, H, W, C]);
    const d = rmsL2(ta, tb).dataSync();
    for (let i = 0; i < 3; i++) expect(d[i]).toBeCloseTo(rms64(a, b, i * D, 0), 6);
    const p = pairwiseRmsL2(ta, ta).arraySync() as number[][];
    expect(p[0]![0]).toBeLessThan(2e-3);
    expect(p[1]![2]).toBeCloseTo(rms64(a, a, D, 2 * D), 3);
    const wrong = tf.zeros([3, H, W, 1]);
    expect(() => rmsL2(ta, wrong)).toThrow(ShapeError);
    const two = tf.zeros([2, H, W, C]);
    expect(() => rmsL2(ta, two)).toThrow(/must have 3 items \(or 1, broadcast\)/);
    for (const t of [ta, tb, wrong, two]) t.dispose();
  });

  it('tiled ℓ2 is the max tile RMS (Carlini 4×4 grid), and only one differing tile drives it', () => {
    const base = uniform(1, 3);
    const other = Float32Array.from(base);
    // perturb only tile (row 1, col 2) of the 4×4 grid (2×2-pixel tiles on 8×8)
    for (let y = 2; y < 4; y++) for (let x = 4; x < 6; x++) for (let c = 0; c < C; c++) other[(y * W + x) * C + c] = 1 - (other[(y * W + x) * C + c] as number);
    const ta = tf.tensor4d(base, [1, H, W, C]);
    const tb = tf.tensor4d(other, [1, H, W, C]);
    const before = tf.memory().numTensors;
    const read = <T>(t: tf.Tensor, f: (t: tf.Tensor) => T): T => {
      const v = f(t);
      t.dispose();
      return v;
    };
    const tiles = read(tileRmsL2(ta, tb), (t) => t.arraySync() as number[][][]);
    const tiled = read(tiledL2(ta, tb), (t) => t.dataSync()[0] as number);
    const whole = read(rmsL2(ta, tb), (t) => t.dataSync()[0] as number);
    expect(tf.memory().numTensors).toBe(before);
    const tileVals = tiles[0]!.flat();
    expect(tileVals.filter((v) => v > 0)).toHaveLength(1);
    expect(tiles[0]![1]![2]).toBeCloseTo(tiled, 6);
    // one of 16 tiles differs: whole-image RMS = tile RMS / 4
    expect(whole).toBeCloseTo(tiled / 4, 5);
    expect(tiledL2(ta, tb, { tileSize: [2, 2] }).dataSync()[0]).toBeCloseTo(tiled, 6);
    expect(tiledL2(ta, tb, { grid: [1, 1] }).dataSync()[0]).toBeCloseTo(whole, 6);
    expect(() => tiledL2(ta, tb, { grid: [3, 3] })).toThrow(ShapeError);
    expect(() => tiledL2(ta, tb, { grid: [2, 2], tileSize: [4, 4] })).toThrow(ConfigError);
    const pw = pairwiseTiledL2(tf.concat([ta, tb]), tf.concat([ta, tb])).arraySync() as number[][];
    expect(pw[0]![1]).toBeCloseTo(tiled, 3);
    expect(pw[1]![1]).toBeLessThan(2e-3);
    ta.dispose();
    tb.dispose();
  });

  it('tiled ℓ2 is differentiable (gradient flows through the worst tile only)', () => {
    const ta = tf.tensor4d(uniform(1, 4), [1, H, W, C]);
    const tb = tf.tensor4d(uniform(1, 5), [1, H, W, C]);
    const g = tf.grad((x: tf.Tensor) => tf.sum(tiledL2(x, tb, { eps: 1e-12 })))(ta);
    const nz = tf.tidy(() => tf.sum(tf.cast(tf.notEqual(g, 0), 'float32')).dataSync()[0]);
    expect(nz).toBe(2 * 2 * C); // one 2×2×3 tile
    for (const t of [ta, tb, g]) t.dispose();
  });
});

describe('nL2', () => {
  const N = 120;
  const refs = uniform(N, 10);
  let index: ReferenceIndex;
  beforeAll(() => {
    const t = tf.tensor4d(refs, [N, H, W, C]);
    index = ReferenceIndex.fromImages(t, { ids: Array.from({ length: N }, (_, i) => `r${i}`), shardSize: 50 });
    t.dispose();
  });
  afterAll(() => index.dispose());

  function knn(q: ArrayLike<number>, qo: number, k: number, exclude = -1): Array<{ i: number; d: number }> {
    const all: Array<{ i: number; d: number }> = [];
    for (let i = 0; i < N; i++) if (i !== exclude) all.push({ i, d: rms64(q, refs, qo, i * D) });
    all.sort((a, b) => a.d - b.d || a.i - b.i);
    return all.slice(0, k);
  }

  it('defaults to AMG Eq. 8 (generated-centric, α = 0.5, k = 50)', () => {
    expect(NL2_DEFAULTS).toEqual({ k: 50, alpha: 0.5, variant: 'generated-centric' });
  });

  it('generated-centric: ℓ2(x̂, n0) / (α · mean ℓ2 to the k NN of x̂), 0 for a copy', () => {
    const q = uniform(4, 11);
    q.set(refs.subarray(7 * D, 8 * D), 0); // exact copy of r7
    const tq = tf.tensor4d(q, [4, H, W, C]);
    const before = tf.memory().numTensors;
    const res = nl2(tq, index, { k: 20 });
    expect(tf.memory().numTensors).toBe(before);
    expect(res.nl2[0]).toBe(0);
    expect(res.nearestId[0]).toBe('r7');
    expect(nl2FromNeighbors(index.search(tq, { k: 20 }))).toEqual(res.nl2.map((v) => expect.closeTo(v, 12)));
    for (let i = 1; i < 4; i++) {
      const nn = knn(q, i * D, 20);
      const mean = nn.reduce((a, b) => a + b.d, 0) / 20;
      expect(res.nl2[i]).toBeCloseTo(nn[0]!.d / (0.5 * mean), 5);
      expect(res.sigma[i]).toBeCloseTo(-(res.nl2[i] as number), 12);
      // same neighbours; order may differ only between near-ties (float32 expansion, ≤3e-5 rel.)
      expect(new Set(res.neighborIds[i])).toEqual(new Set(nn.map((e) => `r${e.i}`)));
      (res.neighborIds[i] as string[]).forEach((id, j) => {
        const dj = rms64(q, refs, i * D, Number(id.slice(1)) * D);
        expect(Math.abs(dj - nn[j]!.d)).toBeLessThan(1e-4 * nn[j]!.d);
      });
    }
    tq.dispose();
  });

  it('reference-centric: denominator from the matched training image’s own neighbours', () => {
    const q = uniform(3, 12);
    const tq = tf.tensor4d(q, [3, H, W, C]);
    const inc = nl2(tq, index, { variant: 'reference-centric', k: 10, alpha: 0.5 });
    const exc = nl2(tq, index, { variant: 'reference-centric', k: 10, alpha: 0.5, referenceIncludesSelf: false });
    for (let i = 0; i < 3; i++) {
      const n0 = knn(q, i * D, 1)[0]!;
      const withSelf = knn(refs, n0.i * D, 10); // includes n0 itself at distance 0
      expect(withSelf[0]!.i).toBe(n0.i);
      const m1 = withSelf.reduce((a, b) => a + b.d, 0) / 10;
      expect(inc.nl2[i]).toBeCloseTo(n0.d / (0.5 * m1), 5);
      const others = knn(refs, n0.i * D, 10, n0.i);
      const m2 = others.reduce((a, b) => a + b.d, 0) / 10;
      expect(exc.nl2[i]).toBeCloseTo(n0.d / (0.5 * m2), 5);
      expect(exc.neighborIds[i]).not.toContain(`r${n0.i}`);
    }
    tq.dispose();
  });

  it('self-nL2 with exclusion (AMG dedup of the training set) and typed errors', () => {
    const rows = index.gather([0, 1, 2]);
    const self = nl2(rows, index, { k: 10, exclude: [0, 1, 2] });
    for (let i = 0; i < 3; i++) {
      const nn = knn(refs, i * D, 10, i);
      expect(self.nl2[i]).toBeCloseTo(nn[0]!.d / (0.5 * (nn.reduce((a, b) => a + b.d, 0) / 10)), 5);
    }
    expect(() => nl2(rows, index, { k: N + 1 })).toThrow(ConfigError);
    expect(() => nl2(rows, index, { alpha: 0 })).toThrow(ConfigError);
    expect(() => nl2(rows, index, { variant: 'carlini' as never })).toThrow(ConfigError);
    rows.dispose();
  });

  it('nl2Differentiable: σ = −nL2 as a tensor with a correct gradient (wasm)', () => {
    const q = uniform(2, 13);
    const tq = tf.tensor4d(q, [2, H, W, C]);
    const before = tf.memory().numTensors;
    const out = nl2Differentiable(tq, index, { k: 15 });
    const ref = nl2(tq, index, { k: 15 });
    const s = out.sigma.dataSync();
    expect(s[0]).toBeCloseTo(-(ref.nl2[0] as number), 5);
    expect(out.nearestIds).toEqual(ref.nearestId);
    out.sigma.dispose();
    expect(tf.memory().numTensors).toBe(before);
    for (const detach of [true, false]) {
      const f = (x: tf.Tensor) => tf.sum(nl2Differentiable(x, index, { k: 15, detachDenominator: detach }).sigma);
      const g = tf.grad(f)(tq);
      expect(tf.memory().numTensors).toBe(before + 1);
      // finite difference along a random direction (neighbours do not change for a small step)
      const dir = tf.tensor4d(new Generator(14).normalArray(2 * D), [2, H, W, C]);
      const h = 1e-3;
      const plus = tf.tidy(() => tf.add(tq, tf.mul(dir, h)));
      const minus = tf.tidy(() => tf.sub(tq, tf.mul(dir, h)));
      const num = (sumSigma(plus, detach) - sumSigma(minus, detach)) / (2 * h);
      const ana = tf.tidy(() => tf.sum(tf.mul(g, dir)).dataSync()[0] as number);
      if (detach) expect(ana).toBeCloseTo(num, 2);
      else expect(Math.abs(ana - numFull(plus, minus, h))).toBeLessThan(1e-2 * Math.max(1, Math.abs(ana)));
      for (const t of [g, dir, plus, minus]) t.dispose();
    }
    tq.dispose();

    function sumSigma(x: tf.Tensor, detach: boolean): number {
      // with a detached denominator, the denominator is the one at the base point
      if (!detach) return nl2(x, index, { k: 15 }).sigma.reduce((a, b) => a + b, 0);
      const base = nl2(tq, index, { k: 15 });
      const r = nl2(x, index, { k: 15 });
      return r.nearestDistance.reduce((a, d, i) => a - d / (0.5 * (base.neighborMeanDistance[i] as number)), 0);
    }
    function numFull(plus: tf.Tensor, minus: tf.Tensor, h: number): number {
      return (sumSigma(plus, false) - sumSigma(minus, false)) / (2 * h);
    }
  });
});

describe('cosine similarity to the nearest reference (SSCD score, AMG Eq. 9)', () => {
  it('finds the max cosine and differentiates through it', () => {
    const g = new Generator(20);
    const feats = tf.tensor2d(g.normalArray(40 * 12), [40, 12]);
    const index = ReferenceIndex.fromFeatures(feats);
    const q = tf.tensor2d(g.normalArray(3 * 12), [3, 12]);
    const res = nearestCosine(q, index);
    const qa = q.arraySync();
    const fa = feats.arraySync();
    for (let i = 0; i < 3; i++) {
      let best = -2;
      let bi = -1;
      fa.forEach((r, j) => {
        const c = r.reduce((a, v, k) => a + v * qa[i]![k]!, 0) / Math.hypot(...r) / Math.hypot(...qa[i]!);
        if (c > best) [best, bi] = [c, j];
      });
      expect(res.nearestIndex[i]).toBe(bi);
      expect(res.similarity[i]).toBeCloseTo(best, 5);
    }
    const d = nearestCosineDifferentiable(q, index);
    expect(d.sigma.dataSync()[1]).toBeCloseTo(res.similarity[1] as number, 5);
    d.sigma.dispose();
    const grad = tf.grad((x: tf.Tensor) => tf.sum(nearestCosineDifferentiable(x, index).sigma))(q);
    expect(grad.shape).toEqual([3, 12]);
    const bad = tf.zeros([1, 11]);
    expect(() => nearestCosine(bad, index)).toThrow(ShapeError);
    for (const t of [feats, q, grad, bad]) t.dispose();
    index.dispose();
  });
});
