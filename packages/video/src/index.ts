/**
 * @diffmem/video — ffmpeg frame I/O for diffmem: offline binary resolution, probing, decoding to
 * `Video<'display'>` tensors (whole or streamed with bounded memory), lossless/h264 encoding,
 * image sequences, and damage reports for broken files. See docs/video-io.md.
 * @packageDocumentation
 */
export {
  FfmpegAbortError,
  FfmpegError,
  FfmpegNotFoundError,
  FfmpegProcessError,
  FfmpegTimeoutError,
  VideoDamagedError,
  type BinaryAttempt,
  type FfmpegProcessDetails,
} from './errors.js';
export {
  DEFAULT_BINARY_ORDER,
  clearBinaryCache,
  parseLibavutilVersion,
  resolveBinaries,
  resolveBinary,
  resolveFfmpeg,
  resolveFfprobe,
  supportsFpsMode,
  type BinaryName,
  type BinaryOptions,
  type BinarySource,
  type ResolvedBinary,
} from './binaries.js';
export {
  STDERR_TAIL_BYTES,
  StdinClosedError,
  runFfmpeg,
  startFfmpeg,
  type FfmpegExit,
  type FfmpegOutput,
  type FfmpegProcess,
  type FfmpegRunOptions,
} from './ffmpeg.js';
export { DamageCollector, MAX_KEPT_LINES, parseFfmpegLogLine, type DamageLog, type FfmpegLogLine } from './log.js';
export { assertReadableFile, parseRational, probeVideo, type ProbeOptions, type Rational, type VideoProbe } from './probe.js';
export {
  decodeFrames,
  decodeRawFrames,
  decodeVideo,
  outputSize,
  rawChunkToVideo,
  toRational,
  uint8ToUnitFloat,
  type DecodeOptions,
  type DecodeReport,
  type DecodeVideoOptions,
  type DecodedVideo,
  type FrameChunk,
  type FrameStream,
  type RawFrameChunk,
  type ScaleFlags,
  type StreamDecodeOptions,
} from './decode.js';
export {
  encodeVideo,
  unitFloatToUint8,
  type EncodeOptions,
  type EncodePreset,
  type EncodeResult,
  type FrameInput,
  type FrameSource,
  type FrameWriterOptions,
  type RawFrames,
} from './encode.js';
export {
  listImageSequence,
  readImageSequence,
  readImageSequenceFrames,
  writeImageSequence,
  type ImageSequenceResult,
  type WriteImageSequenceOptions,
} from './image-sequence.js';
