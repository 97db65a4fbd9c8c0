/**
 * Symmetric eigendecomposition in float64 JavaScript (TF.js has no eigen solver, and FID needs
 * more precision than float32), two ways:
 *
 * - `'jacobi'`: the cyclic Jacobi method — a plane rotation zeroes every off-diagonal pair in
 *   turn; simple, very accurate, quadratically convergent, but ≈6n³ flops per sweep × 6–10 sweeps
 *   (≈40 s at n = 512 in JS).
 * - `'householder-ql'`: Householder reduction to tridiagonal form followed by the implicit QL
 *   algorithm with Wilkinson-style shifts (EISPACK tred2/tql2), ≈(4/3 + 3)n³ flops with vectors,
 *   ≈(2/3)n³ for values only — an order of magnitude faster at FID sizes.
 *
 * `'auto'` (default) uses Jacobi up to n = 64 and Householder–QL above. Both are tested against
 * each other and against matrices with known spectra.
 * @module
 */
import { ConfigError, ShapeError } from '@diffmem/core';

/** Eigenvalues (ascending) and eigenvectors (columns of the row-major n×n `vectors`). */
export interface SymmetricEigen {
  values: Float64Array;
  vectors: Float64Array;
  sweeps: number;
}

/** Options of {@link symmetricEigen}. */
export interface SymmetricEigenOptions {
  /** Algorithm (default `'auto'`: Jacobi for n ≤ 64, Householder–QL above). */
  method?: 'auto' | 'jacobi' | 'householder-ql';
  /** Compute eigenvectors (default true; values only is much faster with Householder–QL). */
  vectors?: boolean;
  /** Jacobi: maximum sweeps (default 100). */
  maxSweeps?: number;
  /** Jacobi: stop when ‖offdiag‖ ≤ tolerance·‖A‖ (default 1e-15). */
  tolerance?: number;
}

function symmetrised(matrix: ArrayLike<number>, n: number): Float64Array {
  if (!Number.isInteger(n) || n < 1) throw new ConfigError(`n must be a positive integer, got ${n}`);
  if (matrix.length !== n * n) throw new ShapeError(`matrix has ${matrix.length} entries, expected ${n}x${n}`);
  const a = new Float64Array(n * n);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < n; j++) {
      const v = ((matrix[i * n + j] as number) + (matrix[j * n + i] as number)) / 2;
      if (!Number.isFinite(v)) throw new ConfigError(`matrix entry (${i},${j}) is not finite`);
      a[i * n + j] = v;
    }
  }
  return a;
}

/**
 * Eigen-decomposes a symmetric n×n matrix given row-major (only its symmetric part is used:
 * (A + Aᵀ)/2). A = V diag(λ) Vᵀ, eigenvalues ascending. `sweeps` is 0 for Householder–QL.
 */
export function symmetricEigen(matrix: ArrayLike<number>, n: number, options: SymmetricEigenOptions = {}): SymmetricEigen {
  const a = symmetrised(matrix, n);
  const method = options.method ?? 'auto';
  if (method !== 'auto' && method !== 'jacobi' && method !== 'householder-ql') throw new ConfigError(`unknown eigen method ${String(method)}`);
  if (method === 'householder-ql' || (method === 'auto' && n > 64)) return householderQl(a, n, options.vectors ?? true);
  return jacobi(a, n, options);
}

function jacobi(a: Float64Array, n: number, options: SymmetricEigenOptions): SymmetricEigen {
  const v = new Float64Array(n * n);
  for (let i = 0; i < n; i++) v[i * n + i] = 1;
  const maxSweeps = options.maxSweeps ?? 100;
  const tol = options.tolerance ?? 1e-15;
  let scale = 0;
  for (let i = 0; i < n * n; i++) scale += (a[i] as number) ** 2;
  scale = Math.sqrt(scale) || 1;
  let sweeps = 0;
  for (; sweeps < maxSweeps; sweeps++) {
    let off = 0;
    for (let p = 0; p < n; p++) for (let q = p + 1; q < n; q++) off += (a[p * n + q] as number) ** 2;
    if (Math.sqrt(2 * off) <= tol * scale) break;
    for (let p = 0; p < n - 1; p++) {
      for (let q = p + 1; q < n; q++) {
        const apq = a[p * n + q] as number;
        if (Math.abs(apq) <= 1e-300) continue;
        const app = a[p * n + p] as number;
        const aqq = a[q * n + q] as number;
        // Rotation that zeroes a_pq (Golub & Van Loan, Alg. 8.4.1): t = tan θ, smaller root.
        const theta = (aqq - app) / (2 * apq);
        const t = Math.sign(theta || 1) / (Math.abs(theta) + Math.sqrt(theta * theta + 1));
        const c = 1 / Math.sqrt(t * t + 1);
        const s = t * c;
        for (let k = 0; k < n; k++) {
          // columns p, q of A
          const akp = a[k * n + p] as number;
          const akq = a[k * n + q] as number;
          a[k * n + p] = c * akp - s * akq;
          a[k * n + q] = s * akp + c * akq;
        }
        for (let k = 0; k < n; k++) {
          // rows p, q of A
          const apk = a[p * n + k] as number;
          const aqk = a[q * n + k] as number;
          a[p * n + k] = c * apk - s * aqk;
          a[q * n + k] = s * apk + c * aqk;
        }
        for (let k = 0; k < n; k++) {
          const vkp = v[k * n + p] as number;
          const vkq = v[k * n + q] as number;
          v[k * n + p] = c * vkp - s * vkq;
          v[k * n + q] = s * vkp + c * vkq;
        }
      }
    }
  }
  // sort ascending
  const order = Array.from({ length: n }, (_, i) => i).sort((i, j) => (a[i * n + i] as number) - (a[j * n + j] as number));
  const values = Float64Array.from(order, (i) => a[i * n + i] as number);
  const vectors = new Float64Array(n * n);
  order.forEach((src, dst) => {
    for (let k = 0; k < n; k++) vectors[k * n + dst] = v[k * n + src] as number;
  });
  return { values, vectors, sweeps };
}

