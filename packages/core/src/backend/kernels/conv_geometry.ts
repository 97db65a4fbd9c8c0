/**
 * What the two conv-gradient kernels share: unpacking and checking a kernel call's inputs, and the
 * validated NHWC 2D-convolution geometry — the forward conv's shapes, strides and the resolved
 * top/left/bottom/right padding for every tfjs pad spelling.
 * @module
 */
import { backend_util, type NamedAttrMap, type NamedTensorInfoMap, type TensorInfo } from '@tensorflow/tfjs-core';
import { asWasmBackend, requireFloat32, type WasmBackendLike } from './wasm_util.js';

/** tfjs' pad argument: 'same', 'valid', one number for all sides, or explicit NHWC pairs. */
export type ConvPad =
  | 'same'
  | 'valid'
  | number
  | [[number, number], [number, number], [number, number], [number, number]];

/** Attributes shared by tfjs' `Conv2DBackpropInput` and `Conv2DBackpropFilter` kernels. */
export interface ConvGradAttrs {
  strides: number | [number, number];
  pad: ConvPad;
  dataFormat?: 'NHWC' | 'NCHW';
  dimRoundingMode?: 'floor' | 'round' | 'ceil';
  /** Not a tfjs attribute of these kernels; checked in case a caller passes one anyway. */
  dilations?: number | [number, number];
}

/** A conv-gradient kernel call after {@link convGradKernelArgs}' checks. */
export interface ConvGradKernelArgs<A extends ConvGradAttrs> {
  backend: WasmBackendLike;
  /** The two inputs, in the order their names were given. */
  inputs: [TensorInfo, TensorInfo];
  attrs: A;
}

/**
 * Unpacks a `Conv2DBackpropInput` / `Conv2DBackpropFilter` kernel call: the wasm backend and the
 * two named inputs, which must be present and float32 (checked in that order).
 */
export function convGradKernelArgs<A extends ConvGradAttrs>(
  kernelName: string,
  call: { inputs: NamedTensorInfoMap; backend: unknown; attrs?: NamedAttrMap },
  inputNames: [string, string],
): ConvGradKernelArgs<A> {
  const backend = asWasmBackend(call.backend, kernelName);
  const [nameA, nameB] = inputNames;
  const a = call.inputs[nameA];
  const b = call.inputs[nameB];
  if (a === undefined || b === undefined) throw new Error(`${kernelName} (diffmem wasm): needs inputs ${nameA} and ${nameB}`);
  requireFloat32(kernelName, nameA, a);
  requireFloat32(kernelName, nameB, b);
  return { backend, inputs: [a, b], attrs: call.attrs as unknown as A };
}

/** The forward convolution `y = conv2d(x, w)` whose gradient is being computed. */
export interface ConvGeometry {
  batch: number;
  inH: number;
  inW: number;
  inC: number;
  outH: number;
  outW: number;
  outC: number;
  kH: number;
  kW: number;
  strideH: number;
  strideW: number;
  padTop: number;
  padLeft: number;
  padBottom: number;
  padRight: number;
}

function pair(v: number | [number, number] | undefined, fallback: number): [number, number] {
  if (v === undefined) return [fallback, fallback];
  return typeof v === 'number' ? [v, v] : v;
}

function isPositiveInt(n: number): boolean {
  return Number.isInteger(n) && n > 0;
}

/**
 * Resolves and checks the forward conv geometry. Throws a descriptive Error for anything these
 * kernels do not implement (NCHW, dilation ≠ 1, non-integer strides) or for a `dy` whose shape
 * does not match the forward output, rather than computing wrong numbers.
 */
export function convGeometry(
  kernelName: string,
  xShape: readonly number[],
  filterShape: readonly number[],
  dyShape: readonly number[],
  attrs: ConvGradAttrs,
): ConvGeometry {
  const where = `${kernelName} (diffmem wasm)`;
  const dataFormat = attrs.dataFormat ?? 'NHWC';
  if (dataFormat !== 'NHWC') {
    throw new Error(`${where}: only dataFormat 'NHWC' (channelsLast) is supported, got '${dataFormat}'`);
  }
  if (xShape.length !== 4 || filterShape.length !== 4 || dyShape.length !== 4) {
    throw new Error(
      `${where}: expected rank-4 x/filter/dy, got [${xShape.join(',')}], [${filterShape.join(',')}], ` +
        `[${dyShape.join(',')}]`,
    );
  }
  const [dh, dw] = pair(attrs.dilations, 1);
  if (dh !== 1 || dw !== 1) {
    throw new Error(`${where}: dilation must be 1, got [${dh}, ${dw}]`);
  }
  const [sh, sw] = pair(attrs.strides, 1);
  if (!isPositiveInt(sh) || !isPositiveInt(sw)) {
    throw new Error(`${where}: strides must be positive integers, got [${sh}, ${sw}]`);
  }
  const pad = attrs.pad;
  if (Array.isArray(pad)) {
    const flat = pad.flat();
    if (flat.length !== 8 || flat.some((p) => !Number.isInteger(p) || p < 0)) {
      throw new Error(`${where}: explicit pad must be 4 pairs of non-negative integers, got ${JSON.stringify(pad)}`);
    }
    if (pad[0][0] !== 0 || pad[0][1] !== 0 || pad[3][0] !== 0 || pad[3][1] !== 0) {
      throw new Error(`${where}: explicit pad on the batch or channel axis is not supported: ${JSON.stringify(pad)}`);
    }
  } else if (typeof pad === 'number') {
    if (!Number.isInteger(pad) || pad < 0) throw new Error(`${where}: numeric pad must be a non-negative integer, got ${pad}`);
  } else if (pad !== 'same' && pad !== 'valid') {
    throw new Error(`${where}: unsupported pad ${JSON.stringify(pad)}`);
  }

  const info = backend_util.computeConv2DInfo(
    xShape as [number, number, number, number],
    filterShape as [number, number, number, number],
    [sh, sw],
    1,
    pad,
    attrs.dimRoundingMode,
    false,
    'channelsLast',
  );
  if (info.inChannels !== filterShape[2]) {
    throw new Error(`${where}: x has ${info.inChannels} channels but the filter expects ${filterShape[2]}`);
  }
  const expected = [info.batchSize, info.outHeight, info.outWidth, info.outChannels];
  if (expected.some((d, i) => d !== dyShape[i])) {
    throw new Error(
      `${where}: dy shape [${dyShape.join(',')}] does not match the forward output [${expected.join(',')}]`,
    );
  }
  return {
    batch: info.batchSize,
    inH: info.inHeight,
    inW: info.inWidth,
    inC: info.inChannels,
    outH: info.outHeight,
    outW: info.outWidth,
    outC: info.outChannels,
    kH: info.filterHeight,
    kW: info.filterWidth,
    strideH: info.strideHeight,
    strideW: info.strideWidth,
    padTop: info.padInfo.top,
    padLeft: info.padInfo.left,
    padBottom: info.padInfo.bottom,
    padRight: info.padInfo.right,
  };
}
