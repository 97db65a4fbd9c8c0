/**
 * `Conv2DBackpropFilter` for the wasm backend (tfjs-backend-wasm 4.22 has none, tfjs#8474).
 *
 * dW[kh,kw,ci,co] = Σ_{b,oh,ow} x[b, oh·sH+kh−pT, ow·sW+kw−pL, ci] · dy[b,oh,ow,co]
 *
 * computed as one XNNPACK GEMM per chunk of output rows:
 *   A  = im2colᵀ(x)   [kH·kW·Ci, rows·Wo·B]   (built with JS copies from x transposed to [Ci,H,W,B])
 *   dW = A · dyᵀ       with dyᵀ = dy transposed to [Ho,Wo,B,Co], i.e. [Ho·Wo·B, Co]
 * The (oh, ow, b) column order makes each im2col row segment a contiguous run of x (for stride 1),
 * and keeps both GEMM operands untransposed: the wasm `BatchMatMul` only reaches XNNPACK's
 * fully-connected path for untransposed rank-2 operands, its fallback loop is ~10x slower. Measured
 * alternatives were slower: dW as a forward conv over transposed x/dy (`conv2d(xᵀ, dyᵀ)`, XNNPACK
 * with 8 channels per tap) and an im2col over width only followed by a conv.
 * @module
 */
import { Conv2DBackpropFilter, type KernelConfig, type KernelFunc, type TensorInfo } from '@tensorflow/tfjs-core';
import { convGeometry, convGradKernelArgs, type ConvGeometry, type ConvGradAttrs } from './conv_geometry.js';
import {
  allocF32,
  elemOffset,
  heapF32,
  Intermediates,
  runWasmKernel,
  sizeOf,
  view,
  wasmKernelTuning,
  xnnGemm,
  zerosF32,
  type WasmBackendLike,
} from './wasm_util.js';

/** Attributes of tfjs' `Conv2DBackpropFilter` kernel. */
export interface Conv2DBackpropFilterAttrs extends ConvGradAttrs {
  filterShape: [number, number, number, number];
}

/**
 * Writes im2colᵀ rows for output rows [oh0, oh0+rows) into `a` ([kH·kW·Ci, rows·Wo·B]).
 * `xT` is x transposed to [Ci, H, W, B]; out-of-image taps are zeros.
 */
function fillIm2colT(h: Float32Array, xT: number, a: number, g: ConvGeometry, oh0: number, rows: number): void {
  const { batch: B, inH, inW, inC, outW, kH, kW, strideH, strideW, padTop, padLeft } = g;
  const rowLen = outW * B; // one output row (all ow, all b)
  const colLen = rows * rowLen;
  for (let kh = 0; kh < kH; kh++) {
    for (let kw = 0; kw < kW; kw++) {
      // Output columns whose input column iw = ow·sW + kw − pL lies inside the image.
      const owLo = Math.min(outW, Math.max(0, Math.ceil((padLeft - kw) / strideW)));
      const owHi = Math.max(owLo, Math.min(outW, Math.floor((inW - 1 + padLeft - kw) / strideW) + 1));
      for (let ci = 0; ci < inC; ci++) {
        const aRow = a + ((kh * kW + kw) * inC + ci) * colLen;
        for (let r = 0; r < rows; r++) {
          const ih = (oh0 + r) * strideH + kh - padTop;
          const dst = aRow + r * rowLen;
          if (ih < 0 || ih >= inH) {
            h.fill(0, dst, dst + rowLen);
            continue;
          }
          if (owLo > 0) h.fill(0, dst, dst + owLo * B);
          if (owHi < outW) h.fill(0, dst + owHi * B, dst + rowLen);
          const xRow = xT + (ci * inH + ih) * inW * B;
          if (strideW === 1) {
            // Contiguous run of (iw, b) pairs: one memmove.
            const src = xRow + (owLo + kw - padLeft) * B;
            h.copyWithin(dst + owLo * B, src, src + (owHi - owLo) * B);
          } else {
            for (let ow = owLo; ow < owHi; ow++) {
              const src = xRow + (ow * strideW + kw - padLeft) * B;
              const d = dst + ow * B;
              for (let b = 0; b < B; b++) h[d + b] = h[src + b]!;
            }
          }
        }
      }
    }
  }
}

