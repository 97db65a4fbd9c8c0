/**
 * Errors specific to SolidMark audits.
 * @module
 */
import { InputError } from '@diffmem/core';

/**
 * The model cannot be scored with SolidMark because it was not trained on marked images (no
 * keymap, no trained entries, or a model whose sample size is the unmarked image size). ℓ_SM is
 * meaningless for such a model: its border is unrelated to any key, so every count sits at
 * chance by construction. Codes: `SOLIDMARK_NO_KEYMAP`, `SOLIDMARK_NO_TRAINED_KEYS`,
 * `SOLIDMARK_UNMARKED_MODEL`.
 */
export class UnmarkedModelError extends InputError {}

/** The keymap does not describe the dataset or membership it is used with (`SOLIDMARK_KEYMAP_MISMATCH`, `SOLIDMARK_KEYMAP_INVALID`). */
export class KeymapError extends InputError {}
