/**
 * Shared CLI plumbing: backend start-up, typed-error printing, JSON output, SIGINT → AbortSignal.
 * @module
 */
import { InvalidArgumentError } from 'commander';
import { DiffmemError, selectBackend, type BackendSelection } from '@diffmem/core';

/** Global flags every command understands. */
export interface GlobalFlags {
  json?: boolean;
  quiet?: boolean;
  backend?: string;
}

/** Selects the TensorFlow.js backend (honours `--backend`), logging the choice unless quiet. */
export async function startBackend(flags: GlobalFlags): Promise<BackendSelection> {
  if (flags.backend) process.env['DIFFMEM_BACKEND'] = flags.backend;
  const sel = await selectBackend();
  if (!flags.quiet && !flags.json) process.stderr.write(`backend: ${sel.reason}\n`);
  return sel;
}

/** Prints a result: JSON on stdout with `--json`, else the human text. */
export function output(flags: GlobalFlags, json: unknown, text: string): void {
  if (flags.json) process.stdout.write(`${JSON.stringify(json, (_, v) => (typeof v === 'number' && !Number.isFinite(v) ? String(v) : v), 2)}\n`);
  else process.stdout.write(`${text}\n`);
}

/** An AbortSignal fired by the first Ctrl-C (a second one exits at once). */
export function interruptSignal(): AbortSignal {
  const ac = new AbortController();
  let count = 0;
  process.on('SIGINT', () => {
    count += 1;
    if (count === 1) {
      process.stderr.write('\ninterrupted: finishing the current step and saving (Ctrl-C again to quit now)\n');
      ac.abort();
    } else {
      process.exit(130);
    }
  });
  return ac.signal;
}

/** Prints an error for a human (typed diffmem errors by code) and returns the exit code. */
export function reportError(err: unknown, flags: GlobalFlags): number {
  if (err instanceof DiffmemError) {
    if (flags.json) process.stdout.write(`${JSON.stringify({ error: { code: err.code, message: err.message, details: err.details ?? null } })}\n`);
    else process.stderr.write(`error [${err.code}]: ${err.message}\n`);
    return 2;
  }
  const e = err as Error;
  if (flags.json) process.stdout.write(`${JSON.stringify({ error: { code: 'INTERNAL', message: e?.message ?? String(err) } })}\n`);
  else process.stderr.write(`error: ${e?.stack ?? String(err)}\n`);
  return 1;
}

/** Parses a positive integer option or throws a readable error. */
export function int(name: string, min = 1): (v: string) => number {
  return (v: string) => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < min) throw new InvalidArgumentError(`--${name} must be an integer >= ${min}, got "${v}"`);
    return n;
  };
}

/** Parses a finite number option. */
export function num(name: string): (v: string) => number {
  return (v: string) => {
    const n = Number(v);
    if (!Number.isFinite(n)) throw new InvalidArgumentError(`--${name} must be a number, got "${v}"`);
    return n;
  };
}

/** Parses a comma-separated list of non-negative integers (e.g. class ids) or throws a readable error. */
export function intList(name: string): (v: string) => number[] {
  return (v: string) => {
    const parts = v.split(',').map((s) => s.trim()).filter((s) => s.length > 0);
    const out = parts.map(Number);
    if (out.length === 0 || out.some((n) => !Number.isInteger(n) || n < 0)) {
      throw new InvalidArgumentError(`--${name} must be a comma-separated list of non-negative integers, got "${v}"`);
    }
    return out;
  };
}
