/**
 * Registers TensorFlow.js' gradient functions.
 *
 * `@tensorflow/tfjs-core` alone registers no gradients (its `register_all_gradients` module is an
 * extension-less ESM file Node cannot load directly); the union package `@tensorflow/tfjs`
 * registers all of them into tfjs' global gradient registry when imported. Every module that
 * differentiates (training, guidance, InvMM) imports this file for that side effect.
 * @module
 */
import '@tensorflow/tfjs';

export {};
