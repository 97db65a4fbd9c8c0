/**
 * `diffmem audit solidmark`: the SolidMark evaluation (Kriplani et al., arXiv 2503.00592) of a
 * model trained on key-bordered images (`diffmem train --solidmark P`). Every keymap image's
 * border is outpainted (RePaint, the true label for class-conditional models), the predicted key
 * k̂ is read and ℓ_SM = |k̂ − k| is counted below δ next to the three nulls — the analytic chance
 * 2δ − δ², a shuffled-key control and a random-initialised model of the same configuration run
 * exactly the same way — overall, per membership group and per duplication group, with the time
 * per image. The work is `runSolidMarkEvaluation` in `@diffmem/metrics`; this command finds the
 * model, keymap, membership and dataset. Resumable with `--out`.
 *
 * A model trained without marks has no `solidmark_keymap.json`: the audit refuses it with
 * `UnmarkedModelError` (exit code 2), since ℓ_SM of an unmarked model sits at chance by
 * construction.
 * @module
 */
import { InvalidArgumentError } from 'commander';
import * as fs from 'node:fs';
import * as path from 'node:path';
import {
  ConfigError,
  DDIMScheduler,
  DDPMScheduler,
  InputError,
  loadDatasetFromSpec,
  loadDiffusionPipeline,
  loadMembership,
  unet2DConfigToJSON,
  UNet2DModel,
  writeFileAtomicSync,
  type DatasetSpec,
  type ImageDataset,
  type MembershipGroup,
} from '@diffmem/core';
import {
  loadSolidMarkKeymap,
  runSolidMarkEvaluation,
  SOLIDMARK_KEYMAP_FILE,
  UnmarkedModelError,
  type SolidMarkAuditProgress,
  type SolidMarkAuditReport,
} from '@diffmem/metrics';
import { ProgressBar } from '../progress.js';
import { interruptSignal, type GlobalFlags } from '../util.js';

/** Options of {@link runAuditSolidMark} (the command's flags). */
export interface AuditSolidMarkOptions extends GlobalFlags {
  /** Marked model: a pipeline folder or a training output folder (its newest checkpoint). */
  model: string;
  /** Random-init null: `random[:SEED]` (default `random:0`), a model folder, or `none`. */
  nullModel: string;
  /** Default: `<model>/solidmark_keymap.json`. */
  keymap?: string;
  /** Default: `<model>/membership.json` when present. */
  membership?: string;
  /** Where the unmarked images come from: a JSON DatasetSpec, `mnist`, `digits:PATH`, `folder:PATH` (default: the model's `diffmem.json`). */
  data?: string;
  /** Default: the model folder's scheduler (`ddpm` unless it stores a DDIMScheduler). */
  sampler?: 'ddpm' | 'ddim';
  /** Reverse steps (default 250, the official `--sampling-steps`). */
  steps: number;
  eta?: number;
  resample?: number;
  repeats: number;
  batch: number;
  seed: number;
  permutations?: number;
  limit?: number;
  groups?: MembershipGroup[];
  deltas?: number[];
  /** Resumable results folder. */
  out?: string;
  /** Also write the JSON summary to this file. */
  writeJson?: string;
}

/** What {@link runAuditSolidMark} returns. */
export interface AuditSolidMarkResult {
  report: SolidMarkAuditReport;
  text: string;
  model: string;
  nullModel: string | null;
  sampler: 'ddpm' | 'ddim';
  seconds: number;
}

const GROUPS: readonly MembershipGroup[] = ['duplicated', 'ordinary', 'held-out'];

/** Parses `--groups duplicated,held-out`. */
export function parseGroups(v: string): MembershipGroup[] {
  const g = v.split(',').map((s) => s.trim()).filter(Boolean);
  const bad = g.filter((x) => !GROUPS.includes(x as MembershipGroup));
  if (g.length === 0 || bad.length > 0) throw new InvalidArgumentError(`--groups must be a comma list of ${GROUPS.join(', ')}, got "${v}"`);
  return g as MembershipGroup[];
}

/** Parses `--deltas 0.1,0.05` (each in (0, 1]). */
export function parseDeltas(v: string): number[] {
  const d = v.split(',').map((s) => Number(s.trim()));
  if (d.length === 0 || d.some((x) => !(x > 0 && x <= 1))) throw new InvalidArgumentError(`--deltas must be a comma list of numbers in (0, 1], got "${v}"`);
  return d;
}

/** `--data` for an audit: a JSON DatasetSpec or the `diffmem train --data` forms (sizes from the keymap). */
export function parseAuditDataSpec(v: string, size: number, channels: number): DatasetSpec {
  if (v.trim().startsWith('{')) {
    try {
      return JSON.parse(v) as DatasetSpec;
    } catch (err) {
      throw new ConfigError(`--data is not valid JSON: ${(err as Error).message}`);
    }
  }
  const [kind, ...rest] = v.split(':');
  const p = rest.join(':');
  const common = { size, channels: channels as 1 | 3 };
  if (kind === 'mnist') return { source: 'mnist', ...common, fit: size < 28 ? 'resize' : 'pad' };
  if ((kind === 'digits' || kind === 'opencv-digits') && p) return { source: 'opencv-digits', path: p, ...common, fit: size < 20 ? 'resize' : 'pad' };
  if (kind === 'folder' && p) return { source: 'folder', path: p, ...common, fit: 'resize', labelsFromSubfolders: true };
  throw new ConfigError(`--data must be mnist, digits:PATH, folder:PATH or a JSON DatasetSpec, got "${v}"`);
}

