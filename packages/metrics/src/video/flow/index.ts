/**
 * Weight-free dense optical flow in TF.js: coarse-to-fine Horn–Schunck and Lucas–Kanade, backward
 * warping, and flow comparison (EPE, angular error, Fl, cosine).
 * @module
 */
export {
  CoarseToFineFlow,
  DEFAULT_PYRAMID_CONFIG,
  clipFlow,
  coarseToFine,
  validateFramePair,
  validatePyramidConfig,
  type ClipFlowOptions,
  type FlowEstimator,
  type PyramidConfig,
} from './estimator.js';
export { DEFAULT_HORN_SCHUNCK_CONFIG, HornSchunckFlow, type HornSchunckConfig } from './horn_schunck.js';
export { DEFAULT_LUCAS_KANADE_CONFIG, LucasKanadeFlow, type LucasKanadeConfig } from './lucas_kanade.js';
export { warpBilinear, type WarpResult } from './warp.js';
export { compareFlows, type CompareFlowsOptions, type FlowComparison } from './compare.js';
export { resizeFlow } from './ops.js';
