/**
 * Plumbing shared by the diffmem wasm kernels: a structural view of tfjs-backend-wasm's backend,
 * heap access, calls into the backend's built-in kernels, and scoped disposal of intermediates.
 *
 * Kernels here compose the wasm backend's own kernels (XNNPACK-backed `Conv2D`, `BatchMatMul`,
 * `Transpose`) with short JS loops over the wasm heap. Heap views are re-created after every
 * allocation because growing wasm memory detaches old `ArrayBuffer` views.
 * @module
 */
import { getKernel, type DataType, type KernelConfig, type NamedAttrMap, type TensorInfo } from '@tensorflow/tfjs-core';

/** Book-keeping the wasm backend keeps per tensor (subset of its private `TensorData`). */
export interface WasmTensorData {
  id: number;
  memoryOffset: number;
  shape: number[];
  dtype: DataType;
  refCount: number;
}

/**
 * The part of `BackendWasm` (tfjs-backend-wasm 4.x) these kernels rely on. Declared structurally so
 * nothing deep-imports the backend's private module layout.
 */
export interface WasmBackendLike {
  wasm: { HEAPU8: Uint8Array };
  dataIdMap: { get(dataId: object): WasmTensorData | undefined; has(dataId: object): boolean };
  makeOutput(shape: number[], dtype: DataType): TensorInfo;
  disposeData(dataId: object, force?: boolean): boolean;
}

/** Tunables of the diffmem wasm kernels. */
export interface WasmKernelTuning {
  /**
   * Largest temporary matrix (im2col / col buffers), in float32 elements; bigger problems are
   * processed in chunks. Default 4M floats (16 MB): small next to a UNet's activations while each
   * GEMM stays long enough to run at full speed.
   */
  chunkFloats: number;
  /**
   * Target reduction length of one im2col GEMM in the filter gradient. XNNPACK's GEMM re-reads
   * the whole right-hand matrix for every few left-hand rows, so keeping it (depth × Co floats)
   * cache-sized beats one long GEMM over all pixels.
   */
  gemmDepth: number;
}

/** Current tunables; mutate to trade temporary memory for fewer, longer GEMM calls. */
export const wasmKernelTuning: WasmKernelTuning = { chunkFloats: 1 << 22, gemmDepth: 2048 };

/** Narrows a kernel's `backend` argument, failing loudly if it is not the wasm backend. */
export function asWasmBackend(backend: unknown, kernelName: string): WasmBackendLike {
  const b = backend as Partial<WasmBackendLike> | null;
  if (
    b == null ||
    typeof b !== 'object' ||
    b.wasm == null ||
    !(b.wasm.HEAPU8 instanceof Uint8Array) ||
    b.dataIdMap == null ||
    typeof b.makeOutput !== 'function'
  ) {
    throw new Error(`${kernelName}: diffmem kernel registered for 'wasm' ran on a non-wasm backend`);
  }
  return b as WasmBackendLike;
}

/** Byte offset of a tensor's data on the heap. */
export function byteOffset(backend: WasmBackendLike, t: TensorInfo): number {
  const data = backend.dataIdMap.get(t.dataId);
  if (data === undefined) throw new Error('tensor data is not on the wasm backend (already disposed?)');
  return data.memoryOffset;
}

/** Offset of a float32/int32 tensor on the heap, in 4-byte elements. */
export function elemOffset(backend: WasmBackendLike, t: TensorInfo): number {
  return byteOffset(backend, t) >>> 2;
}

/** A fresh float32 view of the whole heap; call again after any allocation. */
export function heapF32(backend: WasmBackendLike): Float32Array {
  return new Float32Array(backend.wasm.HEAPU8.buffer);
}

/** A fresh int32 view of the whole heap; call again after any allocation. */
export function heapI32(backend: WasmBackendLike): Int32Array {
  return new Int32Array(backend.wasm.HEAPU8.buffer);
}

