/**
 * Registration of diffmem's fused model ops (GroupNorm, SiLU): their kernels for 'wasm' and
 * 'cpu' and their gradients, in tfjs' global registries.
 *
 * Registration happens on first use: the first `groupNorm`/`silu` call (models/normalization.ts,
 * models/activations.ts) registers everything, so sampling, training and guidance all use the
 * fused kernels with no set-up call, whichever way the backend was chosen. The kernel names are
 * new (nothing built-in is replaced), so registering is side-effect free for other code. On a
 * backend without them (webgl, tfjs-node) the models keep their composite implementation.
 * @module
 */
import {
  getGradient,
  getKernel,
  registerGradient,
  registerKernel,
  unregisterGradient,
  unregisterKernel,
  type GradConfig,
  type KernelConfig,
} from '@tensorflow/tfjs-core';
import { GROUP_NORM_KERNEL_CONFIGS, groupNormGradConfig } from './group_norm.js';
import { SILU_KERNEL_CONFIGS, siluGradConfig } from './silu.js';

/** Every kernel {@link registerFusedOpKernels} installs (both backends). */
export const FUSED_OP_KERNEL_CONFIGS: readonly KernelConfig[] = [...GROUP_NORM_KERNEL_CONFIGS, ...SILU_KERNEL_CONFIGS];

/** Every gradient {@link registerFusedOpKernels} installs. */
export const FUSED_OP_GRAD_CONFIGS: readonly GradConfig[] = [groupNormGradConfig, siluGradConfig];

/** null: never touched (auto-register on first use); true/false: the caller's explicit choice. */
let state: boolean | null = null;

/**
 * Registers the fused GroupNorm and SiLU kernels for 'wasm' and 'cpu' and their gradients.
 * Idempotent. Called automatically by the first {@link fusedKernelAvailable} check; call it by
 * hand only to undo {@link unregisterFusedOpKernels}.
 *
 * @returns the `backend/kernel` names this call registered; empty when all were present.
 */
export function registerFusedOpKernels(): string[] {
  state = true;
  const added: string[] = [];
  for (const config of FUSED_OP_KERNEL_CONFIGS) {
    const current = getKernel(config.kernelName, config.backendName) as KernelConfig | undefined;
    if (current?.kernelFunc === config.kernelFunc) continue;
    // Another copy of this module (e.g. a second bundle) registered its own: replace it quietly.
    if (current !== undefined) unregisterKernel(config.kernelName, config.backendName);
    registerKernel(config);
    added.push(`${config.backendName}/${config.kernelName}`);
  }
  for (const config of FUSED_OP_GRAD_CONFIGS) {
    const current = getGradient(config.kernelName);
    if (current?.gradFunc === config.gradFunc) continue;
    if (current !== undefined) unregisterGradient(config.kernelName);
    registerGradient(config);
  }
  return added;
}

/**
 * Removes the fused kernels and gradients, so the models run their composite GroupNorm and SiLU
 * (for comparisons and benchmarks). Sticky: no automatic re-registration afterwards, until
 * {@link registerFusedOpKernels} is called.
 */
export function unregisterFusedOpKernels(): void {
  state = false;
  for (const config of FUSED_OP_KERNEL_CONFIGS) {
    const current = getKernel(config.kernelName, config.backendName) as KernelConfig | undefined;
    if (current?.kernelFunc === config.kernelFunc) unregisterKernel(config.kernelName, config.backendName);
  }
  for (const config of FUSED_OP_GRAD_CONFIGS) {
    if (getGradient(config.kernelName)?.gradFunc === config.gradFunc) unregisterGradient(config.kernelName);
  }
}

/**
 * Whether the fused kernel `kernelName` can run on `backendName`, registering the fused ops on
 * the first call (unless {@link unregisterFusedOpKernels} opted out).
 */
export function fusedKernelAvailable(kernelName: string, backendName: string): boolean {
  if (state === null) registerFusedOpKernels();
  return getKernel(kernelName, backendName) !== undefined;
}
