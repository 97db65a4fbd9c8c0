/**
 * `Identity`, and `Cast` to the same dtype, for the wasm backend: share the input's buffer
 * (reference-counted) instead of copying it, as the cpu backend does. (`Cast` to bool is also
 * fixed: the built-in stored -2 as 254.)
 *
 * Why: autograd calls `Identity` through `clone()` for every tensor a custom gradient saves
 * (`tf.fused.conv2d`/`matMul` save x, filter and output), and the gradient of each clone is a
 * same-dtype `Cast`, so the built-in copying kernels duplicate whole activations on every training
 * step. The copies also make tfjs' `IS_TEST` per-kernel leak check report a false "internal memory
 * leak" for any customGrad op on wasm. Tensors are immutable and the wasm backend reference-counts
 * data ids (its `Reshape` shares buffers the same way), so sharing is safe.
 * @module
 */
import { Cast, Identity, type KernelConfig, type KernelFunc } from '@tensorflow/tfjs-core';
import { asWasmBackend, byteOffset, elemOffset, heapF32, heapI32, sizeOf, wasmBuiltIn } from './wasm_util.js';

interface RefCountingBackend {
  incRef(dataId: object): void;
}

/** Kernel function for `Identity` on wasm: returns `x`'s data under a new reference. */
export const identityWasm: KernelFunc = ({ inputs, backend }) => {
  const x = inputs['x'];
  if (x === undefined) throw new Error(`${Identity} (diffmem wasm): needs input x`);
  (backend as RefCountingBackend).incRef(x.dataId);
  return { dataId: x.dataId, shape: [...x.shape], dtype: x.dtype };
};

/**
 * Kernel function for `Cast` on wasm: shares `x` when the dtype is unchanged; casts numbers to
 * bool as `x != 0` (the built-in truncates bytes, so -2 became 254); else the built-in.
 */
export const castWasm: KernelFunc = (args) => {
  const x = args.inputs['x'];
  if (x === undefined) throw new Error(`${Cast} (diffmem wasm): needs input x`);
  const dtype = (args.attrs as { dtype?: string } | undefined)?.dtype;
  if (dtype === x.dtype) return identityWasm(args);
  if (dtype === 'bool' && (x.dtype === 'float32' || x.dtype === 'int32')) {
    const backend = asWasmBackend(args.backend, Cast);
    const out = backend.makeOutput([...x.shape], 'bool');
    const n = sizeOf(x.shape);
    const src = x.dtype === 'float32' ? heapF32(backend) : heapI32(backend);
    const s = elemOffset(backend, x);
    const bytes = backend.wasm.HEAPU8;
    const o = byteOffset(backend, out);
    for (let i = 0; i < n; i++) bytes[o + i] = src[s + i] !== 0 ? 1 : 0;
    return out;
  }
  const builtIn = wasmBuiltIn(Cast, args.backend);
  if (builtIn.kernelFunc === castWasm) {
    throw new Error(`${Cast} (diffmem wasm): register it with registerWasmGradKernels(), which keeps the built-in`);
  }
  return builtIn.kernelFunc(args);
};

/** Registry entry for {@link castWasm}. */
export const castWasmConfig: KernelConfig = {
  kernelName: Cast,
  backendName: 'wasm',
  kernelFunc: castWasm,
};

/** Registry entry for {@link identityWasm}. */
export const identityWasmConfig: KernelConfig = {
  kernelName: Identity,
  backendName: 'wasm',
  kernelFunc: identityWasm,
};
