/**
 * `diffmem audit invmm`: InvMM scores (Ma et al., ICCV 2025) for the first images of each
 * membership group of a trained model — duplicated, ordinary, held out — with the AUC separating
 * duplicated from the others. Resumable: per-image records are written atomically to
 * `--results`, and a rerun skips finished images.
 * @module
 */
import { loadDatasetFromSpec, loadDiffusionPipeline, ConfigError, type MembershipGroup } from '@diffmem/core';
import { evaluateInvMMOnMembership, formatInvMMEvaluation, type InvMMMembershipEvaluation, type InvMMParallelism, type InvMMPresetName } from '@diffmem/metrics';
import { ProgressBar } from '../progress.js';
import { interruptSignal, type GlobalFlags } from '../util.js';

/** Options of {@link runAuditInvMM}. */
export interface AuditInvMMCommandOptions extends GlobalFlags {
  model: string;
  results: string;
  perGroup: number;
  preset: InvMMPresetName;
  rms: number;
  workers: number;
  /**
   * How `workers` are spent: `'images'` (default) one image per worker — throughput;
   * `'samples'` one image at a time split across the threads — latency (see `auditInvMM`).
   */
  parallel?: InvMMParallelism;
  seed: number;
  /** Membership groups to score (default duplicated, ordinary, held-out). */
  groups?: MembershipGroup[];
}

/** Runs the audit. */
export async function runAuditInvMM(o: AuditInvMMCommandOptions): Promise<{ evaluation: InvMMMembershipEvaluation; table: string }> {
  const pipe = await loadDiffusionPipeline(o.model);
  const conditional = pipe.unet.info.numClassEmbeds !== null;
  pipe.unet.dispose(); // the audit loads the model itself (once per worker)
  if (!pipe.membership || !pipe.dataset) {
    throw new ConfigError(`${pipe.dir} has no membership.json / diffmem.json: InvMM groups need the training membership`);
  }
  const dataset = loadDatasetFromSpec(pipe.dataset);
  const total = (o.groups?.length ?? 3) * o.perGroup;
  const bar = new ProgressBar('invmm', total, { quiet: o.quiet || o.json });
  let done = 0;
  try {
    const evaluation = await evaluateInvMMOnMembership({
      model: { kind: 'folder', dir: pipe.dir },
      membership: pipe.membership,
      dataset,
      perGroup: o.perGroup,
      ...(o.groups ? { groups: o.groups } : {}),
      preset: o.preset,
      replication: { kind: 'rms', threshold: o.rms },
      seed: o.seed,
      resultsDir: o.results,
      workers: o.workers,
      ...(o.parallel !== undefined ? { parallelism: o.parallel } : {}),
      ...(pipe.nullClassId !== null ? { nullClassId: pipe.nullClassId } : {}),
      // Class-conditional models invert each image under its own label (from the membership).
      ...(conditional ? { classConditioning: 'given' as const } : {}),
      signal: interruptSignal(),
      onProgress: (e) => {
        if (e.type === 'image') bar.update(++done, `${e.group} ${e.id}: ${e.record.replicated ? e.record.score.toFixed(4) : '∞'}`);
      },
    });
    return { evaluation, table: formatInvMMEvaluation(evaluation) };
  } finally {
    dataset.images.dispose();
  }
}
