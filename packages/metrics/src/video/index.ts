/**
 * Video memorization metrics (Chen et al., "Investigating Memorization in Video Diffusion Models",
 * arXiv 2410.21669): content memorization (GSSCD, with the VSSCD baseline), motion memorization
 * (OFS-k on camera-motion-compensated flow with natural-motion filtering), weight-free dense optical
 * flow in TF.js, and inference-time detection from noise predictions. See docs/video-memorization.md.
 * @module
 */
export {
  VideoReferenceIndex,
  contentScore,
  contentScoreFromEmbeddings,
  embedClip,
  gsscd,
  vsscdFromEmbeddings,
  vsscdScore,
  type ClipContentScore,
  type ClipVsscd,
  type ContentScoreOptions,
  type ContentScoreResult,
  type FrameMatch,
  type ReferenceClip,
  type ReferenceClipKind,
  type VideoReferenceIndexOptions,
  type VsscdOptions,
  type VsscdPooling,
  type VsscdResult,
} from './content.js';
export {
  DEFAULT_MOTION_ANALYZER_CONFIG,
  MOTION_FLOW_CONFIG,
  MotionAnalyzer,
  MotionReferenceIndex,
  ofs,
  ofsFromSimilarities,
  type ClipMotionScore,
  type MotionAnalyzerConfig,
  type MotionClip,
  type MotionProfile,
  type MotionScoreOptions,
  type MotionScoreResult,
  type MotionUndefinedReason,
  type OfsOptions,
  type OfsReading,
  type OfsResult,
  type OfsUndefinedReason,
} from './motion.js';
export {
  DEFAULT_NATURAL_MOTION_CONFIG,
  assertFiniteFlow,
  fitAffineFlow,
  flowMagnitudeStats,
  naturalMotionDecision,
  resolveNaturalMotionConfig,
  vbenchDynamic,
  vbenchInterval,
  type AffineFlowFit,
  type FlowMagnitudeStats,
  type NaturalMotionConfig,
  type NaturalMotionDecision,
  type PairStatus,
  type VBenchDynamicResult,
} from './natural_motion.js';
export {
  VideoMagnitudeTracker,
  calibrateDetector,
  guidanceDelta,
  stepMagnitudes,
  videoMagnitudes,
  type DetectorCalibration,
  type StepMagnitudes,
  type VideoMagnitudeResult,
} from './detection.js';
export * from './flow/index.js';
export * from './study/index.js';
