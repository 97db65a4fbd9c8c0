/**
 * Activation functions by diffusers name (`src/diffusers/models/activations.py::get_activation`).
 * @module
 */
import * as tf from '@tensorflow/tfjs-core';
import type { UNet2DActivation } from './unet_2d_config.js';

/** An elementwise non-linearity. */
export type Activation = <T extends tf.Tensor>(x: T) => T;

/** SiLU / swish: x · σ(x) (`nn.SiLU`). */
export function silu<T extends tf.Tensor>(x: T): T {
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
