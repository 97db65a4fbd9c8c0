/**
 * The `diffmem` command line (commander conventions: `--help` on every command, `--json` for
 * scripting, typed errors printed with their code and exit status 2).
 * @module
 */
import { Command, InvalidArgumentError, Option } from 'commander';
import { ConfigError } from '@diffmem/core';
import { runTrain, type TrainCommandOptions } from './commands/train.js';
import { runSample, type SampleCommandOptions } from './commands/sample.js';
import { formatVideoAudit, runVideoAudit, runVideoDecode, runVideoProbe } from './commands/video.js';
import { runAuditNl2, type AuditNl2Options } from './commands/audit_nl2.js';
import { runDemo, type DemoOptions } from './commands/demo.js';
import { runAuditInvMM, type AuditInvMMCommandOptions } from './commands/audit_invmm.js';
import { parseDeltas, parseGroups, runAuditSolidMark, type AuditSolidMarkOptions } from './commands/audit_solidmark.js';
import { formatDetect, runDetect, type DetectOptions } from './commands/detect.js';
import { formatSampleAMG, parseAMGThreshold, runSampleAMG, type SampleAMGOptions } from './commands/sample_amg.js';
import { formatBench, parseConvShape, runBench, type BenchOptions } from './commands/bench.js';
import { int, intList, num, output, reportError, startBackend, type GlobalFlags } from './util.js';

/** Wraps a command action: backend start-up (when needed), errors → exit codes. */
function action<A extends unknown[]>(needsBackend: boolean, fn: (...args: A) => Promise<void>): (...args: A) => Promise<void> {
  return async (...args: A) => {
    const cmd = args[args.length - 1] as Command;
    const flags = cmd.optsWithGlobals() as GlobalFlags;
    try {
      if (needsBackend) await startBackend(flags);
      await fn(...args);
    } catch (err) {
      process.exitCode = reportError(err, flags);
    }
  };
}

const widths = (v: string): number[] => {
  const w = v.split(',').map(Number);
  if (w.length < 2 || w.some((x) => !Number.isInteger(x) || x < 1)) throw new InvalidArgumentError(`--widths must be like 32,64,64, got "${v}"`);
  return w;
};

const attentionLevels = (v: string): number[] => {
  if (v === 'none') return [];
  const l = v.split(',').map(Number);
  if (l.some((x) => !Number.isInteger(x) || x < 0)) throw new InvalidArgumentError(`--attention-levels must be like 1 or 1,2 (0 = full resolution) or none, got "${v}"`);
  return l;
};