function storedSampler(dir: string): 'ddpm' | 'ddim' {
  for (const f of [path.join(dir, 'scheduler', 'scheduler_config.json'), path.join(dir, 'scheduler_config.json')]) {
    if (fs.existsSync(f)) {
      const json = JSON.parse(fs.readFileSync(f, 'utf8')) as Record<string, unknown>;
      return json['_class_name'] === 'DDIMScheduler' ? 'ddim' : 'ddpm';
    }
  }
  return 'ddpm';
}

/** Runs the audit (see the module docs). Throws `UnmarkedModelError` for a model without keys. */
export async function runAuditSolidMark(o: AuditSolidMarkOptions): Promise<AuditSolidMarkResult> {
  const t0 = performance.now();
  const pipe = await loadDiffusionPipeline(o.model);
  let nullUnet: UNet2DModel | null = null;
  let dataset: ImageDataset | null = null;
  try {
    const keymapFile = o.keymap ?? path.join(pipe.dir, SOLIDMARK_KEYMAP_FILE);
    if (o.keymap && !fs.existsSync(o.keymap)) throw new InputError('KEYMAP_NOT_FOUND', `--keymap ${o.keymap} does not exist`, { file: o.keymap });
    // A missing keymap goes on as null: the audit refuses it with UnmarkedModelError.
    const keymap = fs.existsSync(keymapFile) ? loadSolidMarkKeymap(keymapFile) : null;
    if (o.membership && !fs.existsSync(o.membership)) throw new InputError('MEMBERSHIP_NOT_FOUND', `--membership ${o.membership} does not exist`, { file: o.membership });
    const membership = o.membership ? loadMembership(o.membership) : pipe.membership;
    const sampler = o.sampler ?? storedSampler(pipe.dir);
    const scheduler = sampler === 'ddim' ? DDIMScheduler.fromConfig(pipe.scheduler.toConfig()) : DDPMScheduler.fromConfig(pipe.scheduler.toConfig());

    let spec: DatasetSpec | null = null;
    if (keymap) {
      if (o.data) spec = parseAuditDataSpec(o.data, keymap.imageSize, keymap.channels);
      else if (pipe.dataset) spec = pipe.dataset;
      else if (keymap.dataset === 'mnist') spec = parseAuditDataSpec('mnist', keymap.imageSize, keymap.channels);
      else throw new ConfigError(`cannot tell where dataset "${keymap.dataset}" comes from: pass --data`);
      dataset = loadDatasetFromSpec(spec);
    }

    let nullModelId: string | null = null;
    if (o.nullModel.startsWith('random')) {
      const s = o.nullModel.split(':')[1];
      const seed = s === undefined ? 0 : Number(s);
      if (!Number.isInteger(seed) || seed < 0) throw new ConfigError(`--null-model random:SEED needs a non-negative integer seed, got "${o.nullModel}"`);
      nullUnet = UNet2DModel.fromConfig(unet2DConfigToJSON(pipe.unet.config), { seed });
      nullModelId = `random-init:${seed}`;
    } else if (o.nullModel !== 'none') {
      const other = await loadDiffusionPipeline(o.nullModel);
      nullUnet = other.unet;
      nullModelId = path.resolve(other.dir);
    }

    const bars = new Map<string, ProgressBar>();
    const onProgress = (p: SolidMarkAuditProgress): void => {
      let bar = bars.get(p.role);
      if (!bar) {
        bar = new ProgressBar(`solidmark ${p.role}`, p.total, { quiet: o.quiet || o.json });
        bars.set(p.role, bar);
      }
      bar.update(p.done, `${p.secondsPerImage.toFixed(2)} s/image`);
    };
    const evaluate = async (): ReturnType<typeof runSolidMarkEvaluation> => {
      try {
        return await runSolidMarkEvaluation(evalOptions);
      } catch (err) {
        // Same typed error, with the command that makes a marked model.
        if (err instanceof UnmarkedModelError) {
          throw new UnmarkedModelError(err.code, `${err.message} From the command line: diffmem train --solidmark 4 -o DIR …, then diffmem audit solidmark -m DIR.`, err.details);
        }
        throw err;
      }
    };
    const evalOptions: Parameters<typeof runSolidMarkEvaluation>[0] = {
      denoiser: pipe.unet,
      ...(nullUnet && nullModelId ? { nullDenoiser: nullUnet, nullModelId } : {}),
      scheduler,
      numInferenceSteps: o.steps,
      ...(o.eta !== undefined ? { eta: o.eta } : {}),
      ...(o.resample !== undefined ? { resample: o.resample } : {}),
      // Without a keymap the audit throws UnmarkedModelError before it reads any image.
      dataset: dataset ?? { images: null as never, records: [] },
      keymap,
      ...(membership ? { membership } : {}),
      ...(o.groups ? { groups: o.groups } : {}),
      ...(o.limit !== undefined ? { limit: o.limit } : {}),
      repeats: o.repeats,
      batchSize: o.batch,
      seed: o.seed,
      ...(o.out ? { outDir: o.out } : {}),
      modelId: path.resolve(pipe.dir),
      summary: {
        ...(o.deltas ? { deltas: o.deltas } : {}),
        ...(o.permutations !== undefined ? { permutations: o.permutations } : {}),
      },
      signal: interruptSignal(),
      onProgress,
    };
    const { report, text } = await evaluate();
    const seconds = (performance.now() - t0) / 1000;
    if (o.writeJson) writeFileAtomicSync(o.writeJson, JSON.stringify({ complete: report.complete, summary: report.summary }, null, 1));
    return { report, text, model: pipe.dir, nullModel: nullModelId, sampler, seconds };
  } finally {
    pipe.unet.dispose();
    nullUnet?.dispose();
    dataset?.images.dispose();
  }
}
