/**
 * Kernels that let tfjs train diffmem's conv nets on the wasm backend (and fix one cpu gradient).
 *
 * For 'wasm' ({@link registerWasmGradKernels}):
 * - `Conv2DBackpropFilter`: missing in tfjs-backend-wasm 4.22 (tfjs#8474).
 * - `Conv2DBackpropInput`: replaces the built-in scalar loop (~10x slower than the forward conv).
 * - `UnsortedSegmentSum`: missing; the gradient of `gather` (class embeddings) needs it.
 * - `ResizeNearestNeighborGrad`: replaces a window search 3.6x slower than needed that also
 *   ignores `halfPixelCenters`.
 * - `Identity` and same-dtype `Cast`: share the buffer instead of copying; autograd clones every
 *   tensor a custom gradient (fused conv/matMul) saves, and casts each clone's gradient. (`Cast`
 *   to bool also stops storing -2 as 254.)
 * - `BatchMatMul`: the built-in reaches XNNPACK only for untransposed single matrices; matMul
 *   gradients (transposed operands) and attention (batched) ran a ~10x slower scalar loop.
 * - `SplitV` (the gradient of `concat`, i.e. of the up blocks' skip connections): the built-in
 *   allocates a subarray per pixel when splitting the last axis.
 *
 * For 'cpu' ({@link registerCpuGradKernelFixes}): `ResizeNearestNeighborGrad`, whose 4.22 built-in
 * is wrong for batch > 1.
 *
 * Fused model ops for 'wasm' and 'cpu' ({@link registerFusedOpKernels}, automatic on first use):
 * `DiffmemGroupNorm`/`DiffmemGroupNormGrad` and `DiffmemSiLU`/`DiffmemSiLUGrad`, new kernels with
 * analytic gradients that replace ~8 (GroupNorm) and 2 (SiLU) elementwise kernels forward and
 * ~30 backward; other backends keep the composite ops.
 *
 * ```ts
 * import { registerWasmGradKernels } from '@diffmem/core';
 * registerWasmGradKernels(); // once, any time before the first backward pass on wasm
 * ```
 * @module
 */
// Imported for their side effect: each backend registers its built-in kernels when first evaluated,
// which would silently replace ours if that happened after our registration.
import '@tensorflow/tfjs-backend-wasm';
import '@tensorflow/tfjs-backend-cpu';
import { engine, getKernel, registerKernel, unregisterKernel, type KernelConfig } from '@tensorflow/tfjs-core';
import { batchMatMulWasmConfig } from './batch_mat_mul.js';
import { splitVWasmConfig } from './split_v.js';
import { conv2DBackpropFilterWasmConfig } from './conv2d_backprop_filter.js';
import { conv2DBackpropInputWasmConfig } from './conv2d_backprop_input.js';
import { castWasmConfig, identityWasmConfig } from './identity.js';
import {
  resizeNearestNeighborGradCpuConfig,
  resizeNearestNeighborGradWasmConfig,
} from './resize_nearest_neighbor_grad.js';
import { unsortedSegmentSumWasmConfig } from './unsorted_segment_sum.js';
import { rememberBuiltIn } from './wasm_util.js';

export { batchMatMulWasm, type BatchMatMulAttrs } from './batch_mat_mul.js';
export { conv2DBackpropFilterWasm, type Conv2DBackpropFilterAttrs } from './conv2d_backprop_filter.js';
export { conv2DBackpropInputWasm, type Conv2DBackpropInputAttrs } from './conv2d_backprop_input.js';
export { unsortedSegmentSumWasm, type UnsortedSegmentSumAttrs } from './unsorted_segment_sum.js';
export { splitVWasm, type SplitVAttrs } from './split_v.js';
export { castWasm, identityWasm } from './identity.js';
export {
  resizeNearestNeighborGradCpu,
  resizeNearestNeighborGradWasm,
  type ResizeNearestNeighborGradAttrs,
} from './resize_nearest_neighbor_grad.js';
export type { ConvGradAttrs, ConvPad } from './conv_geometry.js';
export { wasmKernelTuning, type WasmKernelTuning } from './wasm_util.js';
export {
  DiffmemGroupNorm,
  DiffmemGroupNormGrad,
  groupNormCpu,
  groupNormGradCpu,
  groupNormGradWasm,
  groupNormWasm,
  type GroupNormAttrs,
} from './group_norm.js';
export { DiffmemSiLU, DiffmemSiLUGrad, siluCpu, siluGradCpu, siluGradWasm, siluWasm } from './silu.js';
export {
  FUSED_OP_GRAD_CONFIGS,
  FUSED_OP_KERNEL_CONFIGS,
  fusedKernelAvailable,
  registerFusedOpKernels,
  unregisterFusedOpKernels,
} from './fused_ops.js';