/** Builds the program (exported for tests and for embedding in other CLIs). */
export function buildProgram(): Command {
  const program = new Command('diffmem')
    .description('Measure and remove memorization in diffusion models (TensorFlow.js, offline).')
    .version('0.1.0')
    .option('--json', 'print machine-readable JSON on stdout')
    .option('-q, --quiet', 'no progress bars')
    .addOption(new Option('--backend <list>', 'TensorFlow.js backends to try, in order').default(undefined, 'node-gpu,node,wasm,cpu'))
    .showHelpAfterError();

  program
    .command('demo')
    .description('train a small memorizing DDPM on the embedded digits, find memorization (nL2, InvMM), remove it (AMG), audit video, write an HTML report')
    .option('-o, --out <dir>', 'output folder (model cache, report.html)', 'diffmem-out')
    .option('--steps <n>', 'training steps', int('steps'), 1500)
    .option('--samples <n>', 'generations per method', int('samples', 2), 64)
    .option('--retrain', 'train again even if a cached model exists', false)
    .option('--skip <list>', 'skip sections: invmm,video', (v: string) => v.split(','), [] as string[])
    .option('--seed <n>', 'seed', int('seed', 0), 0)
    .action(
      action(true, async (opts: DemoOptions, cmd: Command) => {
        const flags = cmd.optsWithGlobals() as GlobalFlags;
        const r = await runDemo({ ...opts, ...flags });
        output(flags, r, `report: ${String(r['report'])} (${Number(r['seconds']).toFixed(0)} s)`);
      }),
    );

  program
    .command('train')
    .description('train a small UNet2DModel DDPM with a memorization split (k images x n copies, ordinary, held out)')
    .requiredOption('-o, --out <dir>', 'output folder (checkpoints + latest pipeline)')
    .option('--data <spec>', 'mnist (embedded) | digits:PATH (OpenCV digits.png) | folder:PATH', 'mnist')
    .option('--size <n>', 'image size', int('size', 4), 16)
    .addOption(new Option('--channels <n>', 'image channels (1 or 3)').default(1).argParser((v) => {
      if (v !== '1' && v !== '3') throw new InvalidArgumentError(`--channels must be 1 or 3, got "${v}"`);
      return Number(v) as 1 | 3;
    }))
    .option('--per-class <n>', 'images per class to load', int('per-class'))
    .option('--duplicated <k>', 'images duplicated', int('duplicated', 0), 4)
    .option('--duplicated-classes <list>', 'draw the duplicated images only from these classes (e.g. 1,4,7)', intList('duplicated-classes'))
    .option('--exclusive-duplicated-classes', 'the --duplicated-classes hold only their duplicated images (a class names one image, like a memorized prompt)', false)
    .option('--copies <n>', 'copies of each duplicated image', int('copies'), 8)
    .option('--ordinary <m>', 'images seen once', int('ordinary', 0), 16)
    .option('--held-out <h>', 'images never trained on', int('held-out', 0), 16)
    .option('--steps <n>', 'optimizer steps', int('steps'), 1200)
    .option('--batch <n>', 'batch size', int('batch'), 8)
    .option('--lr <x>', 'learning rate', num('lr'), 1e-3)
    .option('--widths <list>', 'UNet widths per level', widths, [32, 64, 64])
    .option('--layers <n>', 'resnets per level', int('layers'), 1)
    .option('--attention-levels <list>', 'levels with self-attention, 0 = full resolution, or none (default: 1)', attentionLevels)
    .option('--class-conditional', 'condition on the labels', false)
    .option('--cfg-dropout <p>', 'class dropout for classifier-free guidance', num('cfg-dropout'), 0.1)
    .option('--ema-decay <x>', 'EMA decay', num('ema-decay'), 0.995)
    .option('--checkpoint-every <n>', 'checkpoint period in steps', int('checkpoint-every'), 400)
    .option('--resume', 'continue the newest checkpoint in --out', false)
    .option('--solidmark <p>', 'train on SolidMark key-bordered images with a p-pixel border (canvas size + 2p)', int('solidmark'))
    .option('--fresh-key-per-copy', 'with --solidmark: every copy of a duplicated image gets its own key', false)
    .option('--seed <n>', 'seed of every random draw', int('seed', 0), 0)
    .action(
      action(true, async (opts: TrainCommandOptions, cmd: Command) => {
        const flags = cmd.optsWithGlobals() as GlobalFlags;
        const r = await runTrain({ ...opts, ...flags });
        const summary = { out: r.out, steps: r.steps, resumedFrom: r.resumedFrom, interrupted: r.interrupted, seconds: r.seconds, params: r.params, finalLoss: r.lossHistory.at(-1)?.loss ?? null, checkpoint: r.lastCheckpoint };
        output(flags, summary, `${r.interrupted ? 'interrupted' : 'trained'} ${r.steps} steps in ${r.seconds.toFixed(0)} s (${r.params} params); model: ${r.lastCheckpoint}`);
      }),
    );

  program
    .command('sample')
    .description('generate images from a trained model (DDIM or DDPM), in parallel worker threads; --amg: with Anti-Memorization Guidance')
    .requiredOption('-m, --model <dir>', 'pipeline or training output folder')
    .option('-n, --n <count>', 'number of images', int('n'), 16)
    .option('--steps <n>', 'sampling steps', int('steps'), 50)
    .addOption(new Option('--scheduler <name>', 'sampler').choices(['ddim', 'ddpm']).default('ddim'))
    .option('--class-label <c>', 'class of every sample (class-conditional models)', int('class-label', 0))
    .option('--guidance-scale <w>', 'classifier-free guidance scale', num('guidance-scale'))
    .option('--workers <n>', 'worker threads (plain sampling only)', int('workers'), 1)
    .option('--seed <n>', 'seed', int('seed', 0), 0)
    .option('-o, --out <file>', 'PNG grid to write')
    .option('--amg', 'sample with Anti-Memorization Guidance (σ_t = −nL2 against the training set)', false)
    .option('--amg-scale <c>', 'AMG: G_sim scale (official 100)', num('amg-scale'), 100)
    .option('--amg-threshold <t>', 'AMG: λ_t — official | constant:X (σ units, σ = −nL2) | always', parseAMGThreshold, { kind: 'official' })
    .option('--no-gsim', 'AMG: switch off dissimilarity guidance G_sim')
    .option('--no-gspe', 'AMG: switch off despecification guidance G_spe (CFG only)')
    .option('--no-gdup', 'AMG: switch off label-deduplication guidance G_dup (CFG only)')
    .addOption(new Option('--similarity <s>', 'AMG: σ_t').choices(['nl2']).default('nl2'))
    .option('--k <k>', 'AMG: nL2 neighbourhood size (capped at the training set size - 1)', int('k'), 50)
    .option('--alpha <a>', 'AMG: nL2 neighbourhood scale', num('alpha'), 0.5)
    .option('--log <file>', 'AMG: per-step log JSON (default: <out>.amg-log.json)')
    .action(
      action(true, async (opts: SampleCommandOptions & Omit<SampleAMGOptions, keyof SampleCommandOptions> & { amg: boolean }, cmd: Command) => {
        const flags = cmd.optsWithGlobals() as GlobalFlags;
        const amgOnly = ['amgScale', 'amgThreshold', 'gsim', 'gspe', 'gdup', 'similarity', 'k', 'alpha', 'log'].filter((k) => cmd.getOptionValueSource(k) === 'cli');
        if (!opts.amg) {
          if (amgOnly.length > 0) throw new ConfigError(`${amgOnly.map((k) => `--${k.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`).join(', ')} ${amgOnly.length > 1 ? 'need' : 'needs'} --amg`);
          const r = await runSample({ ...opts, ...flags });
          output(flags, r, `sampled ${r.n} images in ${r.seconds.toFixed(1)} s${r.out ? ` -> ${r.out}` : ''}`);
          return;
        }
        if (opts.workers !== 1) throw new ConfigError('--amg samples in this process (the guidance needs the reference index): drop --workers');
        const r = await runSampleAMG({ ...opts, ...flags });
        output(flags, r, formatSampleAMG(r));
      }),
    );

  const audit = program.command('audit').description('memorization audits of a trained model: nl2 | invmm | solidmark');
  audit
    .command('nl2')
    .description('nL2 / RMS of generations against the exact training set, held-out images as the control')
    .requiredOption('-m, --model <dir>', 'pipeline or training output folder (with membership.json)')
    .option('-n, --n <count>', 'generations', int('n'), 64)
    .option('--steps <n>', 'DDIM steps', int('steps'), 50)
    .option('--k <k>', 'neighbourhood size (capped at the training set size - 1)', int('k'), 50)
    .option('--alpha <a>', 'neighbourhood scale', num('alpha'), 0.5)
    .addOption(new Option('--variant <v>', 'nL2 form').choices(['generated-centric', 'reference-centric']).default('generated-centric'))
    .option('--rms-threshold <x>', 'RMS below which a generation counts as a copy', num('rms-threshold'), 0.1)
    .option('--workers <n>', 'worker threads for sampling', int('workers'), 1)
    .option('--seed <n>', 'seed', int('seed', 0), 0)
    .action(
      action(true, async (opts: AuditNl2Options, cmd: Command) => {
        const flags = cmd.optsWithGlobals() as GlobalFlags;
        const r = await runAuditNl2({ ...opts, ...flags });
        const g = r.generated.stats.amg;
        const h = r.heldOut?.stats.amg;
        output(
          flags,
          r,
          [
            `nL2 (${r.variant}, k=${r.k}, alpha=${r.alpha}) against ${r.references} training images:`,
            `  generated (n=${r.generated.stats.n}): %<1.4 ${g.pctBelow14.toFixed(1)}  %<1.6 ${g.pctBelow16.toFixed(1)}  top1 ${g.top1.toFixed(3)}  RMS<${opts.rmsThreshold}: ${r.generated.rmsBelow}`,
            h ? `  held-out  (n=${r.heldOut?.stats.n}): %<1.4 ${h.pctBelow14.toFixed(1)}  %<1.6 ${h.pctBelow16.toFixed(1)}  top1 ${h.top1.toFixed(3)}  RMS<${opts.rmsThreshold}: ${r.heldOut?.rmsBelow}` : '  (no held-out images)',
          ].join('\n'),
        );
      }),
    );

  audit
    .command('invmm')
    .description('InvMM scores of duplicated / ordinary / held-out images and the AUC between groups (resumable)')
    .requiredOption('-m, --model <dir>', 'pipeline or training output folder (with membership.json)')
    .option('--results <dir>', 'per-image records (rerun to resume)', 'invmm-results')
    .option('--per-group <n>', 'images per group', int('per-group'), 4)
    .addOption(new Option('--preset <name>', 'constants').choices(['ddpm-cifar10', 'ldm-faces', 'sd', 'ddpm-cpu', 'cpu-quick']).default('cpu-quick'))
    .option('--rms <x>', 'replication test: RMS distance below this', num('rms'), 0.1)
    .option('--groups <list>', 'membership groups: duplicated,ordinary,held-out', parseGroups)
    .option('--workers <n>', 'worker threads', int('workers'), 1)
    .addOption(new Option('--parallel <mode>', 'spend the workers on images (throughput) or on the samples of one image at a time (latency)').choices(['images', 'samples']).default('images'))
    .option('--seed <n>', 'seed', int('seed', 0), 0)
    .action(
      action(true, async (opts: AuditInvMMCommandOptions, cmd: Command) => {
        const flags = cmd.optsWithGlobals() as GlobalFlags;
        const r = await runAuditInvMM({ ...opts, ...flags });
        const { records: _records, ...summary } = r.evaluation;
        output(flags, summary, r.table);
      }),
    );

  audit
    .command('solidmark')
    .description('SolidMark: outpaint the key border of every keymap image; eidetic counts vs chance, shuffled keys and a random-init model (resumable)')
    .requiredOption('-m, --model <dir>', 'marked model (diffmem train --solidmark P): pipeline or training output folder')
    .option('--null-model <x>', 'random-init null: random[:SEED] | a model folder | none', 'random:0')
    .option('--keymap <file>', 'default <model>/solidmark_keymap.json')
    .option('--membership <file>', 'default <model>/membership.json')
    .option('--data <spec>', 'unmarked images: mnist | digits:PATH | folder:PATH | JSON DatasetSpec (default: <model>/diffmem.json)')
    .addOption(new Option('--sampler <s>', 'default: the model folder\'s scheduler').choices(['ddpm', 'ddim']))
    .option('--steps <n>', 'reverse steps (official --sampling-steps 250)', int('steps'), 250)
    .option('--eta <x>', 'DDIM eta', num('eta'))
    .option('--resample <u>', 'RePaint resampling per step (1 = official)', int('resample'))
    .option('--repeats <r>', 'outpaintings per image', int('repeats'), 1)
    .option('--batch <b>', 'outpaintings per model call', int('batch'), 8)
    .option('--seed <n>', 'noise seed', int('seed', 0), 0)
    .option('--permutations <p>', 'shuffled-key draws', int('permutations'), 200)
    .option('--limit <n>', 'first n keymap images', int('limit'))
    .option('--groups <list>', 'membership groups: duplicated,ordinary,held-out', parseGroups)
    .option('--deltas <list>', 'δ grid', parseDeltas)
    .option('-o, --out <dir>', 'resumable results folder (rerun to continue)')
    .option('--write-json <file>', 'also write the summary JSON to a file')
    .action(
      action(true, async (opts: AuditSolidMarkOptions, cmd: Command) => {
        const flags = cmd.optsWithGlobals() as GlobalFlags;
        const r = await runAuditSolidMark({ ...opts, ...flags });
        const rep = r.report;
        output(
          flags,
          { model: r.model, nullModel: r.nullModel, sampler: r.sampler, complete: rep.complete, interrupted: rep.interrupted, computed: rep.computed, reused: rep.reused, outDir: rep.outDir, seconds: r.seconds, summary: rep.summary },
          `${r.text}\nWall time: ${r.seconds.toFixed(1)} s for ${rep.computed} outpainted image(s) this run`,
        );
        if (!rep.complete) process.exitCode = 3;
      }),
    );

  program
    .command('detect')
    .description('Wen et al. inference-time detection: ‖ε(x_t,c) − ε(x_t,∅)‖ per generation of a class-conditional CFG model; AUC, TPR@FPR, threshold')
    .requiredOption('-m, --model <dir>', 'class-conditional model trained with class dropout (pipeline or training output folder)')
    .option('--per-class <n>', 'generations per class', int('per-class'), 8)
    .option('--classes <list>', 'classes to sample (default: all but the null class)', intList('classes'))
    .option('--steps <n>', 'DDIM steps', int('steps'), 50)
    .option('--guidance-scale <w>', 'CFG scale of the sampling (Wen: 7.5)', num('guidance-scale'), 7.5)
    .option('--score-steps <s>', 'steps averaged: all | first | first:K | i,j,k', 'all')
    .addOption(new Option('--positive <p>', 'ground truth: classes holding duplicated training images, or generations that copy a training image').choices(['duplicated-classes', 'copies']).default('duplicated-classes'))
    .option('--rms-threshold <x>', 'copies: RMS distance below which a generation is a copy', num('rms-threshold'), 0.1)
    .option('--fpr <x>', 'target false-positive rate', num('fpr'), 0.01)
    .option('--seed <n>', 'seed', int('seed', 0), 0)
    .option('-o, --out <file>', 'JSON report', 'detect.json')
    .option('--grid <file>', 'PNG grid of the generations (one row per class)')
    .action(
      action(true, async (opts: DetectOptions, cmd: Command) => {
        const flags = cmd.optsWithGlobals() as GlobalFlags;
        const r = await runDetect({ ...opts, ...flags });
        output(flags, r, `${formatDetect(r)}\nreport: ${opts.out}`);
      }),
    );

  program
    .command('bench')
    .description('benchmark the selected backend: conv kernels, the demo UNet (forward, train step, DDIM), exact k-NN queries/s')
    .option('--skip <list>', 'skip parts: conv,unet,knn', (v: string) => {
      const parts = v.split(',').map((x) => x.trim());
      const bad = parts.filter((x) => !['conv', 'unet', 'knn'].includes(x));
      if (bad.length) throw new InvalidArgumentError(`--skip takes conv, unet, knn; got "${bad.join(',')}"`);
      return parts;
    }, [] as string[])
    .option('--conv-all', 'every UNet convolution shape, not just the dominant one', false)
    .option('--conv-shape <n,h,w,cin,cout>', 'time one custom 3x3 convolution instead', parseConvShape)
    .option('--conv-reps <n>', 'conv repeats (best of)', int('conv-reps'), 10)
    .option('--batch <n>', 'UNet batch', int('batch'), 8)
    .option('--ddim-steps <n>', 'DDIM steps of the timed sampling run', int('ddim-steps'), 50)
    .option('--reps <n>', 'UNet timed repeats (default: forward 5, train 3)', int('reps'))
    .option('--unet-size <n>', 'UNet sample size (default: the demo model, 16)', int('unet-size', 4))
    .option('--unet-widths <list>', 'UNet widths (default: the demo model, 32,64,64)', widths)
    .option('--refs <n>', 'k-NN reference images', int('refs', 2), 2000)
    .option('--queries <n>', 'k-NN queries per timed search', int('queries'), 64)
    .option('--knn-size <n>', 'k-NN image side (images are n x n x 3)', int('knn-size'), 32)
    .option('--k <k>', 'k-NN neighbourhood size', int('k'), 50)
    .option('--workers <n>', 'k-NN: also search with n worker threads', int('workers'), 1)
    .option('--full', 'k-NN on 60000 references of 32x32x3 (CIFAR-10 size), with all variants', false)
    .action(
      action(true, async (opts: BenchOptions, cmd: Command) => {
        const flags = cmd.optsWithGlobals() as GlobalFlags;
        const r = await runBench({ ...opts, ...flags } as BenchOptions);
        output(flags, r, formatBench(r));
      }),
    );

  const video = program.command('video').description('video I/O and video memorization');
  video
    .command('probe <file>')
    .description('size, frame rate, frame count, codec of a video (ffprobe)')
    .action(
      action(false, async (file: string, _o: unknown, cmd: Command) => {
        const flags = cmd.optsWithGlobals() as GlobalFlags;
        const p = await runVideoProbe(file);
        output(flags, p, `${p.path}: ${p.width}x${p.height} ${p.fps.toFixed(3)} fps, ${p.frameCount} frames (${p.frameCountSource}), ${p.codec}/${p.pixelFormat}${p.hasAudio ? ', audio' : ''}`);
      }),
    );
  video
    .command('decode <file>')
    .description('decode frames to PNG files (with damage report)')
    .requiredOption('-o, --out <dir>', 'folder for frame_000000.png …')
    .option('--fps <x>', 'resample to this frame rate', num('fps'))
    .option('--size <n>', 'resize to n x n', int('size'))
    .option('--max-frames <n>', 'stop after n frames', int('max-frames'))
    .option('--gray', 'grayscale', false)
    .action(
      action(true, async (file: string, opts: Parameters<typeof runVideoDecode>[1], cmd: Command) => {
        const flags = cmd.optsWithGlobals() as GlobalFlags;
        const r = await runVideoDecode(file, { ...opts, ...flags });
        output(flags, r, `decoded ${r['frames']} frames to ${r['out']}${r['damaged'] ? ' (damaged input: see --json for details)' : ''}`);
      }),
    );
  video
    .command('audit <generated>')
    .description('content (GSSCD) and motion (OFS-k) memorization of a clip against reference clips')
    .requiredOption('-r, --reference <file...>', 'reference (training) clips')
    .option('--size <n>', 'analysis size', int('size'), 64)
    .option('--frames <n>', 'frames per clip', int('frames'), 16)
    .option('--fps <x>', 'analysis frame rate', num('fps'), 8)
    .action(
      action(true, async (generated: string, opts: { reference: string[]; size: number; frames: number; fps: number }, cmd: Command) => {
        const flags = cmd.optsWithGlobals() as GlobalFlags;
        const r = await runVideoAudit(generated, { ...opts, references: opts.reference, ...flags });
        output(flags, r, formatVideoAudit(r));
      }),
    );

  return program;
}
