/**
 * Training video denoisers with core's generic trainer (`trainDiffusionModel`), unchanged.
 *
 * The trainer works on a batch of samples [N,H,W,C] — one timestep, one noise draw and one label
 * per sample. A clip is one sample, so clips are handed to it *frame-stacked*: [N,T,H,W,C] →
 * [N,H,W,T·C] (frames side by side in the channel axis). {@link FrameStackedDenoiser} presents a
 * {@link TrainableVideoDenoiser} in that layout, unstacking before and restacking after `predict`;
 * everything else — DDPM loss, class dropout, AdamW, EMA, checkpoints, exact resume — is the
 * trainer's. Gaussian noise is i.i.d., so drawing it in the stacked layout is the same distribution;
 * `randomFlip` mirrors every frame of a clip together.
 * @module
 */
import * as tf from '@tensorflow/tfjs-core';
import { ConfigError, DTypeError, ShapeError } from '../../errors.js';
import type { ImageBatch, VideoBatch } from '../../tensor/types.js';
import { trainDiffusionModel, type TrainableDenoiser, type TrainOptions, type TrainResult } from '../../training/trainer.js';
import type { DenoiserInfo } from '../types.js';
import type { TrainableVideoDenoiser } from './video_unet.js';

/** Clips [B,T,H,W,C] → frame-stacked [B,H,W,T·C] (a new tensor; frame t occupies channels t·C…t·C+C−1). */
export function clipsToFrameStacked(clips: tf.Tensor5D): tf.Tensor4D {
  if (!(clips instanceof tf.Tensor) || clips.rank !== 5) {
    throw new ShapeError(`clips must be [B,T,H,W,C] (rank 5), got ${clips instanceof tf.Tensor ? `[${clips.shape.join(',')}]` : typeof clips}`);
  }
  const [b, t, h, w, c] = clips.shape;
  return tf.tidy(() => tf.reshape(tf.transpose(clips, [0, 2, 3, 1, 4]), [b, h, w, t * c]) as tf.Tensor4D);
}

/** Frame-stacked [B,H,W,T·C] → clips [B,T,H,W,C] (a new tensor). */
export function frameStackedToClips(stacked: tf.Tensor4D, frames: number): tf.Tensor5D {
  if (!(stacked instanceof tf.Tensor) || stacked.rank !== 4) throw new ShapeError('frame-stacked samples must be [B,H,W,T·C] (rank 4)');
  const [b, h, w, tc] = stacked.shape;
  if (!Number.isInteger(frames) || frames < 1 || tc % frames !== 0) {
    throw new ShapeError(`cannot unstack ${tc} channels into ${frames} frames`, { channels: tc, frames });
  }
  return tf.tidy(() => tf.transpose(tf.reshape(stacked, [b, h, w, frames, tc / frames]), [0, 3, 1, 2, 4]) as tf.Tensor5D);
}

/**
 * A {@link TrainableVideoDenoiser} seen as an image `Denoiser` on frame-stacked clips
 * [B,H,W,T·C]; shares the model's variables (training it trains the video model).
 */
export class FrameStackedDenoiser implements TrainableDenoiser {
  readonly info: DenoiserInfo;

  constructor(
    readonly model: TrainableVideoDenoiser,
    readonly frames: number = model.info.numFrames,
  ) {
    if (!Number.isInteger(frames) || frames < 1) throw new ConfigError(`frames must be a positive integer, got ${frames}`);
    this.info = {
      sampleSize: model.info.sampleSize,
      inChannels: frames * model.info.inChannels,
      outChannels: frames * model.info.outChannels,
      numClassEmbeds: model.info.numClassEmbeds,
    };
  }

  get variables(): ReadonlyMap<string, tf.Variable> {
    return this.model.variables;
  }

  predict(sample: tf.Tensor4D, timestep: number | tf.Tensor1D, classLabels?: tf.Tensor1D): tf.Tensor4D {
    if (!(sample instanceof tf.Tensor) || sample.rank !== 4 || sample.shape[3] !== this.info.inChannels) {
      throw new ShapeError(`frame-stacked sample must be [B,H,W,${this.info.inChannels}] (${this.frames} frames × ${this.model.info.inChannels} channels)`, {
        actual: sample instanceof tf.Tensor ? sample.shape : undefined,
      });
    }
    return tf.tidy(() => clipsToFrameStacked(this.model.predict(frameStackedToClips(sample, this.frames), timestep, classLabels)));
  }
}

/** Options of {@link trainVideoDiffusionModel}: the trainer's options with clips instead of images. */
export interface VideoTrainOptions extends Omit<TrainOptions, 'images'> {
  /** Unique training clips in model space [-1, 1], [N,T,H,W,C] (owned by the caller). */
  clips: VideoBatch<'model'> | tf.Tensor5D;
}

/**
 * Trains a video denoiser in place with core's `trainDiffusionModel` (DDPM loss, Ho et al. 2020
 * Eq. 14, one timestep per clip) on frame-stacked clips; `trainIndices`, `labels` and the
 * membership refer to clips. Checkpoints hold the video model's variables under their names.
 */
export async function trainVideoDiffusionModel(model: TrainableVideoDenoiser, o: VideoTrainOptions): Promise<TrainResult> {
  const { clips, ...rest } = o;
  if (!(clips instanceof tf.Tensor) || clips.rank !== 5) {
    throw new ShapeError(`clips must be a batch of clips [N,T,H,W,C], got ${clips instanceof tf.Tensor ? `[${clips.shape.join(',')}]` : typeof clips}`);
  }
  if (clips.dtype !== 'float32') throw new DTypeError(`clips must be float32, got ${clips.dtype}`);
  if (clips.shape[4] !== model.info.inChannels) {
    throw new ShapeError(`clips have ${clips.shape[4]} channels, the model takes ${model.info.inChannels}`, { actual: clips.shape });
  }
  const stacked = clipsToFrameStacked(clips) as ImageBatch<'model'>;
  try {
    return await trainDiffusionModel(new FrameStackedDenoiser(model, clips.shape[1]), { ...rest, images: stacked });
  } finally {
    stacked.dispose();
  }
}
