/**
 * Fast `BatchMatMul` for the wasm backend.
 *
 * The built-in kernel reaches XNNPACK only for an untransposed product of two single matrices;
 * everything else — `transposeA`/`transposeB` (which every matMul gradient uses) and batch > 1
 * (attention) — runs a scalar blocked loop about 10x slower. This kernel materialises transposes
 * with the wasm `Transpose` kernel, folds a shared right-hand matrix into one tall GEMM, and runs
 * genuinely batched products as one XNNPACK GEMM per batch entry on copied slices.
 *
 * XNNPACK caches the packed right-hand matrix by tensor id (not shape), so every right-hand
 * operand handed to it is either a fresh tensor or one seen before with the same shape.
 * @module
 */
import { BatchMatMul, type KernelConfig, type KernelFunc, type TensorInfo } from '@tensorflow/tfjs-core';
import {
  allocF32,
  asWasmBackend,
  elemOffset,
  heapF32,
  Intermediates,
  runWasmKernel,
  sizeOf,
  view,
  wasmBuiltIn,
  xnnGemm,
  type WasmBackendLike,
} from './wasm_util.js';

/** Attributes of tfjs' `BatchMatMul` kernel. */
export interface BatchMatMulAttrs {
  transposeA: boolean;
  transposeB: boolean;
}

/** Shape each caller tensor was last given to XNNPACK as a right-hand matrix, by data id. */
const rhsShapes = new WeakMap<object, string>();

/** `b` as a [K, N] right-hand operand that is safe against XNNPACK's id-keyed weight cache. */
function safeRhs(backend: WasmBackendLike, scope: Intermediates, b: TensorInfo, k: number, n: number): TensorInfo {
  const key = `${k}x${n}`;
  const seen = rhsShapes.get(b.dataId);
  if (seen === undefined || seen === key) {
    rhsShapes.set(b.dataId, key);
    return view(b, [k, n]);
  }
  // Same buffer, other shape (e.g. via a reshape): a cached operator would use the old shape.
  return copyRange(backend, scope, b, 0, k * n, [k, n]);
}

/** A fresh tensor holding `count` floats of `src` from element `start`. */
function copyRange(
  backend: WasmBackendLike,
  scope: Intermediates,
  src: TensorInfo,
  start: number,
  count: number,
  shape: number[],
): TensorInfo {
  const out = scope.track(allocF32(backend, shape));
  const h = heapF32(backend);
  const s = elemOffset(backend, src) + start;
  h.copyWithin(elemOffset(backend, out), s, s + count);
  return out;
}

/**
 * Kernel function for `BatchMatMul` on wasm: inputs `{a, b}` of rank ≥ 2 with equal batch
 * dimensions or a batch of 1 on either side; attrs `{transposeA, transposeB}`. Other cases and
 * non-float32 inputs go to the built-in kernel.
 */
export const batchMatMulWasm: KernelFunc = (args) => {
  const { inputs, backend: rawBackend, attrs } = args;
  const backend = asWasmBackend(rawBackend, BatchMatMul);
  const a = inputs['a'];
  const b = inputs['b'];
  if (a === undefined || b === undefined) throw new Error(`${BatchMatMul} (diffmem wasm): needs inputs a and b`);
  const builtIn = wasmBuiltIn(BatchMatMul, backend);
  if (builtIn.kernelFunc === batchMatMulWasm) {
    throw new Error(`${BatchMatMul} (diffmem wasm): register it with registerWasmGradKernels(), which keeps the built-in`);
  }
  const { transposeA, transposeB } = attrs as unknown as BatchMatMulAttrs;
  const aRank = a.shape.length;
  const bRank = b.shape.length;
  if (a.dtype !== 'float32' || b.dtype !== 'float32' || aRank < 2 || bRank < 2) return builtIn.kernelFunc(args);

  const m = a.shape[aRank - (transposeA ? 1 : 2)]!;
  const kA = a.shape[aRank - (transposeA ? 2 : 1)]!;
  const kB = b.shape[bRank - (transposeB ? 1 : 2)]!;
  const n = b.shape[bRank - (transposeB ? 2 : 1)]!;
  const batchShapeA = a.shape.slice(0, -2);
  const batchShapeB = b.shape.slice(0, -2);
  const batchA = sizeOf(batchShapeA);
  const batchB = sizeOf(batchShapeB);
  if (kA !== kB) {
    throw new Error(
      `${BatchMatMul} (diffmem wasm): inner dimensions ${kA} and ${kB} of [${a.shape.join(',')}] and ` +
        `[${b.shape.join(',')}] (transposeA=${transposeA}, transposeB=${transposeB}) must match`,
    );
  }
  const k = kA;
  // Broadcasting beyond "equal, or one side 1" (e.g. [2,1] with [1,3]) is left to the built-in.
  const sameBatch = batchShapeA.length === batchShapeB.length && batchShapeA.every((d, i) => d === batchShapeB[i]);
  if (!(sameBatch || batchA === 1 || batchB === 1)) return builtIn.kernelFunc(args);
  const batchShape = batchA >= batchB ? batchShapeA : batchShapeB;
  const batch = Math.max(batchA, batchB);
  const outShape = [...batchShape, m, n];
  if (m * n * batch === 0 || k === 0) return builtIn.kernelFunc(args);

  const scope = new Intermediates(backend);
  try {
    // Untransposed [batch, m, k] and [batch, k, n] operands.
    const a3 = transposeA
      ? scope.track(runWasmKernel(backend, 'Transpose', { x: view(a, [batchA, k, m]) }, { perm: [0, 2, 1] }))
      : view(a, [batchA, m, k]);
    const b3 = transposeB
      ? scope.track(runWasmKernel(backend, 'Transpose', { x: view(b, [batchB, n, k]) }, { perm: [0, 2, 1] }))
      : view(b, [batchB, k, n]);

    if (batchB === 1) {
      // One right-hand matrix for every batch entry: a single tall GEMM.
      const rhs = transposeB ? view(b3, [k, n]) : safeRhs(backend, scope, b, k, n);
      const out = xnnGemm(backend, view(a3, [batchA * m, k]), rhs);
      return view(out, outShape);
    }

    const out = allocF32(backend, [batch, m, n]);
    try {
      for (let i = 0; i < batch; i++) {
        const ai = batchA === 1 ? view(a3, [m, k]) : copyRange(backend, scope, a3, i * m * k, m * k, [m, k]);
        // Always a fresh copy: each batch entry needs its own id for XNNPACK's weight cache.
        const bi = copyRange(backend, scope, b3, i * k * n, k * n, [k, n]);
        const oi = xnnGemm(backend, ai, bi);
        const h = heapF32(backend);
        const src = elemOffset(backend, oi);
        h.copyWithin(elemOffset(backend, out) + i * m * n, src, src + m * n);
        backend.disposeData(oi.dataId);
        if (ai.dataId !== a3.dataId) scope.release(ai);
        scope.release(bi);
      }
    } catch (err) {
      backend.disposeData(out.dataId);
      throw err;
    }
    return view(out, outShape);
  } finally {
    scope.dispose();
  }
};

/** Registry entry for {@link batchMatMulWasm}. */
export const batchMatMulWasmConfig: KernelConfig = {
  kernelName: BatchMatMul,
  backendName: 'wasm',
  kernelFunc: batchMatMulWasm,
};
