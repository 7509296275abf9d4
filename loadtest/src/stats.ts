/**
 * Latency statistics for the load runner, on HdrHistogram (`hdr-histogram-js`, the TypeScript port
 * of Gil Tene's HdrHistogram: https://github.com/HdrHistogram/HdrHistogramJS).
 *
 * Values are recorded in integer microseconds with 3 significant digits, so every reported
 * percentile is within 0.1 % of the exact order statistic, at any count, in constant memory.
 * Percentiles follow HdrHistogram's definition: the smallest recorded value such that at least
 * `p` percent of all recorded values are less than or equal to it (nearest rank).
 */
import * as hdr from 'hdr-histogram-js';

/** Summary of one latency distribution. Every figure is in milliseconds (3 decimals). */
export interface LatencySummary {
  /** Number of values recorded. */
  count: number;
  min: number;
  mean: number;
  p50: number;
  p90: number;
  p99: number;
  p999: number;
  max: number;
}

/** Highest trackable latency: 10 minutes in microseconds (anything longer is clamped to it). */
const HIGHEST_US = 600_000_000;

const round3 = (x: number): number => Math.round(x * 1000) / 1000;

/** Records latencies (milliseconds, fractional allowed) and summarises them. */
export class LatencyRecorder {
  private readonly h = hdr.build({
    lowestDiscernibleValue: 1,
    highestTrackableValue: HIGHEST_US,
    numberOfSignificantValueDigits: 3,
    autoResize: false,
    bitBucketSize: 32,
    useWebAssembly: false,
  });

  /**
   * Records one latency.
   * @param ms milliseconds (>= 0; negative values count as 0, values above 10 minutes as 10 minutes).
   */
  record(ms: number): void {
    const us = Math.min(Math.max(Math.round(ms * 1000), 1), HIGHEST_US);
    this.h.recordValue(us);
  }

  /** Values recorded so far. */
  get count(): number {
    return this.h.totalCount;
  }

  /**
   * The value at percentile `p` (0..100), milliseconds. 0 when nothing was recorded.
   */
  percentile(p: number): number {
    if (this.h.totalCount === 0) return 0;
    // HdrHistogram answers the highest value equivalent to the bucket; never report above the max seen.
    return round3(Math.min(this.h.getValueAtPercentile(p), this.h.maxValue) / 1000);
  }

  /** The summary (count, min, mean, p50, p90, p99, p99.9, max), milliseconds. Zeros when empty. */
  summary(): LatencySummary {
    const h = this.h;
    if (h.totalCount === 0) return { count: 0, min: 0, mean: 0, p50: 0, p90: 0, p99: 0, p999: 0, max: 0 };
    return {
      count: h.totalCount,
      min: round3(h.minNonZeroValue / 1000),
      mean: round3(h.mean / 1000),
      p50: this.percentile(50),
      p90: this.percentile(90),
      p99: this.percentile(99),
      p999: this.percentile(99.9),
      max: round3(h.maxValue / 1000),
    };
  }

  /** Frees the histogram's buffers (optional; the garbage collector does it too). */
  destroy(): void {
    this.h.destroy();
  }
}
