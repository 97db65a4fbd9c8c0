/**
 * `UnsortedSegmentSum` for the wasm backend, which has none. tfjs' gradient of `gather` (e.g. a
 * class-embedding lookup) needs it.
 *
 * out[s, ...] = Σ_{i : ids[i] = s} x[i, ...]; ids outside [0, numSegments) are dropped, as on the
 * cpu backend. One pass over x with in-place adds on the heap.
 * @module
 */
import { UnsortedSegmentSum, type KernelConfig, type KernelFunc } from '@tensorflow/tfjs-core';
import { asWasmBackend, elemOffset, heapF32, heapI32, sizeOf } from './wasm_util.js';

/** Attributes of tfjs' `UnsortedSegmentSum` kernel. */
export interface UnsortedSegmentSumAttrs {
  numSegments: number;
}

/**
 * Kernel function for `UnsortedSegmentSum` on wasm: inputs `{x, segmentIds}` where `segmentIds`
 * (int32) has the shape of x's leading dimensions; returns `[numSegments, ...x.shape[ids.rank:]]`.
 * float32 and int32 `x` are supported.
 */
export const unsortedSegmentSumWasm: KernelFunc = ({ inputs, backend: rawBackend, attrs }) => {
  const name = UnsortedSegmentSum;
  const backend = asWasmBackend(rawBackend, name);
  const x = inputs['x'];
  const ids = inputs['segmentIds'];
  if (x === undefined || ids === undefined) throw new Error(`${name} (diffmem wasm): needs inputs x and segmentIds`);
  const { numSegments } = attrs as unknown as UnsortedSegmentSumAttrs;
  if (!Number.isInteger(numSegments) || numSegments < 0) {
    throw new Error(`${name} (diffmem wasm): numSegments must be a non-negative integer, got ${numSegments}`);
  }
  if (x.dtype !== 'float32' && x.dtype !== 'int32') {
    throw new Error(`${name} (diffmem wasm): x must be float32 or int32, got ${x.dtype}`);
  }
  if (ids.dtype !== 'int32') throw new Error(`${name} (diffmem wasm): segmentIds must be int32, got ${ids.dtype}`);
  const r = ids.shape.length;
  if (r === 0 || r > x.shape.length || ids.shape.some((d, i) => d !== x.shape[i])) {
    throw new Error(
      `${name} (diffmem wasm): segmentIds shape [${ids.shape.join(',')}] must be a leading part of ` +
        `x shape [${x.shape.join(',')}]`,
    );
  }
  const inner = sizeOf(x.shape.slice(r));
  const rows = sizeOf(ids.shape);
  const outShape = [numSegments, ...x.shape.slice(r)];
  const out = backend.makeOutput(outShape, x.dtype);
  // Views after the allocation above (it may grow, and so detach, the heap).
  const h = x.dtype === 'float32' ? heapF32(backend) : heapI32(backend);
  const ids32 = heapI32(backend);
  const o = elemOffset(backend, out);
  const xo = elemOffset(backend, x);
  const io = elemOffset(backend, ids);
  h.fill(0, o, o + numSegments * inner);
  for (let i = 0; i < rows; i++) {
    const s = ids32[io + i]!;
    if (s < 0 || s >= numSegments) continue;
    const d = o + s * inner;
    const src = xo + i * inner;
    for (let j = 0; j < inner; j++) h[d + j] = h[d + j]! + h[src + j]!;
  }
  return out;
};

/** Registry entry for {@link unsortedSegmentSumWasm}. */
export const unsortedSegmentSumWasmConfig: KernelConfig = {
  kernelName: UnsortedSegmentSum,
  backendName: 'wasm',
  kernelFunc: unsortedSegmentSumWasm,
};
