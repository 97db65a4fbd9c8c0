/**
 * Error and similarity measures between two flow fields of the same shape.
 *
 * - EPE (end-point error): mean ‖F − F′‖₂ over pixels (Baker et al., "A database and evaluation
 *   methodology for optical flow", IJCV 2011).
 * - AE (angular error, Barron, Fleet & Beauchemin 1994): arccos of the normalised 3-D vectors
 *   (u, v, 1)·(u′, v′, 1).
 * - Fl (KITTI 2015 outlier rate): share of pixels whose error is ≥ 3 px and ≥ 5 % of ‖F′‖.
 * - Cosine c(F, F′) = Σ_p (u u′ + v v′) / (‖F‖₂ ‖F′‖₂), the flow-field similarity used by OFS.
 * @module
 */
import * as tf from '@tensorflow/tfjs-core';
import { ConfigError, NonFiniteError, ShapeError } from '@diffmem/core';

/** Options of {@link compareFlows}. */
export interface CompareFlowsOptions {
  /** Pixels ignored along every image border (default 0), e.g. where the true motion is unknown. */
  border?: number;
}

/** Per-pair and overall error statistics. */
export interface FlowComparison {
  /** Mean end-point error over all pairs and pixels (pixels). */
  epe: number;
  /** Mean end-point error of each pair. */
  epePerPair: number[];
  /** Mean angular error over all pairs and pixels (degrees). */
  angularErrorDeg: number;
  /** KITTI Fl outlier rate in [0, 1] (error ≥ 3 px and ≥ 5 % of the reference magnitude). */
  fl: number;
  /** Flow-field cosine of each pair (0 when either field is zero). */
  cosinePerPair: number[];
}

function checkFlowTensor(t: unknown, name: string): tf.Tensor4D {
  if (!(t instanceof tf.Tensor)) throw new ShapeError(`${name} must be a tf.Tensor`, { name });
  if (t.rank !== 4 || t.shape[3] !== 2) {
    throw new ShapeError(`${name} must be a flow field [N,H,W,2], got [${t.shape.join(',')}]`, { name, actual: t.shape });
  }
  return t as tf.Tensor4D;
}

/**
 * Compares `flow` with `reference` (the second argument is the ground truth for AE/Fl purposes).
 * Throws {@link ShapeError} on mismatched shapes and {@link NonFiniteError} on NaN/Inf.
 */
export function compareFlows(flow: tf.Tensor, reference: tf.Tensor, options: CompareFlowsOptions = {}): FlowComparison {
  const a = checkFlowTensor(flow, 'flow');
  const b = checkFlowTensor(reference, 'reference');
  if (a.shape.join(',') !== b.shape.join(',')) {
    throw new ShapeError(`flow [${a.shape.join(',')}] and reference [${b.shape.join(',')}] must have the same shape`, {
      flow: a.shape,
      reference: b.shape,
    });
  }
  const border = options.border ?? 0;
  const [n, h, w] = a.shape;
  if (!Number.isInteger(border) || border < 0 || 2 * border >= Math.min(h, w)) {
    throw new ConfigError(`compareFlows: border must be an integer in [0, ${Math.ceil(Math.min(h, w) / 2) - 1}], got ${border}`);
  }
  const av = a.dataSync();
  const bv = b.dataSync();
  for (const [v, name] of [
    [av, 'flow'],
    [bv, 'reference'],
  ] as const) {
    for (let i = 0; i < v.length; i++) {
      if (!Number.isFinite(v[i] as number)) {
        throw new NonFiniteError(`${name} contains non-finite values (first at flat index ${i})`, { name, index: i });
      }
    }
  }
  const epePerPair: number[] = [];
  const cosinePerPair: number[] = [];
  let epeSum = 0;
  let aeSum = 0;
  let outliers = 0;
  let count = 0;
  for (let p = 0; p < n; p++) {
    let e = 0;
    let m = 0;
    let dot = 0;
    let na = 0;
    let nb = 0;
    for (let y = border; y < h - border; y++) {
      for (let x = border; x < w - border; x++) {
        const i = ((p * h + y) * w + x) * 2;
        const u = av[i] as number;
        const v = av[i + 1] as number;
        const ur = bv[i] as number;
        const vr = bv[i + 1] as number;
        const err = Math.hypot(u - ur, v - vr);
        e += err;
        m++;
        const cosAe = (u * ur + v * vr + 1) / (Math.sqrt(1 + u * u + v * v) * Math.sqrt(1 + ur * ur + vr * vr));
        aeSum += Math.acos(Math.min(1, Math.max(-1, cosAe)));
        if (err >= 3 && err >= 0.05 * Math.hypot(ur, vr)) outliers++;
        dot += u * ur + v * vr;
        na += u * u + v * v;
        nb += ur * ur + vr * vr;
      }
    }
    epePerPair.push(e / m);
    epeSum += e;
    count += m;
    cosinePerPair.push(na > 0 && nb > 0 ? dot / Math.sqrt(na * nb) : 0);
  }
  return {
    epe: epeSum / count,
    epePerPair,
    angularErrorDeg: ((aeSum / count) * 180) / Math.PI,
    fl: outliers / count,
    cosinePerPair,
  };
}
