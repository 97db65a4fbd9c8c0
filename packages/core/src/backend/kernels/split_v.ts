/**
 * Fast `SplitV` for the wasm backend.
 *
 * `SplitV` is the gradient of `concat`; the UNet's up blocks concatenate skip connections on the
 * channel (last) axis, so every training step splits [N,H,W,C₁+C₂] gradients back on that axis.
 * tfjs-backend-wasm 4.22 slices each output with one `TypedArray.subarray` + `set` per pixel —
 * an object allocation for every few floats. This kernel copies each output's rows in one loop
 * over the heap (4-byte dtypes; anything else goes to the built-in).
 * @module
 */
import { backend_util, SplitV, util, type KernelConfig, type KernelFunc, type TensorInfo } from '@tensorflow/tfjs-core';
import { asWasmBackend, byteOffset, heapI32, sizeOf, wasmBuiltIn } from './wasm_util.js';

/** Attributes of tfjs' `SplitV` kernel. */
export interface SplitVAttrs {
  /** Number of equal parts, or the size of each part along `axis` (one entry may be −1). */
  numOrSizeSplits: number | number[];
  axis: number | number[];
}

/** Rows shorter than this are copied element by element; longer ones with `copyWithin`. */
const MIN_BLOCK_COPY = 64;

/**
 * Kernel function for `SplitV` on wasm: `x` viewed as [outer, axisLen, inner]; output j is
 * [outer, size_j, inner], gathered from rows at axis offset o_j (tfjs' `split` semantics).
 */
export const splitVWasm: KernelFunc = (args) => {
  const { inputs, backend: rawBackend, attrs } = args;
  const backend = asWasmBackend(rawBackend, SplitV);
  const x = inputs['x'];
  if (x === undefined) throw new Error(`${SplitV} (diffmem wasm): needs input x`);
  if (x.dtype !== 'float32' && x.dtype !== 'int32') return wasmBuiltIn(SplitV, backend).kernelFunc(args);
  const { numOrSizeSplits, axis } = attrs as unknown as SplitVAttrs;
  const ax = util.parseAxisParam(axis, x.shape)[0]!;
  const sizes = backend_util.prepareSplitSize(x, numOrSizeSplits, ax);
  const outer = sizeOf(x.shape.slice(0, ax));
  const axisLen = x.shape[ax]!;
  const inner = sizeOf(x.shape.slice(ax + 1));

  const outs: TensorInfo[] = sizes.map((s) => {
    const shape = [...x.shape];
    shape[ax] = s;
    return backend.makeOutput(shape, x.dtype);
  });
  // Heap views only after every allocation (growing memory detaches old views).
  const h = heapI32(backend);
  const xo = byteOffset(backend, x) >>> 2;
  const srcRow = axisLen * inner;
  let begin = 0;
  for (let j = 0; j < outs.length; j++) {
    const len = sizes[j]! * inner;
    if (len > 0) {
      const out = outs[j]!;
      let o = byteOffset(backend, out) >>> 2;
      let src = xo + begin * inner;
      if (len >= MIN_BLOCK_COPY) {
        for (let r = 0; r < outer; r++, src += srcRow, o += len) h.copyWithin(o, src, src + len);
      } else {
        for (let r = 0; r < outer; r++, src += srcRow) for (let e = 0; e < len; e++) h[o++] = h[src + e]!;
      }
    }
    begin += sizes[j]!;
  }
  return outs;
};

/** Registry entry for {@link splitVWasm}. */
export const splitVWasmConfig: KernelConfig = {
  kernelName: SplitV,
  backendName: 'wasm',
  kernelFunc: splitVWasm,
};
