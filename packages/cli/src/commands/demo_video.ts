/**
 * The demo's video section: moving-digit clips rendered from real digits are written losslessly
 * with ffmpeg (the "training clips"); a lossy h264 re-encode of one of them (a content and motion
 * copy), a clip of the same digits moving differently (a content copy, new motion), a fresh clip,
 * and a static clip are then scored for content (GSSCD) and motion (OFS-k) memorization.
 * Skipped with a reason when no ffmpeg can be found.
 * @module
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { makeMovingDigits, type VideoBatch } from '@diffmem/core';
import { PixelFrameEmbedder, contentScore, MotionAnalyzer, MotionReferenceIndex, VideoReferenceIndex } from '@diffmem/metrics';
import { decodeVideo, encodeVideo, resolveFfmpeg } from '@diffmem/video';
import type { ReportSection } from '../report/html.js';

/** Inputs of {@link demoVideo}. */
export interface DemoVideoInput {
  outDir: string;
  seed: number;
}

const FPS = 8;

function clip(batch: VideoBatch<'display'>, i: number): tf.Tensor4D {
  return tf.tidy(() => tf.squeeze(tf.slice(batch, [i, 0, 0, 0, 0], [1, -1, -1, -1, -1]), [0])) as tf.Tensor4D;
}

/** Runs the section. */
export async function demoVideo(i: DemoVideoInput): Promise<{ section: ReportSection; headline: Record<string, unknown> }> {
  try {
    await resolveFfmpeg();
  } catch (err) {
    return {
      headline: { skipped: (err as Error).message },
      section: { id: 'video', title: 'Video memorization', blocks: [{ kind: 'text', text: `Skipped: ${(err as Error).message}` }] },
    };
  }
  const dir = path.join(i.outDir, 'video');
  fs.mkdirSync(dir, { recursive: true });
  const spec = { numFrames: 12, size: 64, digitSize: 28, digitsPerClip: 2 as const, source: { kind: 'mnist' as const } };
  const train = makeMovingDigits({ ...spec, numClips: 8, seed: i.seed });
  const fresh = makeMovingDigits({ ...spec, numClips: 1, seed: i.seed + 1000 });
  const still = makeMovingDigits({ ...spec, numClips: 1, seed: i.seed + 2000, speed: [0, 0] });
  const content = new VideoReferenceIndex(new PixelFrameEmbedder({ size: 16 }));
  const motion = new MotionReferenceIndex(new MotionAnalyzer({ fps: FPS }));
  const t0 = performance.now();
  try {
    // Training clips go through a lossless ffmpeg round trip, as metric inputs should.
    for (let c = 0; c < train.records.length; c++) {
      const file = path.join(dir, `train_${c}.mkv`);
      const frames = clip(train.clips, c);
      await encodeVideo(frames, file, { preset: 'lossless', fps: FPS });
      frames.dispose();
      const back = (await decodeVideo(file, { color: 'gray' })).video;
      content.addClip(`train_${c}`, back);
      motion.add(`train_${c}`, { frames: back, fps: FPS });
      back.dispose();
    }
    const copyFile = path.join(dir, 'copy_h264.mp4');
    const src = clip(train.clips, 0);
    await encodeVideo(src, copyFile, { preset: 'h264', crf: 28, fps: FPS });
    src.dispose();
    const queries: Array<[string, string, tf.Tensor4D]> = [
      ['h264 re-encode of train_0', 'content + motion copy', (await decodeVideo(copyFile, { color: 'gray' })).video],
      ['train_0 played backwards', 'content copy, reversed motion', tf.tidy(() => tf.reverse(clip(train.clips, 0), 0)) as tf.Tensor4D],
      ['fresh clip (new digit, new path)', 'not a copy', clip(fresh.clips, 0)],
      ['static digit', 'no motion: filtered', clip(still.clips, 0)],
    ];
    const rows: Array<Array<string | number | null>> = [];
    const headline: Record<string, unknown> = {};
    for (const [name, kind, q] of queries) {
      const c = contentScore(q, content);
      const m = motion.score({ frames: q, fps: FPS });
      rows.push([name, kind, c.score, String(c.match.referenceId), m.score, m.score === null ? `— (${m.reason})` : String(m.match?.referenceId ?? '')]);
      headline[name] = { content: c.score, contentMatch: c.match.referenceId, motion: m.score, motionReason: m.reason };
      q.dispose();
    }
    headline['seconds'] = (performance.now() - t0) / 1000;
    return {
      headline,
      section: {
        id: 'video',
        title: 'Video memorization: content and motion',
        blocks: [
          {
            kind: 'text',
            text:
              'Eight moving-digit clips made from real MNIST digits play the training set (written losslessly with ffmpeg). Content memorization is the best frame-pair cosine of copy-detection descriptors ' +
              '(GSSCD reading; here pixel-correlation descriptors, since the photo-oriented copy descriptor cannot tell digits on black apart); motion memorization is OFS-k, the similarity of camera-compensated optical flow (TF.js Horn–Schunck) over the best aligned run of k = 4 flows. Static clips have no motion to copy and are filtered out.',
          },
          { kind: 'table', columns: ['query clip', 'what it is', 'content score', 'content match', 'motion score (OFS-4)', 'motion match'], rows, digits: 3 },
        ],
      },
    };
  } finally {
    motion.dispose();
    content.dispose();
    train.clips.dispose();
    fresh.clips.dispose();
    still.clips.dispose();
  }
}