/**
 * Householder tridiagonalisation (tred2) + implicit QL (tql2), after EISPACK / the public-domain
 * JAMA formulation. `vm` holds V row-major; `d` the diagonal, `e` the sub-diagonal.
 */
function householderQl(a: Float64Array, n: number, wantVectors: boolean): SymmetricEigen {
  const V = a; // reduced in place
  const d = new Float64Array(n);
  const e = new Float64Array(n);
  for (let j = 0; j < n; j++) d[j] = V[(n - 1) * n + j] as number;
  // --- tred2: Householder reduction to tridiagonal form
  for (let i = n - 1; i > 0; i--) {
    let scale = 0;
    let h = 0;
    for (let k = 0; k < i; k++) scale += Math.abs(d[k] as number);
    if (scale === 0) {
      e[i] = d[i - 1] as number;
      for (let j = 0; j < i; j++) {
        d[j] = V[(i - 1) * n + j] as number;
        V[i * n + j] = 0;
        V[j * n + i] = 0;
      }
    } else {
      for (let k = 0; k < i; k++) {
        d[k] = (d[k] as number) / scale;
        h += (d[k] as number) ** 2;
      }
      let f = d[i - 1] as number;
      let g = Math.sqrt(h);
      if (f > 0) g = -g;
      e[i] = scale * g;
      h -= f * g;
      d[i - 1] = f - g;
      for (let j = 0; j < i; j++) e[j] = 0;
      for (let j = 0; j < i; j++) {
        f = d[j] as number;
        V[j * n + i] = f;
        g = (e[j] as number) + (V[j * n + j] as number) * f;
        for (let k = j + 1; k <= i - 1; k++) {
          g += (V[k * n + j] as number) * (d[k] as number);
          e[k] = (e[k] as number) + (V[k * n + j] as number) * f;
        }
        e[j] = g;
      }
      f = 0;
      for (let j = 0; j < i; j++) {
        e[j] = (e[j] as number) / h;
        f += (e[j] as number) * (d[j] as number);
      }
      const hh = f / (h + h);
      for (let j = 0; j < i; j++) e[j] = (e[j] as number) - hh * (d[j] as number);
      for (let j = 0; j < i; j++) {
        f = d[j] as number;
        g = e[j] as number;
        for (let k = j; k <= i - 1; k++) V[k * n + j] = (V[k * n + j] as number) - (f * (e[k] as number) + g * (d[k] as number));
        d[j] = V[(i - 1) * n + j] as number;
        V[i * n + j] = 0;
      }
    }
    d[i] = h;
  }
  if (wantVectors) {
    // Accumulate the Householder transformations into V.
    for (let i = 0; i < n - 1; i++) {
      V[(n - 1) * n + i] = V[i * n + i] as number;
      V[i * n + i] = 1;
      const h = d[i + 1] as number;
      if (h !== 0) {
        for (let k = 0; k <= i; k++) d[k] = (V[k * n + i + 1] as number) / h;
        for (let j = 0; j <= i; j++) {
          let g = 0;
          for (let k = 0; k <= i; k++) g += (V[k * n + i + 1] as number) * (V[k * n + j] as number);
          for (let k = 0; k <= i; k++) V[k * n + j] = (V[k * n + j] as number) - g * (d[k] as number);
        }
      }
      for (let k = 0; k <= i; k++) V[k * n + i + 1] = 0;
    }
    for (let j = 0; j < n; j++) {
      d[j] = V[(n - 1) * n + j] as number;
      V[(n - 1) * n + j] = 0;
    }
    V[(n - 1) * n + n - 1] = 1;
  } else {
    // The accumulation above also moves the tridiagonal's diagonal (left on V's diagonal) to d.
    for (let j = 0; j < n; j++) d[j] = V[j * n + j] as number;
  }
  e[0] = 0;
  // --- tql2: implicit QL on the tridiagonal matrix
  for (let i = 1; i < n; i++) e[i - 1] = e[i] as number;
  e[n - 1] = 0;
  let f = 0;
  let tst1 = 0;
  const eps = 2 ** -52;
  for (let l = 0; l < n; l++) {
    tst1 = Math.max(tst1, Math.abs(d[l] as number) + Math.abs(e[l] as number));
    let m = l;
    while (m < n) {
      if (Math.abs(e[m] as number) <= eps * tst1) break;
      m++;
    }
    if (m > l) {
      let iter = 0;
      do {
        if (++iter > 60) throw new ConfigError('Householder–QL did not converge (60 iterations for one eigenvalue)');
        let g = d[l] as number;
        let p = ((d[l + 1] as number) - g) / (2 * (e[l] as number));
        let r = Math.hypot(p, 1);
        if (p < 0) r = -r;
        d[l] = (e[l] as number) / (p + r);
        d[l + 1] = (e[l] as number) * (p + r);
        const dl1 = d[l + 1] as number;
        let h = g - (d[l] as number);
        for (let i = l + 2; i < n; i++) d[i] = (d[i] as number) - h;
        f += h;
        p = d[m] as number;
        let c = 1;
        let c2 = c;
        let c3 = c;
        const el1 = e[l + 1] as number;
        let s = 0;
        let s2 = 0;
        for (let i = m - 1; i >= l; i--) {
          c3 = c2;
          c2 = c;
          s2 = s;
          g = c * (e[i] as number);
          h = c * p;
          r = Math.hypot(p, e[i] as number);
          e[i + 1] = s * r;
          s = (e[i] as number) / r;
          c = p / r;
          p = c * (d[i] as number) - s * g;
          d[i + 1] = h + s * (c * g + s * (d[i] as number));
          if (wantVectors) {
            for (let k = 0; k < n; k++) {
              const o = k * n;
              h = V[o + i + 1] as number;
              V[o + i + 1] = s * (V[o + i] as number) + c * h;
              V[o + i] = c * (V[o + i] as number) - s * h;
            }
          }
        }
        p = (-s * s2 * c3 * el1 * (e[l] as number)) / dl1;
        e[l] = s * p;
        d[l] = c * p;
      } while (Math.abs(e[l] as number) > eps * tst1);
    }
    d[l] = (d[l] as number) + f;
    e[l] = 0;
  }
  const order = Array.from({ length: n }, (_, i) => i).sort((i, j) => (d[i] as number) - (d[j] as number));
  const values = Float64Array.from(order, (i) => d[i] as number);
  const vectors = new Float64Array(wantVectors ? n * n : 0);
  if (wantVectors) {
    order.forEach((src, dst) => {
      for (let k = 0; k < n; k++) vectors[k * n + dst] = V[k * n + src] as number;
    });
  }
  return { values, vectors, sweeps: 0 };
}

