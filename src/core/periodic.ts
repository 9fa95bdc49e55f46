import type { Logger } from './log.js';

/**
 * A background job a started server runs every so often (sweepers, pollers): never two runs at once,
 * failures logged rather than thrown, and `stop` waits for a run in progress so shutdown is clean.
 */
export class Periodic {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<unknown> | undefined;

  constructor(
    private readonly log: Logger,
    private readonly what: string,
    private readonly job: () => Promise<unknown>,
  ) {}

  /** Runs the job now, unless it is running already. */
  run(): void {
    this.running ??= this.job()
      .catch((err) => this.log.error({ err }, `${this.what} failed`))
      .finally(() => {
        this.running = undefined;
      });
  }

  /** Runs it now and then every `intervalMs`; the timer does not keep the process alive. */
  start(intervalMs: number): void {
    this.run();
    this.timer = setInterval(() => this.run(), intervalMs);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    await this.running;
  }
}
