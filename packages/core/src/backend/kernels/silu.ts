/**
 * Fused SiLU kernels (`DiffmemSiLU`, `DiffmemSiLUGrad`) for the wasm and cpu backends, and the
 * analytic gradient that ties them together.
 *
 * Composed as `x · sigmoid(x)`, SiLU costs 2 kernel calls forward and 5 backward (the product
 * rule plus sigmoid's gradient), each a full pass over the activations and an autodiff tape entry.
 * On wasm these take σ(x) from the backend's vectorised `Sigmoid` (XNNPACK, which the composite
 * uses too); the forward multiplies with the built-in `Multiply`, the backward finishes in one JS
 * pass over the heap. On cpu both are one JS pass in float64.
 * @module
 */
import {
  engine,
  type GradConfig,
  type KernelConfig,
  type KernelFunc,
  type NamedTensorMap,
  type Tensor,
  type TensorInfo,
} from '@tensorflow/tfjs-core';
import { cpuValues, requireInputs, requireSameShape, type CpuBackendLike } from './group_norm.js';
import { asWasmBackend, elemOffset, heapF32, runWasmKernel, sizeOf, type WasmBackendLike } from './wasm_util.js';

/** Kernel name of the fused SiLU forward: input `{x}` (float32), output x·σ(x). */
export const DiffmemSiLU = 'DiffmemSiLU';
/** Kernel name of the SiLU backward: inputs `{dy, x}` (float32), output dy·σ(x)·(1 + x·(1 − σ(x))). */
export const DiffmemSiLUGrad = 'DiffmemSiLUGrad';

/**
 * SiLU (Elfwing et al. 2018; Hendrycks & Gimpel's "SiL"): y = x·σ(x) = x / (1 + e^(−x)), in
 * float64 per element. `n` elements from `x[xo]` to `y[yo]`.
 */
export function siluForwardArrays(x: Float32Array, xo: number, y: Float32Array, yo: number, n: number): void {
  for (let i = 0; i < n; i++) {
    const v = x[xo + i]!;
    y[yo + i] = v / (1 + Math.exp(-v));
  }
}

/**
 * SiLU backward: d(x·σ(x))/dx = σ + x·σ·(1 − σ) = σ·(1 + x·(1 − σ)), times dy. Finite for every
 * finite x (σ underflows to exactly 0 for very negative x, making the product 0, not NaN).
 */
export function siluBackwardArrays(
  dy: Float32Array,
  dyo: number,
  x: Float32Array,
  xo: number,
  dx: Float32Array,
  dxo: number,
  n: number,
): void {
  for (let i = 0; i < n; i++) {
    const v = x[xo + i]!;
    const s = 1 / (1 + Math.exp(-v));
    dx[dxo + i] = dy[dyo + i]! * s * (1 + v * (1 - s));
  }
}

function input(inputs: Readonly<Record<string, TensorInfo | undefined>>, name: string, where: string): TensorInfo {
  return requireInputs(inputs, [name], where)[0]!;
}

function sameSize(dy: TensorInfo, x: TensorInfo, where: string): number {
  requireSameShape(dy, x, where);
  return sizeOf(x.shape);
}

/**
 * σ(x) from the wasm backend's built-in `Sigmoid` (XNNPACK's vectorised one, ~8x faster than
 * `Math.exp` in a JS loop, and the very function the composite uses). A fresh tensor the caller owns.
 */
function wasmSigmoid(backend: WasmBackendLike, x: TensorInfo): TensorInfo {
  return runWasmKernel(backend, 'Sigmoid', { x });
}

/**
 * Kernel function of {@link DiffmemSiLU} on wasm: the built-in (XNNPACK, SIMD) `Sigmoid` and
 * `Multiply`, ~5x faster per element than a JS loop, run as one engine kernel (one tape node,
 * no intermediate tensor for autodiff to keep).
 */
export const siluWasm: KernelFunc = ({ inputs, backend: raw }) => {
  const backend = asWasmBackend(raw, DiffmemSiLU);
  const x = input(inputs, 'x', `${DiffmemSiLU} (wasm)`);
  const s = wasmSigmoid(backend, x);
  try {
    return runWasmKernel(backend, 'Multiply', { a: x, b: s });
  } finally {
    backend.disposeData(s.dataId);
  }
};

/**
 * Kernel function of {@link DiffmemSiLUGrad} on wasm: σ(x) by XNNPACK, then dx in one JS pass,
 * written in place over σ (as fast as the 4 XNNPACK products and sums it replaces, with no
 * intermediates).
 */
export const siluGradWasm: KernelFunc = ({ inputs, backend: raw }) => {
  const where = `${DiffmemSiLUGrad} (wasm)`;
  const backend = asWasmBackend(raw, DiffmemSiLUGrad);
  const dy = input(inputs, 'dy', where);
  const x = input(inputs, 'x', where);
  const n = sameSize(dy, x, where);
  const dx = wasmSigmoid(backend, x);
  const h = heapF32(backend);
  const xo = elemOffset(backend, x);
  const dyo = elemOffset(backend, dy);
  const o = elemOffset(backend, dx);
  for (let i = 0; i < n; i++) {
    const v = h[xo + i]!;
    const sg = h[o + i]!;
    h[o + i] = h[dyo + i]! * sg * (1 + v * (1 - sg));
  }
  return dx;
};

/** Kernel function of {@link DiffmemSiLU} on cpu. */
export const siluCpu: KernelFunc = ({ inputs, backend }) => {
  const where = `${DiffmemSiLU} (cpu)`;
  const x = input(inputs, 'x', where);
  const y = new Float32Array(sizeOf(x.shape));
  siluForwardArrays(cpuValues(backend, x, where), 0, y, 0, y.length);
  return (backend as CpuBackendLike).makeTensorInfo([...x.shape], 'float32', y);
};

/** Kernel function of {@link DiffmemSiLUGrad} on cpu. */
export const siluGradCpu: KernelFunc = ({ inputs, backend }) => {
  const where = `${DiffmemSiLUGrad} (cpu)`;
  const dy = input(inputs, 'dy', where);
  const x = input(inputs, 'x', where);
  const dx = new Float32Array(sameSize(dy, x, where));
  siluBackwardArrays(cpuValues(backend, dy, where), 0, cpuValues(backend, x, where), 0, dx, 0, dx.length);
  return (backend as CpuBackendLike).makeTensorInfo([...x.shape], 'float32', dx);
};

/** Registry entries of the SiLU kernels, both backends. */
export const SILU_KERNEL_CONFIGS: readonly KernelConfig[] = [
  { kernelName: DiffmemSiLU, backendName: 'wasm', kernelFunc: siluWasm },
  { kernelName: DiffmemSiLUGrad, backendName: 'wasm', kernelFunc: siluGradWasm },
  { kernelName: DiffmemSiLU, backendName: 'cpu', kernelFunc: siluCpu },
  { kernelName: DiffmemSiLUGrad, backendName: 'cpu', kernelFunc: siluGradCpu },
];

/** Gradient of {@link DiffmemSiLU} via {@link DiffmemSiLUGrad} (not itself differentiable). */
export const siluGradConfig: GradConfig = {
  kernelName: DiffmemSiLU,
  inputsToSave: ['x'],
  gradFunc: (dy, saved) => {
    const [x] = saved as [Tensor];
    return { x: () => engine().runKernel(DiffmemSiLUGrad, { dy: dy as Tensor, x } as unknown as NamedTensorMap) as Tensor };
  },
};
