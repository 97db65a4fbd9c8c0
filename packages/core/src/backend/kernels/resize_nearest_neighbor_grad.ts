/**
 * `ResizeNearestNeighborGrad` (the gradient of every UNet upsampler) for wasm and cpu.
 *
 * - wasm's built-in searches a window of dy for every input element (3.6x slower than this on a
 *   UNet-sized 8×32×32×128 → 64×64 case) and ignores `halfPixelCenters`.
 * - cpu's built-in (tfjs-backend-cpu 4.22) reads dy at the *input's* batch offset, so its result
 *   is wrong for batch > 1.
 *
 * Both are replaced by the exact adjoint of the forward `ResizeNearestNeighbor`: each dy pixel is
 * added to the input pixel the forward copied it from, using the forward's own index mapping
 * (float32 scale arithmetic as in the wasm kernel; alignCorners / halfPixelCenters). O(dy).
 * @module
 */
import { ResizeNearestNeighborGrad, type KernelConfig, type KernelFunc, type TensorInfo } from '@tensorflow/tfjs-core';
import { asWasmBackend, elemOffset, heapF32, requireFloat32 } from './wasm_util.js';

/** Attributes of tfjs' `ResizeNearestNeighborGrad` kernel. */
export interface ResizeNearestNeighborGradAttrs {
  alignCorners: boolean;
  halfPixelCenters?: boolean;
}

/** Source index along one axis for each output index, as the forward kernel computes it. */
export function nearestSourceIndices(
  inSize: number,
  outSize: number,
  alignCorners: boolean,
  halfPixelCenters: boolean,
): Int32Array {
  const f = Math.fround;
  const corners = alignCorners && outSize > 1;
  const scale = f(f(corners ? inSize - 1 : inSize) / f(corners ? outSize - 1 : outSize));
  const src = new Int32Array(outSize);
  for (let o = 0; o < outSize; o++) {
    const frac = f(halfPixelCenters ? scale * (o + 0.5) : scale * o);
    let i = Math.min(inSize - 1, alignCorners ? Math.round(frac) : Math.floor(frac));
    if (halfPixelCenters) i = Math.max(0, i);
    src[o] = i;
  }
  return src;
}

interface Geometry {
  batch: number;
  inH: number;
  inW: number;
  depth: number;
  outH: number;
  outW: number;
  srcRow: Int32Array;
  srcCol: Int32Array;
}

function geometry(images: TensorInfo, dy: TensorInfo, attrs: unknown, where: string): Geometry {
  requireFloat32(ResizeNearestNeighborGrad, 'dy', dy);
  const { alignCorners, halfPixelCenters = false } = attrs as ResizeNearestNeighborGradAttrs;
  if (images.shape.length !== 4 || dy.shape.length !== 4) {
    throw new Error(`${where}: images and dy must be rank 4 (NHWC)`);
  }
  const [batch, inH, inW, depth] = images.shape as [number, number, number, number];
  const [dyB, outH, outW, dyD] = dy.shape as [number, number, number, number];
  if (dyB !== batch || dyD !== depth) {
    throw new Error(`${where}: dy [${dy.shape.join(',')}] does not match images [${images.shape.join(',')}]`);
  }
  return {
    batch, inH, inW, depth, outH, outW,
    srcRow: nearestSourceIndices(inH, outH, alignCorners, halfPixelCenters),
    srcCol: nearestSourceIndices(inW, outW, alignCorners, halfPixelCenters),
  };
}

/** dx[o..] = adjoint of nearest-neighbour resize applied to dy[s..]; dx must be zeroed. */
function scatter(dyVals: Float32Array, s: number, dx: Float32Array, o: number, g: Geometry): void {
  const { batch, inH, inW, depth, outH, outW, srcRow, srcCol } = g;
  for (let b = 0; b < batch; b++) {
    for (let r = 0; r < outH; r++) {
      const rowBase = o + (b * inH + srcRow[r]!) * inW * depth;
      for (let c = 0; c < outW; c++) {
        const d0 = rowBase + srcCol[c]! * depth;
        for (let d = 0; d < depth; d++) dx[d0 + d] = dx[d0 + d]! + dyVals[s + d]!;
        s += depth;
      }
    }
  }
}

function imagesAndDy(inputs: Record<string, TensorInfo | undefined>, where: string): [TensorInfo, TensorInfo] {
  const images = inputs['images'];
  const dy = inputs['dy'];
  if (images === undefined || dy === undefined) throw new Error(`${where}: needs inputs images and dy`);
  return [images, dy];
}

/**
 * Kernel function for `ResizeNearestNeighborGrad` on wasm: inputs `{images, dy}` (NHWC, dy
 * float32), attrs `{alignCorners, halfPixelCenters}`; returns d(images) as float32.
 */
export const resizeNearestNeighborGradWasm: KernelFunc = ({ inputs, backend: rawBackend, attrs }) => {
  const where = `${ResizeNearestNeighborGrad} (diffmem wasm)`;
  const backend = asWasmBackend(rawBackend, ResizeNearestNeighborGrad);
  const [images, dy] = imagesAndDy(inputs, where);
  const g = geometry(images, dy, attrs, where);
  const dx = backend.makeOutput([g.batch, g.inH, g.inW, g.depth], 'float32');
  const h = heapF32(backend);
  const o = elemOffset(backend, dx);
  h.fill(0, o, o + g.batch * g.inH * g.inW * g.depth);
  scatter(h, elemOffset(backend, dy), h, o, g);
  return dx;
};

/** The part of tfjs-backend-cpu's `MathBackendCPU` the cpu kernel uses. */
interface CpuBackendLike {
  readSync(dataId: object): unknown;
  makeTensorInfo(shape: number[], dtype: 'float32', values: Float32Array): TensorInfo;
}

/** Kernel function for `ResizeNearestNeighborGrad` on cpu (same contract as the wasm one). */
export const resizeNearestNeighborGradCpu: KernelFunc = ({ inputs, backend, attrs }) => {
  const where = `${ResizeNearestNeighborGrad} (diffmem cpu)`;
  const cpu = backend as CpuBackendLike;
  const [images, dy] = imagesAndDy(inputs, where);
  const g = geometry(images, dy, attrs, where);
  const dyVals = cpu.readSync(dy.dataId);
  if (!(dyVals instanceof Float32Array)) throw new Error(`${where}: dy values are not a Float32Array`);
  const dx = new Float32Array(g.batch * g.inH * g.inW * g.depth);
  scatter(dyVals, 0, dx, 0, g);
  return cpu.makeTensorInfo([g.batch, g.inH, g.inW, g.depth], 'float32', dx);
};

/** Registry entry for {@link resizeNearestNeighborGradWasm}. */
export const resizeNearestNeighborGradWasmConfig: KernelConfig = {
  kernelName: ResizeNearestNeighborGrad,
  backendName: 'wasm',
  kernelFunc: resizeNearestNeighborGradWasm,
};

/** Registry entry for {@link resizeNearestNeighborGradCpu}. */
export const resizeNearestNeighborGradCpuConfig: KernelConfig = {
  kernelName: ResizeNearestNeighborGrad,
  backendName: 'cpu',
  kernelFunc: resizeNearestNeighborGradCpu,
};
