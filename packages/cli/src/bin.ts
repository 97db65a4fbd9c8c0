#!/usr/bin/env node
/**
 * The `diffmem` executable.
 * @module
 */
import { buildProgram } from './program.js';

await buildProgram().parseAsync(process.argv);
