/**
 * Typed errors shared by every diffmem package.
 *
 * Every error a caller can act on carries a stable `code` so research code can branch on it
 * without parsing messages, and a message that names the offending input.
 * @module
 */

/** Base class of every error thrown by diffmem. */
export class DiffmemError extends Error {
  /** Stable machine-readable code, e.g. `'SHAPE'`, `'SAFETENSORS_HEADER_TOO_LARGE'`. */
  readonly code: string;
  /** Optional structured details (expected/actual values, offending names). */
  readonly details: Readonly<Record<string, unknown>> | undefined;

  constructor(code: string, message: string, details?: Record<string, unknown>) {
    super(message);
    this.name = new.target.name;
    this.code = code;
    this.details = details;
  }
}

/** A tensor had the wrong rank or shape. */
export class ShapeError extends DiffmemError {
  constructor(message: string, details?: Record<string, unknown>) {
    super('SHAPE', message, details);
  }
}

/** A tensor had the wrong dtype. */
export class DTypeError extends DiffmemError {
  constructor(message: string, details?: Record<string, unknown>) {
    super('DTYPE', message, details);
  }
}

/** Values fell outside the range the type promises (e.g. model space [-1, 1]). */
export class ValueRangeError extends DiffmemError {
  constructor(message: string, details?: Record<string, unknown>) {
    super('VALUE_RANGE', message, details);
  }
}

/** A tensor contained NaN or ±Infinity. */
export class NonFiniteError extends DiffmemError {
  constructor(message: string, details?: Record<string, unknown>) {
    super('NON_FINITE', message, details);
  }
}

/** A configuration (model config.json, scheduler_config.json, options object) is invalid. */
export class ConfigError extends DiffmemError {
  constructor(message: string, details?: Record<string, unknown>) {
    super('CONFIG', message, details);
  }
}

/** Weights do not match the model: missing, unexpected, wrong shape or dtype. */
export class WeightsError extends DiffmemError {
  constructor(
    code: 'WEIGHTS_MISSING' | 'WEIGHTS_UNEXPECTED' | 'WEIGHTS_SHAPE' | 'WEIGHTS_DTYPE' | 'WEIGHTS_NON_FINITE',
    message: string,
    details?: Record<string, unknown>,
  ) {
    super(code, message, details);
  }
}

/** Codes for every rule of the safetensors format that a file can break. */
export type SafetensorsErrorCode =
  | 'SAFETENSORS_TOO_SMALL'
  | 'SAFETENSORS_HEADER_TOO_LARGE'
  | 'SAFETENSORS_HEADER_TRUNCATED'
  | 'SAFETENSORS_HEADER_NOT_UTF8'
  | 'SAFETENSORS_HEADER_NOT_JSON'
  | 'SAFETENSORS_HEADER_NOT_OBJECT'
  | 'SAFETENSORS_BAD_ENTRY'
  | 'SAFETENSORS_BAD_DTYPE'
  | 'SAFETENSORS_BAD_SHAPE'
  | 'SAFETENSORS_BAD_OFFSETS'
  | 'SAFETENSORS_SIZE_MISMATCH'
  | 'SAFETENSORS_OFFSETS_NOT_CONTIGUOUS'
  | 'SAFETENSORS_BUFFER_INCOMPLETE'
  | 'SAFETENSORS_DUPLICATE_NAME'
  | 'SAFETENSORS_BAD_METADATA'
  | 'SAFETENSORS_UNSUPPORTED_DTYPE';

/** A safetensors file breaks a rule of the format. */
export class SafetensorsError extends DiffmemError {
  constructor(code: SafetensorsErrorCode, message: string, details?: Record<string, unknown>) {
    super(code, message, details);
  }
}

/** No requested TensorFlow.js backend could be initialised. */
export class BackendError extends DiffmemError {
  constructor(message: string, details?: Record<string, unknown>) {
    super('BACKEND', message, details);
  }
}

/** Input data (an image file, a dataset folder, a checkpoint) is unreadable or inconsistent. */
export class InputError extends DiffmemError {
  constructor(code: string, message: string, details?: Record<string, unknown>) {
    super(code, message, details);
  }
}
