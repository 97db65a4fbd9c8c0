// Test harness: runs the real `diffmem` program in-process, capturing stdout, stderr and the exit
// code, and trains tiny models (a few steps, 8×8 digits) for the commands to work on.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { Command } from 'commander';
import { buildProgram } from '../../program.js';
import { runTrain, type TrainCommandOptions } from '../train.js';

export interface CliRun {
  code: number;
  stdout: string;
  stderr: string;
}

function allCommands(c: Command): Command[] {
  return [c, ...c.commands.flatMap((s) => allCommands(s as Command))];
}

/** Runs `diffmem <args>` (wasm backend, no progress bars unless asked) and captures its output. */
export async function runCli(args: string[]): Promise<CliRun> {
  const program = buildProgram();
  let stdout = '';
  let stderr = '';
  for (const c of allCommands(program)) {
    c.exitOverride();
    c.configureOutput({ writeOut: (s) => void (stdout += s), writeErr: (s) => void (stderr += s) });
  }
  const origOut = process.stdout.write.bind(process.stdout);
  const origErr = process.stderr.write.bind(process.stderr);
  process.stdout.write = ((s: string | Uint8Array) => {
    stdout += String(s);
    return true;
  }) as typeof process.stdout.write;
  process.stderr.write = ((s: string | Uint8Array) => {
    stderr += String(s);
    return true;
  }) as typeof process.stderr.write;
  const before = process.exitCode;
  process.exitCode = 0;
  let code = 0;
  try {
    await program.parseAsync(['node', 'diffmem', '--backend', 'wasm', ...args]);
    code = Number(process.exitCode ?? 0);
  } catch (e) {
    const ce = e as { exitCode?: number };
    code = ce.exitCode ?? 1;
  } finally {
    process.stdout.write = origOut;
    process.stderr.write = origErr;
    process.exitCode = before;
  }
  return { code, stdout, stderr };
}

/** A fresh temporary folder. */
export function tmpDir(name: string): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), `diffmem-${name}-`));
}

/** Trains a tiny class-conditional CFG model on 8×8 digits (duplicates in class 1) for 4 steps. */
export async function trainTiny(out: string, extra: Partial<TrainCommandOptions> = {}): Promise<string> {
  await runTrain({
    out,
    data: 'mnist',
    size: 8,
    channels: 1,
    perClass: 3,
    duplicated: 2,
    duplicatedClasses: [1],
    copies: 3,
    ordinary: 3,
    heldOut: 2,
    steps: 4,
    batch: 4,
    lr: 1e-3,
    widths: [8, 16],
    layers: 1,
    classConditional: true,
    cfgDropout: 0.1,
    emaDecay: 0.9,
    checkpointEvery: 100,
    resume: false,
    seed: 0,
    quiet: true,
    ...extra,
  });
  return out;
}
