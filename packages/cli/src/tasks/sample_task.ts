/**
 * Worker-thread task: sample a shard of images from a pipeline folder. Run through core's
 * WorkerPool so sampling scales over cores (the wasm backend is single-threaded in Node).
 * The model is loaded once per worker and cached.
 * @module
 */
import { DDIMPipeline, DDIMScheduler, DDPMPipeline, loadDiffusionPipeline, type DiffusionPipelineFolder } from '@diffmem/core';

/** Arguments of {@link sampleShard}. */
export interface SampleShardArgs {
  modelDir: string;
  n: number;
  seed: number;
  steps: number;
  scheduler: 'ddim' | 'ddpm';
  classLabels?: number[];
  guidanceScale?: number;
  /** Index of this shard's first image in the whole run (class labels cycle over it). */
  offset?: number;
}

/** A shard of samples in model space, NHWC row-major. */
export interface SampleShardResult {
  data: Float32Array;
  shape: [number, number, number, number];
}

const cache = new Map<string, Promise<DiffusionPipelineFolder>>();

/** Samples `n` images with `seed` (deterministic: the same arguments give the same images). */
export async function sampleShard(a: SampleShardArgs): Promise<SampleShardResult> {
  let p = cache.get(a.modelDir);
  if (!p) {
    p = loadDiffusionPipeline(a.modelDir);
    cache.set(a.modelDir, p);
  }
  const pipe = await p;
  // Class-conditional models sample every class in turn (i mod K over the whole run) unless told.
  const rows = pipe.unet.info.numClassEmbeds;
  let labels = a.classLabels;
  if (!labels && rows !== null) {
    const k = rows - (pipe.nullClassId !== null ? 1 : 0);
    labels = Array.from({ length: a.n }, (_, i) => ((a.offset ?? 0) + i) % k);
  }
  const cond = {
    ...(labels ? { classLabels: labels } : {}),
    ...(a.guidanceScale !== undefined && a.guidanceScale !== 1 && pipe.nullClassId !== null
      ? { guidanceScale: a.guidanceScale, nullClassId: pipe.nullClassId }
      : {}),
  };
  const images =
    a.scheduler === 'ddim'
      ? await new DDIMPipeline(pipe.unet, DDIMScheduler.fromConfig(pipe.scheduler.toConfig())).generate({
          batchSize: a.n,
          numInferenceSteps: a.steps,
          generator: a.seed,
          ...cond,
        })
      : await new DDPMPipeline(pipe.unet, pipe.scheduler).generate({ batchSize: a.n, numInferenceSteps: a.steps, generator: a.seed, ...cond });
  const data = (await images.data()) as Float32Array;
  const shape = images.shape as [number, number, number, number];
  images.dispose();
  return { data, shape };
}
