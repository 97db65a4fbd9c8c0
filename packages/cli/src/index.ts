/**
 * @diffmem/cli — the `diffmem` command line, its commands as functions, and the HTML report.
 * @packageDocumentation
 */
export { buildProgram } from './program.js';
export * from './report/html.js';
export { ProgressBar, type ProgressOptions } from './progress.js';
export { runTrain, parseDataSpec, type TrainCommandOptions } from './commands/train.js';
export { runSample, sampleImages, type SampleCommandOptions } from './commands/sample.js';
export { runVideoAudit, runVideoDecode, runVideoProbe } from './commands/video.js';
export { sampleShard, type SampleShardArgs, type SampleShardResult } from './tasks/sample_task.js';
