/**
 * @diffmem/cli — the `diffmem` command line, its commands as functions, and the HTML report.
 * @packageDocumentation
 */
export { buildProgram } from './program.js';
export * from './report/html.js';
export { ProgressBar, type ProgressOptions } from './progress.js';
export { runTrain, parseDataSpec, type TrainCommandOptions } from './commands/train.js';
export { runSample, sampleImages, type SampleCommandOptions } from './commands/sample.js';
export { formatVideoAudit, runVideoAudit, runVideoDecode, runVideoProbe } from './commands/video.js';
export { sampleShard, type SampleShardArgs, type SampleShardResult } from './tasks/sample_task.js';
export { runAuditSolidMark, parseAuditDataSpec, parseDeltas, parseGroups, type AuditSolidMarkOptions, type AuditSolidMarkResult } from './commands/audit_solidmark.js';
export { runDetect, formatDetect, parseScoreSteps, type DetectOptions, type DetectResult, type DetectSample, type DetectClass, type DetectPositive } from './commands/detect.js';
export { runSampleAMG, formatSampleAMG, parseAMGThreshold, type SampleAMGOptions, type SampleAMGResult, type AMGThresholdChoice } from './commands/sample_amg.js';
export { runBench, formatBench, parseConvShape, type BenchOptions, type BenchResult, type BenchPart } from './commands/bench.js';
export * from './bench/timing.js';
export * from './bench/kernels.js';
export * from './bench/unet.js';
export * from './bench/knn.js';
