/**
 * SolidMark (Kriplani et al., arXiv 2503.00592): a per-image, pixel-level memorization score from
 * scalar keys trained into image borders. Marks and masks, the marked training set, RePaint
 * outpainting, key distances, eidetic counts with null baselines, and the resumable audit.
 * @module
 */
export * from './errors.js';
export * from './marks.js';
export * from './keymap.js';
export * from './marked_dataset.js';
export * from './outpaint.js';
export * from './score.js';
export * from './summary.js';
export * from './audit.js';
export * from './evaluate.js';
