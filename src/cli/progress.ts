import cliProgress from 'cli-progress';

export interface Progress {
  start(total: number): void;
  add(n?: number): void;
  stop(): void;
}

/** A progress bar on standard error when it is a terminal; nothing at all otherwise (scripts, logs, pipes). */
export function progress(label: string, unit: 'items' | 'bytes'): Progress {
  if (!process.stderr.isTTY) return { start() {}, add() {}, stop() {} };
  const bar = new cliProgress.SingleBar(
    {
      stream: process.stderr,
      format: `${label} [{bar}] {percentage}% | {value}/{total} ${unit} | {duration_formatted}`,
      hideCursor: true,
      clearOnComplete: true,
      // Redrawn at most this often, so a million small steps cost nothing noticeable.
      fps: 10,
    },
    cliProgress.Presets.shades_classic,
  );
  let started = false;
  return {
    start(total) {
      bar.start(total, 0);
      started = true;
    },
    add(n = 1) {
      if (started) bar.increment(n);
    },
    stop() {
      if (started) bar.stop();
      started = false;
    },
  };
}