/** Product of a shape's dimensions. */
export function sizeOf(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

/** Same data, different shape: kernels read shape from the TensorInfo, so no copy is needed. */
export function view(t: TensorInfo, shape: number[]): TensorInfo {
  return { dataId: t.dataId, shape, dtype: t.dtype };
}

/** Built-in wasm kernels that diffmem replaced, so compositions never call back into ours. */
const builtIns = new Map<string, KernelConfig>();

/** Records a built-in kernel config before a diffmem kernel replaces it in the registry. */
export function rememberBuiltIn(config: KernelConfig): void {
  if (config.backendName === 'wasm') builtIns.set(config.kernelName, config);
}

/** Backends each replaced built-in has been set up for (see {@link wasmBuiltIn}). */
const setUpFor = new WeakMap<KernelConfig, WeakSet<object>>();

/**
 * The built-in wasm kernel `kernelName` (the registered one unless diffmem replaced it), ready to
 * run on `backend`. A replaced built-in misses the setup (binding its wasm export) that tfjs runs
 * for registered kernels when the backend initialises, so it is run here once per backend.
 */
export function wasmBuiltIn(kernelName: string, backend?: object): KernelConfig {
  const replaced = builtIns.get(kernelName);
  const config = replaced ?? (getKernel(kernelName, 'wasm') as KernelConfig | undefined);
  if (config === undefined) {
    throw new Error(`wasm kernel '${kernelName}' is not registered (import '@tensorflow/tfjs-backend-wasm' first)`);
  }
  if (replaced !== undefined && backend !== undefined && replaced.setupFunc !== undefined) {
    let done = setUpFor.get(replaced);
    if (done === undefined) setUpFor.set(replaced, (done = new WeakSet()));
    if (!done.has(backend)) {
      replaced.setupFunc(backend as Parameters<NonNullable<KernelConfig['setupFunc']>>[0]);
      done.add(backend);
    }
  }
  return config;
}

/**
 * Runs a built-in wasm kernel (e.g. the XNNPACK `Conv2D`) directly, the way tfjs kernels compose:
 * no engine, no autograd tape, the caller owns (and must dispose) the result.
 */
export function runWasmKernel(
  backend: WasmBackendLike,
  kernelName: string,
  inputs: Record<string, TensorInfo>,
  attrs: NamedAttrMap = {},
): TensorInfo {
  const out = wasmBuiltIn(kernelName, backend).kernelFunc({ inputs, backend: backend as object, attrs });
  if (Array.isArray(out)) throw new Error(`wasm kernel '${kernelName}' returned several outputs`);
  return out;
}

/** XNNPACK GEMM `a · b` for untransposed rank-2 float32 operands (the built-in's fast path). */
export function xnnGemm(backend: WasmBackendLike, a: TensorInfo, b: TensorInfo): TensorInfo {
  return runWasmKernel(backend, 'BatchMatMul', { a, b }, { transposeA: false, transposeB: false });
}

/**
 * Tracks a kernel's intermediates so every exit path (including throws) frees them. Disposal goes
 * through `backend.disposeData`, which also drops XNNPACK operators cached on those tensor ids.
 */
export class Intermediates {
  private readonly live = new Set<object>();

  constructor(private readonly backend: WasmBackendLike) {}

  /** Registers `t` for disposal and returns it. */
  track(t: TensorInfo): TensorInfo {
    this.live.add(t.dataId);
    return t;
  }

  /** Frees `t` now (e.g. a per-chunk buffer), instead of at the end. */
  release(t: TensorInfo): void {
    if (this.live.delete(t.dataId)) this.backend.disposeData(t.dataId);
  }

  /** Frees everything still tracked. */
  dispose(): void {
    for (const id of this.live) this.backend.disposeData(id);
    this.live.clear();
  }
}

/** Allocates a float32 tensor on the wasm heap (uninitialised memory). */
export function allocF32(backend: WasmBackendLike, shape: number[]): TensorInfo {
  return backend.makeOutput(shape, 'float32');
}

/** Allocates a float32 tensor on the wasm heap filled with zeros (the gradient of an empty product). */
export function zerosF32(backend: WasmBackendLike, shape: number[]): TensorInfo {
  const t = allocF32(backend, shape);
  heapF32(backend).fill(0, elemOffset(backend, t), elemOffset(backend, t) + sizeOf(shape));
  return t;
}

/** Throws unless `t` is float32 (the XNNPACK kernels these compose only take float32). */
export function requireFloat32(kernelName: string, name: string, t: TensorInfo): void {
  if (t.dtype !== 'float32') {
    throw new Error(`${kernelName} (diffmem wasm): '${name}' must be float32, got ${t.dtype}`);
  }
}