/** The kernel configs {@link registerWasmGradKernels} installs for the 'wasm' backend. */
export const WASM_GRAD_KERNEL_CONFIGS: readonly KernelConfig[] = [
  conv2DBackpropFilterWasmConfig,
  conv2DBackpropInputWasmConfig,
  unsortedSegmentSumWasmConfig,
  resizeNearestNeighborGradWasmConfig,
  identityWasmConfig,
  castWasmConfig,
  batchMatMulWasmConfig,
  splitVWasmConfig,
];

/** The kernel configs {@link registerCpuGradKernelFixes} installs for the 'cpu' backend. */
export const CPU_GRAD_KERNEL_CONFIGS: readonly KernelConfig[] = [resizeNearestNeighborGradCpuConfig];

/** Built-in kernels ours replaced, keyed `backend/kernel`, so they can be restored. */
const replaced = new Map<string, KernelConfig>();

function registered(name: string, backendName: string): KernelConfig | undefined {
  return getKernel(name, backendName) as KernelConfig | undefined;
}

function install(configs: readonly KernelConfig[]): string[] {
  const changed: string[] = [];
  for (const config of configs) {
    const current = registered(config.kernelName, config.backendName);
    if (current?.kernelFunc === config.kernelFunc) continue;
    if (current !== undefined) {
      replaced.set(`${config.backendName}/${config.kernelName}`, current);
      rememberBuiltIn(current);
      // Unregister first: registerKernel would otherwise log an "already registered" warning.
      unregisterKernel(config.kernelName, config.backendName);
    }
    registerKernel(config);
    changed.push(config.kernelName);
  }
  return changed;
}

function uninstall(configs: readonly KernelConfig[]): void {
  for (const config of configs) {
    const { kernelName, backendName } = config;
    if (registered(kernelName, backendName)?.kernelFunc !== config.kernelFunc) continue;
    unregisterKernel(kernelName, backendName);
    const previous = replaced.get(`${backendName}/${kernelName}`);
    replaced.delete(`${backendName}/${kernelName}`);
    if (previous === undefined) continue;
    registerKernel(previous);
    // If the backend initialised while ours was registered, the built-in never ran its setup.
    // (engine().registry holds initialised backends only; findBackend would start initialising.)
    const backend = engine().registry[backendName];
    if (backend !== undefined && previous.setupFunc !== undefined) previous.setupFunc(backend);
  }
}

/**
 * Registers diffmem's kernels for the 'wasm' backend in tfjs' global kernel registry (see the
 * module overview for the list and why). Idempotent; safe before or after `tf.setBackend('wasm')`.
 *
 * @returns the names of the kernels this call (re)registered; empty when all were already ours.
 */
export function registerWasmGradKernels(): string[] {
  return install(WASM_GRAD_KERNEL_CONFIGS);
}

/**
 * Removes what {@link registerWasmGradKernels} installed and restores the built-in kernels it
 * replaced (for benchmarks and tests comparing old and new).
 */
export function unregisterWasmGradKernels(): void {
  uninstall(WASM_GRAD_KERNEL_CONFIGS);
}

/**
 * Replaces tfjs-backend-cpu's `ResizeNearestNeighborGrad` (wrong for batch > 1 in 4.22) with a
 * correct one. Idempotent.
 *
 * @returns the names of the kernels this call (re)registered.
 */
export function registerCpuGradKernelFixes(): string[] {
  return install(CPU_GRAD_KERNEL_CONFIGS);
}

/** Restores the cpu built-ins {@link registerCpuGradKernelFixes} replaced. */
export function unregisterCpuGradKernelFixes(): void {
  uninstall(CPU_GRAD_KERNEL_CONFIGS);
}
