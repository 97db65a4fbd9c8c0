/**
 * The end-to-end video memorization study on a model trained in-process (moving digits →
 * factorised space-time UNet → DDIM → GSSCD / OFS-k rates → detection AUC), and its reusable parts:
 * the evaluation of generated clips against a known membership, object-motion profiles for
 * static-camera clips (frames are compared with the metrics package's PixelFrameEmbedder).
 * @module
 */
export * from './object_motion.js';
export * from './evaluate.js';
export * from './video_study.js';
