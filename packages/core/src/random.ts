/**
 * Seeded, serialisable random numbers. Every random draw in diffmem takes a {@link Generator}
 * (or a seed that makes one), so samples, training runs and audits are reproducible and a
 * resumed run continues the exact same stream (the state is saved with checkpoints).
 *
 * The bit generator is xoshiro128** (32-bit, fast in JS); Gaussians come from Box–Muller in
 * float64 and are rounded to float32 when packed into tensors.
 * @module
 */
import * as tf from '@tensorflow/tfjs-core';
import { ConfigError } from './errors.js';
import type { Noise } from './tensor/types.js';

/** The serialisable state of a {@link Generator}. */
export interface GeneratorState {
  readonly algorithm: 'xoshiro128**';
  readonly s: readonly [number, number, number, number];
  /** A cached second Box–Muller value, or null. */
  readonly spare: number | null;
}

function splitmix32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x9e3779b9) >>> 0;
    let z = a;
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
    return (z ^ (z >>> 16)) >>> 0;
  };
}

/** A seeded pseudo-random generator with explicit, serialisable state. */
export class Generator {
  private s0 = 0;
  private s1 = 0;
  private s2 = 0;
  private s3 = 0;
  private spare: number | null = null;

  /** @param seed any integer; equal seeds give equal streams. */
  constructor(seed: number) {
    if (!Number.isFinite(seed)) throw new ConfigError(`seed must be a finite number, got ${seed}`);
    const sm = splitmix32(Math.floor(seed) ^ Math.floor(seed / 2 ** 32));
    this.s0 = sm();
    this.s1 = sm();
    this.s2 = sm();
    this.s3 = sm();
    if ((this.s0 | this.s1 | this.s2 | this.s3) === 0) this.s0 = 1;
  }

  /** Restores a generator from {@link Generator.getState}. */
  static fromState(state: GeneratorState): Generator {
    if (state?.algorithm !== 'xoshiro128**' || !Array.isArray(state.s) || state.s.length !== 4) {
      throw new ConfigError('not a diffmem Generator state (expected {algorithm: "xoshiro128**", s: [4 uint32]})');
    }
    const g = new Generator(0);
    [g.s0, g.s1, g.s2, g.s3] = state.s.map((v) => v >>> 0) as [number, number, number, number];
    g.spare = state.spare;
    return g;
  }

  /** A JSON-safe snapshot of the stream position. */
  getState(): GeneratorState {
    return { algorithm: 'xoshiro128**', s: [this.s0, this.s1, this.s2, this.s3], spare: this.spare };
  }

  /** Next uniformly distributed uint32. */
  nextUint32(): number {
    const result = imul(rotl(imul(this.s1, 5) >>> 0, 7), 9) >>> 0;
    const t = (this.s1 << 9) >>> 0;
    this.s2 ^= this.s0;
    this.s3 ^= this.s1;
    this.s1 ^= this.s2;
    this.s0 ^= this.s3;
    this.s2 ^= t;
    this.s3 = rotl(this.s3, 11);
    this.s0 >>>= 0;
    this.s1 >>>= 0;
    this.s2 >>>= 0;
    this.s3 >>>= 0;
    return result;
  }

  /** Uniform in [0, 1) with 53 random bits. */
  random(): number {
    const hi = this.nextUint32() >>> 5; // 27 bits
    const lo = this.nextUint32() >>> 6; // 26 bits
    return (hi * 67108864 + lo) / 9007199254740992;
  }

  /** Uniform integer in [0, n). */
  randint(n: number): number {
    if (!Number.isInteger(n) || n <= 0) throw new ConfigError(`randint needs a positive integer bound, got ${n}`);
    return floor(this.random() * n);
  }

  /** Standard normal draw (Box–Muller). */
  normal(): number {
    if (this.spare !== null) {
      const v = this.spare;
      this.spare = null;
      return v;
    }
    let u = 0;
    while (u === 0) u = this.random();
    const v = this.random();
    const r = sqrt(-2 * log(u));
    this.spare = r * sin(2 * PI * v);
    return r * cos(2 * PI * v);
  }

  /** `n` standard normal draws as float32. */
  normalArray(n: number): Float32Array {
    const out = new Float32Array(n);
    for (let i = 0; i < n; i++) out[i] = this.normal();
    return out;
  }

  /** `n` uniform [0,1) draws as float32. */
  uniformArray(n: number): Float32Array {
    const out = new Float32Array(n);
    for (let i = 0; i < n; i++) out[i] = this.random();
    return out;
  }

  /** A fresh 31-bit seed derived from this stream (for APIs that take a seed). */
  nextSeed(): number {
    return this.nextUint32() >>> 1;
  }

  /** Fisher–Yates permutation of [0, n). */
  permutation(n: number): number[] {
    const p = Array.from({ length: n }, (_, i) => i);
    for (let i = n - 1; i > 0; i--) {
      const j = this.randint(i + 1);
      [p[i], p[j]] = [p[j] as number, p[i] as number];
    }
    return p;
  }
}

// Module-level bindings: property lookups on the global Math object in hot loops are several
// times slower under some module loaders (measured 7x under jest's VM modules).
const { sqrt, log, sin, cos, floor, imul, PI } = Math;

function rotl(x: number, k: number): number {
  return ((x << k) | (x >>> (32 - k))) >>> 0;
}

/** Accepts a generator or a seed. */
export type RandomSource = Generator | number;

/** Turns a {@link RandomSource} into a generator (a number seeds a new one). */
export function toGenerator(source: RandomSource): Generator {
  return typeof source === 'number' ? new Generator(source) : source;
}

/** Standard normal noise of NHWC `shape` from `source` (same values on every backend). */
export function randn(shape: readonly [number, number, number, number], source: RandomSource): Noise {
  const g = toGenerator(source);
  const n = shape.reduce((a, b) => a * b, 1);
  return tf.tensor4d(g.normalArray(n), [...shape], 'float32') as Noise;
}

/** Standard normal tensor of any shape from `source`. */
export function randnLike(shape: readonly number[], source: RandomSource): tf.Tensor {
  const g = toGenerator(source);
  const n = shape.reduce((a, b) => a * b, 1);
  return tf.tensor(g.normalArray(n), [...shape], 'float32');
}
