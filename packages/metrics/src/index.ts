/**
 * @diffmem/metrics — memorization scores for image diffusion models: an exact k-NN reference
 * index, pixel distances (RMS ℓ2, tiled ℓ2, nL2), copy-detection embedders and replication
 * statistics, inference-time detection (Wen et al.), ROC helpers and the Fréchet distance.
 * @packageDocumentation
 */
export {
  ReferenceIndex,
  type BuildOptions,
  type KnnMetric,
  type KnnResult,
  type LoadOptions,
  type ReferenceBatch,
  type ReferenceId,
  type ReferenceIndexOptions,
  type ReferenceKind,
  type SearchOptions,
} from './reference_index.js';
export * from './parallel_search.js';
export { INDEX_FORMAT, INDEX_VERSION, type IndexManifest, type ShardEntry } from './index_storage.js';
export * from './distances/l2.js';
export * from './distances/tiled_l2.js';
export * from './distances/nl2.js';
export * from './distances/cosine.js';
export * from './embedders/types.js';
export * from './embedders/preprocess.js';
export * from './embedders/model_io.js';
export * from './embedders/model_embedder.js';
export * from './embedders/copy_descriptor.js';
export * from './embedders/pixel_embedder.js';
export * from './roc.js';
export * from './replication_stats.js';
export {
  WenDetector,
  conditionalNoiseMagnitude,
  ddimTimesteps,
  sampleWithWenScore,
  wenScore,
  type StepSelection,
  type TrajectoryStep,
  type WenOptions,
  type WenResult,
  type WenSamplingOptions,
} from './detection/wen.js';
export * from './detection/attribution.js';
export * from './linalg/jacobi.js';
export * from './frechet.js';
export * from './video/index.js';
export * from './invmm/index.js';
export * from './solidmark/index.js';