/** Row-major n×n product A·B in float64. */
export function matMul64(a: Float64Array, b: Float64Array, n: number): Float64Array {
  const out = new Float64Array(n * n);
  for (let i = 0; i < n; i++) {
    for (let k = 0; k < n; k++) {
      const aik = a[i * n + k] as number;
      if (aik === 0) continue;
      const ro = k * n;
      const oo = i * n;
      for (let j = 0; j < n; j++) out[oo + j] = (out[oo + j] as number) + aik * (b[ro + j] as number);
    }
  }
  return out;
}

/**
 * Principal square root of a symmetric positive semi-definite matrix: V diag(√max(λ, 0)) Vᵀ
 * (eigenvalues below zero from round-off are clipped). Also returns the eigenvalues.
 */
export function sqrtmPsd(
  matrix: ArrayLike<number>,
  n: number,
  options: Pick<SymmetricEigenOptions, 'method'> = {},
): { sqrt: Float64Array; eigenvalues: Float64Array } {
  const { values, vectors } = symmetricEigen(matrix, n, { method: options.method });
  const out = new Float64Array(n * n);
  for (let k = 0; k < n; k++) {
    const r = Math.sqrt(Math.max(values[k] as number, 0));
    if (r === 0) continue;
    for (let i = 0; i < n; i++) {
      const vik = (vectors[i * n + k] as number) * r;
      if (vik === 0) continue;
      for (let j = 0; j < n; j++) out[i * n + j] = (out[i * n + j] as number) + vik * (vectors[j * n + k] as number);
    }
  }
  return { sqrt: out, eigenvalues: values };
}
