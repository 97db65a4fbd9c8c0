/**
 * `diffmem video probe | decode | audit`: ffmpeg-backed video facts, frame extraction, and the
 * content/motion memorization audit of a generated clip against reference clips.
 * @module
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { decodeVideo, probeVideo, writeImageSequence, type VideoProbe } from '@diffmem/video';
import { CopyDescriptorEmbedder, contentScore, MotionAnalyzer, MotionReferenceIndex, VideoReferenceIndex } from '@diffmem/metrics';
import { ConfigError } from '@diffmem/core';
import type { GlobalFlags } from '../util.js';

/** `video probe FILE`. */
export async function runVideoProbe(file: string): Promise<VideoProbe> {
  return probeVideo(file);
}

/** Options of {@link runVideoDecode}. */
export interface VideoDecodeOptions extends GlobalFlags {
  out: string;
  fps?: number;
  size?: number;
  maxFrames?: number;
  gray?: boolean;
}

/** `video decode FILE --out DIR`: frames as PNGs (what decoded, and any damage found). */
export async function runVideoDecode(file: string, o: VideoDecodeOptions): Promise<Record<string, unknown>> {
  const r = await decodeVideo(file, {
    ...(o.fps ? { fps: o.fps } : {}),
    ...(o.size ? { width: o.size, height: o.size } : {}),
    ...(o.maxFrames ? { maxFrames: o.maxFrames } : {}),
    color: o.gray ? 'gray' : 'rgb',
  });
  try {
    fs.mkdirSync(o.out, { recursive: true });
    // writeImageSequence takes the folder and names the files frame_000000.png, frame_000001.png, …
    await writeImageSequence(r.video, o.out);
    const { video, ...report } = r;
    return { out: o.out, frames: video.shape[0], size: video.shape.slice(1), ...report };
  } finally {
    r.video.dispose();
  }
}

/** Options of {@link runVideoAudit}. */
export interface VideoAuditOptions extends GlobalFlags {
  references: string[];
  size: number;
  frames: number;
  fps: number;
}

/**
 * `video audit GENERATED --reference A --reference B …`: the content score (frame-level max
 * cosine, GSSCD reading) and the motion score (OFS-k on camera-compensated flow) of a clip against
 * reference clips, each with the matching reference and frames.
 */
export async function runVideoAudit(generated: string, o: VideoAuditOptions): Promise<Record<string, unknown>> {
  if (o.references.length === 0) throw new ConfigError('video audit needs at least one --reference clip');
  const load = async (f: string) => (await decodeVideo(f, { fps: o.fps, width: o.size, height: o.size, maxFrames: o.frames })).video;
  const content = new VideoReferenceIndex(new CopyDescriptorEmbedder());
  const motion = new MotionReferenceIndex(new MotionAnalyzer({ fps: o.fps }));
  try {
    for (const ref of o.references) {
      const v = await load(ref);
      try {
        content.addClip(path.basename(ref), v);
        motion.add(path.basename(ref), { frames: v, fps: o.fps });
      } finally {
        v.dispose();
      }
    }
    const gen = await load(generated);
    try {
      return { generated, content: contentScore(gen, content), motion: motion.score({ frames: gen, fps: o.fps }) };
    } finally {
      gen.dispose();
    }
  } finally {
    motion.dispose();
    content.dispose();
  }
}

/** Two lines for a human: the content and motion verdicts with their best matches (`--json` has everything). */
export function formatVideoAudit(r: Record<string, unknown>): string {
  const c = r['content'] as { score?: number; memorized?: boolean; match?: { referenceId?: unknown; referenceFrame?: number; generatedFrame?: number } | null } | undefined;
  const m = r['motion'] as { score?: number | null; memorized?: boolean; threshold?: number; reason?: string | null; match?: { referenceId?: unknown; ofs?: number } | null } | undefined;
  const num = (x: number | null | undefined): string => (typeof x === 'number' && Number.isFinite(x) ? x.toFixed(3) : '–');
  const cm = c?.match;
  const mm = m?.match;
  return [
    `${String(r['generated'])}:`,
    `  content: score ${num(c?.score)} ${c?.memorized ? 'MEMORIZED' : 'not memorized'}${cm ? ` (best: ${String(cm.referenceId)} frame ${cm.referenceFrame} ↔ generated frame ${cm.generatedFrame})` : ''}`,
    `  motion:  OFS ${num(m?.score)} ${m?.memorized ? 'MEMORIZED' : 'not memorized'} (threshold ${num(m?.threshold)})${mm ? ` (best: ${String(mm.referenceId)})` : ''}${m?.reason ? ` — ${m.reason}` : ''}`,
  ].join('\n');
}
