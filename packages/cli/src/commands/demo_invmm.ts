/**
 * The demo's InvMM section: invert a few duplicated and held-out digits (Ma et al., ICCV 2025) —
 * how far must the starting-noise distribution move from N(0, I) before the model reproduces the
 * image? Memorized images need little (small KL); held-out ones cannot be reached (∞).
 * @module
 */
import * as tf from '@tensorflow/tfjs-core';
import { groupIndices, type DiffusionPipelineFolder, type ImageDataset, type Membership } from '@diffmem/core';
import { invertImage, rmsReplicationTest, type InvMMRecord, type ReferenceIndex } from '@diffmem/metrics';
import type { ReportSection } from '../report/html.js';
import { ProgressBar } from '../progress.js';

/** Inputs of {@link demoInvMM}. */
export interface DemoInvMMInput {
  pipe: DiffusionPipelineFolder;
  dataset: ImageDataset;
  membership: Membership;
  index: ReferenceIndex;
  k: number;
  seed: number;
  quiet?: boolean;
  /** Images per group (default 2). */
  perGroup?: number;
}

/** Runs the section; returns the report section and headline figures. */
export async function demoInvMM(i: DemoInvMMInput): Promise<{ section: ReportSection; headline: Record<string, unknown> }> {
  const per = i.perGroup ?? 2;
  const groups = [
    ['duplicated', groupIndices(i.membership, 'duplicated').slice(0, per)],
    ['held-out', groupIndices(i.membership, 'held-out').slice(0, per)],
  ] as const;
  const total = groups.reduce((a, [, g]) => a + g.length, 0);
  const bar = new ProgressBar('invmm', total, { quiet: i.quiet ?? false });
  const replication = rmsReplicationTest({ threshold: 0.1 });
  const rows: Array<Array<string | number | null>> = [];
  const records: Array<{ group: string; record: InvMMRecord }> = [];
  let done = 0;
  for (const [group, idx] of groups) {
    for (const d of idx) {
      const img = tf.tidy(() => tf.slice(i.dataset.images, [d, 0, 0, 0], [1, -1, -1, -1]));
      const label = i.dataset.records[d]?.label ?? 0;
      try {
        const rec = await invertImage({ denoiser: i.pipe.unet, scheduler: i.pipe.scheduler }, img, {
          preset: 'cpu-quick',
          replication,
          seed: i.seed + d,
          id: i.dataset.records[d]?.id ?? String(d),
          label,
        });
        records.push({ group, record: rec });
        const last = rec.checks.at(-1);
        rows.push([group, rec.id, label, rec.replicated ? 'yes' : 'no', rec.score, rec.steps, last ? Math.min(...last.similarities) : null, rec.seconds]);
      } finally {
        img.dispose();
      }
      bar.update(++done);
    }
  }
  const med = (g: string): number => {
    const s = records.filter((r) => r.group === g).map((r) => r.record.score).sort((a, b) => a - b);
    return s.length ? (s[Math.floor((s.length - 1) / 2)] as number) : NaN;
  };
  return {
    headline: {
      medianScoreDuplicated: med('duplicated'),
      medianScoreHeldOut: med('held-out'),
      secondsPerImage: records.reduce((a, r) => a + r.record.seconds, 0) / Math.max(1, records.length),
    },
    section: {
      id: 'invmm',
      title: 'InvMM: how far must the noise move to reproduce an image?',
      blocks: [
        {
          kind: 'text',
          text:
            'InvMM learns a Gaussian N(μ, σ²) over the starting noise so that the model reconstructs a target image, penalising its KL divergence from N(0, I) with an adaptively growing weight λ, ' +
            'and stops when deterministic DDIM samples from it replicate the target (here: RMS distance < 0.1). The score is the mean per-dimension KL on success, ∞ when never replicated: lower = more memorized. ' +
            "Preset 'cpu-quick' (a short budget for the demo; the paper's DDPM constants are preset 'ddpm-cifar10').",
        },
        {
          kind: 'table',
          columns: ['group', 'image', 'label', 'replicated', 'InvMM score (KL)', 'steps', 'best RMS at last check', 'seconds'],
          rows,
          digits: 3,
        },
      ],
    },
  };
}