/** dW for one chunk of output rows; returns a new [kH·kW·Ci, Co] tensor. */
function chunkGemm(
  backend: WasmBackendLike,
  scope: Intermediates,
  g: ConvGeometry,
  xT: TensorInfo,
  dyT: TensorInfo,
  oh0: number,
  rows: number,
): TensorInfo {
  const M = g.kH * g.kW * g.inC;
  const kLen = rows * g.outW * g.batch;
  const a = scope.track(allocF32(backend, [M, kLen]));
  fillIm2colT(heapF32(backend), elemOffset(backend, xT), elemOffset(backend, a), g, oh0, rows);
  let b: TensorInfo;
  if (rows === g.outH) {
    b = view(dyT, [kLen, g.outC]);
  } else {
    // A fresh tensor, not a view: XNNPACK caches packed weights by tensor id.
    b = scope.track(allocF32(backend, [kLen, g.outC]));
    const h = heapF32(backend);
    const src = elemOffset(backend, dyT) + oh0 * g.outW * g.batch * g.outC;
    h.copyWithin(elemOffset(backend, b), src, src + kLen * g.outC);
  }
  const prod = xnnGemm(backend, a, b);
  scope.release(a);
  if (rows !== g.outH) scope.release(b);
  return prod;
}

/** True when im2col would only copy x: 1×1 filter, stride 1, no padding. */
function isPointwise(g: ConvGeometry): boolean {
  return (
    g.kH === 1 && g.kW === 1 && g.strideH === 1 && g.strideW === 1 &&
    g.padTop === 0 && g.padLeft === 0 && g.outH === g.inH && g.outW === g.inW
  );
}

/**
 * Kernel function for `Conv2DBackpropFilter` on wasm: inputs `{x, dy}` (NHWC float32), attrs
 * `{strides, pad, dataFormat, dimRoundingMode, filterShape}`; returns dW shaped `filterShape`.
 */
export const conv2DBackpropFilterWasm: KernelFunc = (args) => {
  const name = Conv2DBackpropFilter;
  const { backend, inputs: [x, dy], attrs: a } = convGradKernelArgs<Conv2DBackpropFilterAttrs>(name, args, ['x', 'dy']);
  const filterShape = [...a.filterShape] as [number, number, number, number];
  const g = convGeometry(name, x.shape, filterShape, dy.shape, a);

  const scope = new Intermediates(backend);
  let acc: TensorInfo | null = null;
  try {
    if (sizeOf(x.shape) === 0 || sizeOf(dy.shape) === 0) {
      acc = zerosF32(backend, filterShape);
      return acc;
    }
    const xT = scope.track(runWasmKernel(backend, 'Transpose', { x }, { perm: [3, 1, 2, 0] }));
    const dyT = scope.track(runWasmKernel(backend, 'Transpose', { x: dy }, { perm: [1, 2, 0, 3] }));
    const M = g.kH * g.kW * g.inC;

    if (isPointwise(g)) {
      // xᵀ already is the im2col matrix [Ci, H·W·B].
      const n = g.outH * g.outW * g.batch;
      acc = xnnGemm(backend, view(xT, [M, n]), view(dyT, [n, g.outC]));
    } else {
      const rowLen = g.outW * g.batch;
      const rowsPerChunk = Math.max(
        1,
        Math.min(
          Math.floor(wasmKernelTuning.gemmDepth / rowLen),
          Math.floor(wasmKernelTuning.chunkFloats / (M * rowLen)),
        ),
      );
      for (let oh0 = 0; oh0 < g.outH; oh0 += rowsPerChunk) {
        const rows = Math.min(rowsPerChunk, g.outH - oh0);
        const part = chunkGemm(backend, scope, g, xT, dyT, oh0, rows);
        if (acc === null) {
          acc = part;
        } else {
          // acc is our own fresh output, so accumulating in place is safe; [M, Co] is small.
          const h = heapF32(backend);
          const dst = elemOffset(backend, acc);
          const src = elemOffset(backend, part);
          const n = M * g.outC;
          for (let i = 0; i < n; i++) h[dst + i] = h[dst + i]! + h[src + i]!;
          backend.disposeData(part.dataId);
        }
      }
    }
    if (acc === null) throw new Error(`${name} (diffmem wasm): empty output height`);
    return view(acc, filterShape);
  } catch (err) {
    if (acc !== null) backend.disposeData(acc.dataId);
    throw err;
  } finally {
    scope.dispose();
  }
};

/** Registry entry for {@link conv2DBackpropFilterWasm}. */
export const conv2DBackpropFilterWasmConfig: KernelConfig = {
  kernelName: Conv2DBackpropFilter,
  backendName: 'wasm',
  kernelFunc: conv2DBackpropFilterWasm,
};
