/**
 * Activation functions by diffusers name (`src/diffusers/models/activations.py::get_activation`).
 * @module
 */
import * as tf from '@tensorflow/tfjs-core';
import { fusedKernelAvailable } from '../backend/kernels/fused_ops.js';
import { DiffmemSiLU } from '../backend/kernels/silu.js';
import { DTypeError } from '../errors.js';
import type { UNet2DActivation } from './unet_2d_config.js';

/** An elementwise non-linearity. */
export type Activation = <T extends tf.Tensor>(x: T) => T;

/**
 * SiLU / swish: x · σ(x) (`nn.SiLU`). Float32 inputs on 'wasm' and 'cpu' run the fused
 * `DiffmemSiLU` kernel (one pass, analytic gradient dy·σ·(1 + x·(1 − σ)); backend/kernels/silu.ts,
 * registered on first use); other backends run {@link siluComposite}.
 * @throws DTypeError for a non-float32 `x`.
 */
export function silu<T extends tf.Tensor>(x: T): T {
  // tf.sigmoid rejects other dtypes too; say so with a typed error.
  if (x.dtype !== 'float32') throw new DTypeError(`silu: x must be float32, got ${x.dtype}`, { dtype: x.dtype });
  if (fusedKernelAvailable(DiffmemSiLU, tf.getBackend())) {
    return tf.engine().runKernel(DiffmemSiLU, { x }) as T;
  }
  return siluComposite(x);
}

/** SiLU composed as `x · sigmoid(x)` and differentiated by tfjs' autodiff (the fallback of {@link silu}). */
export function siluComposite<T extends tf.Tensor>(x: T): T {
  return tf.tidy(() => tf.mul(x, tf.sigmoid(x)) as T);
}

/** Mish: x · tanh(softplus(x)) (`nn.Mish`). */
export function mish<T extends tf.Tensor>(x: T): T {
  return tf.tidy(() => tf.mul(x, tf.tanh(tf.softplus(x))) as T);
}

/** Exact GELU: x · Φ(x) = ½x(1 + erf(x/√2)) (`nn.GELU()` with its default `approximate="none"`). */
export function gelu<T extends tf.Tensor>(x: T): T {
  return tf.tidy(() => tf.mul(tf.mul(x, 0.5), tf.add(1, tf.erf(tf.mul(x, Math.SQRT1_2)))) as T);
}

/** ReLU (`nn.ReLU`). */
export function relu<T extends tf.Tensor>(x: T): T {
  return tf.relu(x);
}

/** The activation diffusers' `get_activation(name)` returns. */
export function getActivation(name: UNet2DActivation): Activation {
  switch (name) {
    case 'silu':
    case 'swish':
      return silu;
    case 'mish':
      return mish;
    case 'gelu':
      return gelu;
    case 'relu':
      return relu;
  }
}
