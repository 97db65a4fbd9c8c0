/**
 * Reading ffmpeg's stderr for damage.
 *
 * Decoders run with `-loglevel repeat+level+warning`: `level` prefixes every line with its
 * severity (`[mpeg4 @ 0x…] [error] ac-tex damaged at 33 23`, `[warning] x.avi: corrupt decoded
 * frame in stream 0`) and `repeat` stops ffmpeg from folding identical lines into "Last message
 * repeated N times", so every damaged frame is counted. What each ffmpeg reports differs:
 * ffmpeg ≥ 5 prints one "corrupt decoded frame" line per frame whose decoder flagged errors and
 * "corrupt input packet" per damaged packet; older builds print only the decoder's own errors.
 * The decoded-frame count compared with the container's frame count (see `decode.ts`) catches what
 * the log does not, e.g. a truncated file.
 * @module
 */

/** One parsed stderr line. */
export interface FfmpegLogLine {
  /** Severity from the `[level]` prefix (`'error'`, `'warning'`, …), undefined if absent. */
  level: string | undefined;
  /** Component that logged it, e.g. `'mpeg4'`, `'avi'`, `'swscaler'`; undefined for ffmpeg itself. */
  component: string | undefined;
  /** The message without prefixes. */
  message: string;
}

const LINE = /^(?:\[([^\]]+?) @ (?:0x)?[0-9a-fA-F]+\]\s*)?(?:\[(trace|debug|verbose|info|warning|error|fatal|panic)\]\s*)?(.*)$/;

/** Splits `[component @ 0x…] [level] message` into its parts. */
export function parseFfmpegLogLine(line: string): FfmpegLogLine {
  const m = LINE.exec(line);
  return { component: m?.[1], level: m?.[2], message: (m?.[3] ?? line).trim() };
}

/** Messages at warning level that still mean the bitstream is damaged. */
const DAMAGE_WORDS = /corrupt|damaged|conceal|invalid|missing|truncat|error|broken|overread|out of range/i;

/** What the decoder reported while reading a file (see `decode.ts` for frame counts). */
export interface DamageLog {
  /** Frames ffmpeg flagged as decoded with errors ("corrupt decoded frame"; ffmpeg ≥ 5 only). */
  corruptFrames: number;
  /** Packets the demuxer flagged as corrupt ("corrupt input packet" / "Packet corrupt"). */
  corruptPackets: number;
  /** Error-level (and damage-worded warning) lines from decoder/demuxer, counted in full. */
  decodeErrors: number;
  /** The first {@link MAX_KEPT_LINES} such lines, verbatim (with their component). */
  errorMessages: string[];
  /** Other warnings (first {@link MAX_KEPT_LINES}), e.g. deprecated pixel formats, packed B-frames. */
  warnings: string[];
}

/** Bound on the lines kept per list (counts continue past it). */
export const MAX_KEPT_LINES = 100;

/** Accumulates a {@link DamageLog} from stderr lines; `onDamage` fires on the first damage line. */
export class DamageCollector {
  readonly log: DamageLog = { corruptFrames: 0, corruptPackets: 0, decodeErrors: 0, errorMessages: [], warnings: [] };
  private firstDamage: string | undefined;

  constructor(private readonly onDamage?: (line: string) => void) {}

  /** Feeds one stderr line. */
  push = (raw: string): void => {
    const { level, component, message } = parseFfmpegLogLine(raw);
    if (!message) return;
    const text = component ? `${component}: ${message}` : message;
    const log = this.log;
    let damage = false;
    if (/corrupt decoded frame/i.test(message)) {
      log.corruptFrames++;
      damage = true;
    } else if (/corrupt input packet|packet corrupt/i.test(message)) {
      log.corruptPackets++;
      damage = true;
    } else if (level === 'error' || level === 'fatal' || level === 'panic' || (level === 'warning' && DAMAGE_WORDS.test(message))) {
      log.decodeErrors++;
      if (log.errorMessages.length < MAX_KEPT_LINES) log.errorMessages.push(text);
      damage = true;
    } else if (level === 'warning' || level === undefined) {
      if (log.warnings.length < MAX_KEPT_LINES) log.warnings.push(text);
    }
    if (damage && this.firstDamage === undefined) {
      this.firstDamage = text;
      this.onDamage?.(text);
    }
  };

  /** The first damage line seen, if any. */
  get firstDamageLine(): string | undefined {
    return this.firstDamage;
  }
}
